"""The web console: sessions, CSRF, security headers, the same role and row rules as the API."""

from __future__ import annotations

import io
import uuid

import pytest
from openpyxl import load_workbook

from server import db
from server.db.models import Problem
from tests.console_helpers import console_login, csrf_token
from tests.factories import visit_note


@pytest.fixture
def routed(app, client, world):
    """A visit of `cadre` whose first problem is routed to `staff`'s department."""
    visit = client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre")).json
    with app.app_context(), db.session_scope() as s:
        s.get(Problem, uuid.UUID(visit["problems"][0]["id"])).department_id = world.dept
    return visit


def test_pages_need_a_login(client):
    r = client.get("/dashboard")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


@pytest.mark.parametrize(
    "who,home",
    [("supervisor", "/dashboard"), ("admin", "/admin/users"), ("staff", "/problems"), ("cadre", "/problems")],
)
def test_each_role_lands_on_its_home(client, world, who, home):
    r = console_login(client, who)
    assert r.status_code == 302 and r.headers["Location"] == home
    assert client.get(home).status_code == 200


def test_wrong_password_keeps_what_was_typed(client, world):
    r = console_login(client, "supervisor", "wrong-password-x")
    assert r.status_code == 401
    text = r.get_data(as_text=True)
    assert "用户名或密码错误" in text and 'value="supervisor"' in text


def test_cookie_flags_and_security_headers(client, world):
    r = console_login(client, "supervisor")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/dashboard")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_posts_need_the_csrf_token(client, world):
    console_login(client, "supervisor")
    assert client.post("/logout").status_code == 400
    assert client.get("/dashboard").status_code == 200  # still logged in


def test_logout_ends_the_session_on_the_server(client, world):
    console_login(client, "supervisor")
    cookie = client.get_cookie("fv_session")
    token = csrf_token(client, "/dashboard")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    # Replaying the old cookie does not bring the session back.
    client.set_cookie("fv_session", cookie.value)
    assert client.get("/dashboard").status_code == 302


def test_open_redirects_are_refused(client, world):
    r = client.post(
        "/login?next=//evil.example/x",
        data={"username": "supervisor", "password": "test-password-123", "csrf_token": csrf_token(client)},
    )
    assert r.headers["Location"] == "/dashboard"


def test_roles_are_refused_pages_they_may_not_use(client, world):
    console_login(client, "cadre")
    r = client.get("/dashboard")
    assert r.status_code == 403 and r.mimetype == "text/html"
    assert "无权" in r.get_data(as_text=True)


def test_department_staff_cannot_open_another_departments_problem_by_url(client, world, routed):
    console_login(client, "other_staff")
    r = client.get(f"/problems/{routed['problems'][0]['id']}")
    assert r.status_code == 404 and "不存在" in r.get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/problems")})
    console_login(client, "staff")
    assert client.get(f"/problems/{routed['problems'][0]['id']}").status_code == 200
    listed = client.get("/problems").get_data(as_text=True)
    assert routed["problems"][0]["description"][:10] in listed
    assert routed["problems"][1]["description"][:10] not in listed


def test_problem_list_search_and_export(client, world, routed):
    console_login(client, "supervisor")
    page = client.get("/problems", query_string={"q": "融资"}).get_data(as_text=True)
    assert "流动资金贷款利率偏高" in page and "招工难" not in page
    bad = client.get("/problems", query_string={"from": "2026-13-40"})
    assert bad.status_code == 200 and "from" in bad.get_data(as_text=True)
    xlsx = client.get("/problems.xlsx", query_string={"q": "用工"})
    rows = list(load_workbook(io.BytesIO(xlsx.data)).active.iter_rows(values_only=True))
    assert rows[0][:4] == ("提出时间", "走访对象", "类别", "问题描述")
    assert len(rows) == 2 and rows[1][2] == "用工"


def test_dashboard_shows_the_articles_figures(client, world, routed):
    console_login(client, "supervisor")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "共梳理问题2个" in page
    assert "办结率" in page and "满意率" in page
    assert "/static/vendor/chartjs/chart.umd.min.js" in page


def test_admin_revokes_a_device(client, world):
    console_login(client, "admin")
    devices = client.get("/admin/devices").get_data(as_text=True)
    assert "停用" in devices
    device_id = world.devices["cadre"]
    r = client.post(f"/admin/devices/{device_id}/revoke", data={"csrf_token": csrf_token(client, "/admin/devices")})
    assert r.status_code == 302
    assert client.get("/api/v1/auth/me", headers=world.headers("cadre")).status_code == 401


def test_every_asset_is_served_locally(client, world):
    console_login(client, "supervisor")
    import re

    for url in ("/dashboard", "/problems", "/login", "/api/docs"):
        html = client.get(url).get_data(as_text=True)
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not ref.startswith(("http:", "https:", "//")), (url, ref)
            if ref.startswith("/static/"):
                asset = client.get(ref)
                assert asset.status_code == 200, ref
                asset.close()


def test_admin_creates_a_user_and_the_form_keeps_what_was_typed(client, world):
    console_login(client, "admin")
    token = csrf_token(client, "/admin/users")
    bad = client.post(
        "/admin/users",
        data={"username": "新 人", "display_name": "张三", "role": "cadre", "password": "short", "csrf_token": token},
    )
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert 'value="张三"' in text and "password" in text and "username" in text
    good = client.post(
        "/admin/users",
        data={
            "username": "zhangsan",
            "display_name": "张三",
            "role": "department_staff",
            "department_id": str(world.dept),
            "password": "long-enough-pw",
            "csrf_token": token,
        },
    )
    assert good.status_code == 302
    assert "zhangsan" in client.get("/admin/users").get_data(as_text=True)


def test_admin_edits_a_user_with_the_version_read(client, world):
    console_login(client, "admin")
    url = f"/admin/users/{world.users['cadre']}"
    token = csrf_token(client, url)
    r = client.post(
        url, data={"display_name": "改名", "role": "cadre", "active": "on", "version": "1", "csrf_token": token}
    )
    assert r.status_code == 302
    stale = client.post(url, data={"display_name": "再改", "role": "cadre", "version": "1", "csrf_token": token})
    assert stale.status_code == 409 and "再改" in stale.get_data(as_text=True)
    # A version no int() reads (over 4,300 digits) is refused by the form, not a 500.
    huge = client.post(url, data={"display_name": "再改", "role": "cadre", "version": "9" * 5000, "csrf_token": token})
    assert huge.status_code == 422 and "请填写整数" in huge.get_data(as_text=True)


def test_admin_imports_targets_from_the_console(client, world):
    console_login(client, "admin")
    token = csrf_token(client, "/admin/targets")
    csv_bytes = "类型,名称\n企业,控制台导入企业\n".encode()
    r = client.post(
        "/admin/targets/import",
        data={"file": (io.BytesIO(csv_bytes), "t.csv"), "csrf_token": token},
        content_type="multipart/form-data",
    )
    assert r.status_code == 200 and "新增 1 个" in r.get_data(as_text=True)
    assert client.get("/admin/targets.xlsx").status_code == 200
