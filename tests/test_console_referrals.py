"""The console's referral pages: issuing from problems, the list, a referral's page and its moves,
the department inbox, follow-ups, the calendar and the digest preview.

The console calls the API's services with the same Actor, so these tests check what the console
adds: who sees which page and row (a department user gets 404 for another department's referral
by URL), that a form refused comes back with what was typed and the reason in Chinese, that every
POST needs the CSRF token, that no input gives a 500, and that pages carry no inline script or style.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select, update

from server import db
from server.db.followup_models import FollowUp, Referral
from server.db.models import Department, Problem
from tests.console_helpers import console_login, csrf_token
from tests.factories import visit_note
from tests.referral_helpers import ANSWER, issue, problem_ids, read, referral_in

try:
    from server.services import digests
except ImportError:  # pragma: no cover - the digest service ships with the mail work
    digests = None  # type: ignore[assignment]

ENGLISH = re.compile(r"\b(Missing data|Not a valid|Say |Give |Choose |Only |must be|required field)\b")


class Browser:
    """A console user: a logged-in test client and its CSRF token."""

    def __init__(self, app: Any, who: str) -> None:
        self.client: FlaskClient = app.test_client()
        r = console_login(self.client, who)
        assert r.status_code == 302, r.get_data(as_text=True)
        self.token = csrf_token(self.client, "/referrals")

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict[str, Any] | None = None, *, token: bool = True) -> Any:
        body = dict(data or {})
        if token:
            body["csrf_token"] = self.token
        return self.client.post(url, data=body)


@pytest.fixture
def login(app, world):
    return lambda who: Browser(app, who)


def text(r: Any) -> str:
    return r.get_data(as_text=True)


def version(client: Any, world: Any, referral_id: str) -> str:
    return str(read(client, world, referral_id).json["version"])


def move(user: Browser, client: Any, world: Any, referral_id: str, action: str, **fields: Any) -> Any:
    """POST one of a referral page's forms, with the version the page shows now."""
    data = {"version": version(client, world, referral_id)} | fields
    return user.post(f"/referrals/{referral_id}/{action}", data)


# Issuing -------------------------------------------------------------------------------------


def test_supervisor_issues_a_referral_from_problems_checked_on_the_list(client, world, login):
    first, second = problem_ids(client, world, 2)
    sup = login("supervisor")
    listing = text(sup.get("/problems"))
    assert f'name="problem" value="{first}"' in listing and "交办所选问题" in listing
    form = sup.get("/referrals/new", query_string=[("problem", first), ("problem", second), ("problem", "junk")])
    assert form.status_code == 200
    page = text(form)
    assert "融资难融资贵，贷款利率偏高（1）" in page and "融资难融资贵，贷款利率偏高（2）" in page
    r = sup.post(
        "/referrals",
        {
            "problem_ids": [first, second],
            "lead_department_id": str(world.dept),
            "co_department_ids": [str(world.other_dept)],
            "requirements": "请协调银行降低贷款利率，5个工作日内反馈。",
            "workdays": "5",
        },
    )
    assert r.status_code == 302
    referral_id = r.headers["Location"].rsplit("/", 1)[1]
    detail = sup.get(r.headers["Location"])
    page = text(detail)
    assert detail.status_code == 200 and "已交办，编号 徐工信交〔" in page
    assert "请协调银行降低贷款利率" in page and "融资难融资贵，贷款利率偏高（2）" in page
    assert read(client, world, referral_id).json["co_departments"][0]["id"] == str(world.other_dept)


def test_a_problem_page_offers_the_referral_and_lists_its_referrals(client, world, login):
    (pid,) = problem_ids(client, world)
    referral = issue(client, world, [pid]).json
    sup = login("supervisor")
    page = text(sup.get(f"/problems/{pid}"))
    assert f"/referrals/new?problem={pid}" in page
    assert referral["number"] in page and f"/referrals/{referral['id']}" in page


def test_the_issue_form_keeps_what_was_typed_and_says_why_in_chinese(client, world, login):
    (pid,) = problem_ids(client, world)
    sup = login("supervisor")
    r = sup.post(
        "/referrals",
        {
            "problem_ids": [pid],
            "lead_department_id": str(world.dept),
            "co_department_ids": [str(world.dept)],
            "requirements": "请尽快办理<script>",
            "workdays": "999",
        },
    )
    assert r.status_code == 422
    page = text(r)
    assert 'value="999"' in page and "请尽快办理&lt;script&gt;" in page
    assert "办理时限" in page and "应在1到250之间" in page
    assert f'value="{world.dept}" checked' in page
    assert not ENGLISH.search(page), ENGLISH.search(page)
    # The rules' own refusal (lead also co-department), once the shape is right.
    r = sup.post(
        "/referrals",
        {
            "problem_ids": [pid],
            "lead_department_id": str(world.dept),
            "co_department_ids": [str(world.dept)],
            "requirements": "请尽快办理。",
            "workdays": "5",
        },
    )
    assert r.status_code == 422 and "主办单位不能同时是协办单位" in text(r)
    with_nothing = sup.post("/referrals", {"requirements": "   ", "workdays": ""})
    assert with_nothing.status_code == 422 and "还没有选择要交办的问题" in text(with_nothing)


@pytest.mark.parametrize("who", ["cadre", "staff", "admin"])
def test_only_supervisors_issue(client, world, login, who):
    (pid,) = problem_ids(client, world)
    user = login(who)
    assert user.get(f"/referrals/new?problem={pid}").status_code == 403
    body = {"problem_ids": [pid], "lead_department_id": str(world.dept), "requirements": "x", "workdays": "5"}
    assert user.post("/referrals", body).status_code == 403
    assert 'name="problem"' not in text(user.get("/problems"))


# Row rules and CSRF --------------------------------------------------------------------------


def test_a_department_user_gets_404_for_another_departments_referral(client, world, login):
    referral = issue(client, world).json
    rid = referral["id"]
    other = login("other_staff")
    assert other.get(f"/referrals/{rid}").status_code == 404
    assert "不存在" in text(other.get(f"/referrals/{rid}"))
    assert other.get(f"/referrals/{rid}/print").status_code == 404
    assert move(other, client, world, rid, "sign").status_code == 404
    assert referral["number"] not in text(other.get("/referrals"))
    assert referral["number"] not in text(other.get("/inbox"))
    assert read(client, world, rid).json["status"] == "issued"
    own = login("staff")
    assert own.get(f"/referrals/{rid}").status_code == 200
    assert referral["number"] in text(own.get("/inbox"))


def test_a_co_department_reads_but_cannot_act(client, world, login):
    rid = issue(client, world, co_department_ids=[str(world.other_dept)]).json["id"]
    co = login("other_staff")
    page = text(co.get(f"/referrals/{rid}"))
    assert "您的单位是本交办单的<b>协办单位</b>" in page
    assert f"/referrals/{rid}/sign" not in page
    assert "协办·只读" in text(co.get("/inbox"))
    r = move(co, client, world, rid, "sign")
    assert r.status_code == 403 and "无权" in text(r)


def test_every_post_needs_the_csrf_token(client, world, login):
    rid = issue(client, world).json["id"]
    staff = login("staff")
    r = staff.post(f"/referrals/{rid}/sign", {"version": version(client, world, rid)}, token=False)
    assert r.status_code == 400
    assert read(client, world, rid).json["status"] == "issued"
    sup = login("supervisor")
    assert sup.post("/referrals", {"problem_ids": problem_ids(client, world)}, token=False).status_code == 400
    assert sup.post(f"/followups/{uuid.uuid4()}/reassign", {}, token=False).status_code == 400
    admin = login("admin")
    assert admin.post("/admin/calendar", {"day": "2026-10-10", "workday": "true"}, token=False).status_code == 400


@pytest.mark.parametrize("who", ["cadre", "staff", "other_staff"])
def test_pages_refuse_roles_they_are_not_for(world, login, who):
    user = login(who)
    assert user.get("/admin/calendar").status_code == 200  # everyone reads the calendar
    assert "添加或修改一天" not in text(user.get("/admin/calendar"))
    assert user.get("/admin/digests").status_code == 403
    if who == "cadre":
        assert user.get("/inbox").status_code == 403


# The workflow in the console -----------------------------------------------------------------


def test_the_department_signs_and_answers_and_the_supervisor_accepts(app, client, world, login):
    referral = issue(client, world).json
    rid = referral["id"]
    staff = login("staff")
    inbox = text(staff.get("/inbox"))
    assert referral["number"] in inbox and "待签收" in inbox
    assert move(staff, client, world, rid, "sign").status_code == 302
    assert "已签收" in text(staff.get(f"/referrals/{rid}"))
    # Coordinating without a plan or a next date: refused, what was typed stays.
    r = move(staff, client, world, rid, "respond", outcome="coordinating", done="已约谈三家银行。")
    assert r.status_code == 422
    page = text(r)
    assert "已约谈三家银行。" in page and 'value="coordinating" checked' in page
    assert "正在协调解决的，请填写推进计划" in page and not ENGLISH.search(page)
    r = move(staff, client, world, rid, "respond", outcome="solved", done=ANSWER["done"])
    assert r.status_code == 302
    assert read(client, world, rid).json["status"] == "responded"
    sup = login("supervisor")
    page = text(sup.get(f"/referrals/{rid}"))
    assert ANSWER["done"] in page and "审核通过并办结" in page
    assert move(sup, client, world, rid, "review", variant="accept", accept="true").status_code == 302
    after = read(client, world, rid).json
    assert after["status"] == "closed" and after["on_time"] is True
    page = text(sup.get(f"/referrals/{rid}"))
    for line in ("交办", "签收", "办理反馈", "审核通过并办结", "按时办结", "回访"):
        assert line in page
    dashboard = text(sup.get("/dashboard"))
    assert re.search(r"<b>100\.0%</b><span>办结率</span>", dashboard), "the closed rate counts the closed referral"


def test_extension_request_and_the_supervisors_decisions(client, world, login):
    rid = referral_in(client, world, "signed")["id"]
    due = read(client, world, rid).json["due_day"]
    staff, sup = login("staff"), login("supervisor")
    late_day = (dt.date.fromisoformat(due) - dt.timedelta(days=1)).isoformat()
    r = move(staff, client, world, rid, "request_extension", until=late_day, reason="需协调省级部门。")
    assert r.status_code == 422 and "新期限须晚于当前期限" in text(r) and "需协调省级部门。" in text(r)
    page = text(staff.get(f"/referrals/{rid}"))
    suggested = re.search(r'name="until" min="[^"]+" value="([^"]+)"', page).group(1)
    assert (
        move(staff, client, world, rid, "request_extension", until=suggested, reason="需协调省级部门。").status_code
        == 302
    )
    page = text(sup.get(f"/referrals/{rid}"))
    assert f"申请延期至 {suggested}" in page and "需协调省级部门。" in page
    r = move(sup, client, world, rid, "decide_extension", variant="reject", approve="false", reason="  ")
    assert r.status_code == 422 and "请说明不同意延期的理由" in text(r)
    assert move(sup, client, world, rid, "decide_extension", variant="approve", approve="true").status_code == 302
    after = read(client, world, rid).json
    assert (
        after["status"] == "signed"
        and after["due_day"] == suggested
        and after["original_deadline"] != after["deadline"]
    )
    page = text(sup.get(f"/referrals/{rid}"))
    assert "同意延期" in page and "延期至" in page and "（已调整）" in page


def test_a_return_is_reassigned_and_the_referral_moves_to_the_other_department(client, world, login):
    referral = referral_in(client, world, "return_requested")
    rid = referral["id"]
    sup = login("supervisor")
    page = text(sup.get(f"/referrals/{rid}"))
    assert "该事项属于人社局职责。" in page and "同意退回并改派" in page
    r = move(sup, client, world, rid, "decide_return", variant="approve", approve="true")
    assert r.status_code == 422 and "请选择改派的单位" in text(r)
    r = move(
        sup, client, world, rid, "decide_return", variant="approve", approve="true", reassign_to=str(world.other_dept)
    )
    assert r.status_code == 302
    assert read(client, world, rid).json["lead_department"]["id"] == str(world.other_dept)
    assert login("staff").get(f"/referrals/{rid}").status_code == 404
    assert referral["number"] in text(login("other_staff").get("/inbox"))
    history = text(sup.get(f"/referrals/{rid}"))
    assert "同意退回并改派" in history and "原主办单位" in history


def test_a_return_refused_and_an_answer_sent_back_and_a_cancel_need_reasons(client, world, login):
    sup = login("supervisor")
    rid = referral_in(client, world, "return_requested")["id"]
    assert move(sup, client, world, rid, "decide_return", variant="refuse", approve="false").status_code == 422
    r = move(sup, client, world, rid, "decide_return", variant="refuse", approve="false", reason="职责在你单位。")
    assert r.status_code == 302 and read(client, world, rid).json["status"] == "issued"
    rid = referral_in(client, world, "responded")["id"]
    r = move(sup, client, world, rid, "review", variant="send_back", accept="false", workdays="0", reason="补充材料")
    assert r.status_code == 422 and "应在1到250之间" in text(r) and "补充材料" in text(r)
    r = move(sup, client, world, rid, "review", variant="send_back", accept="false", workdays="3", reason="补充材料")
    assert r.status_code == 302 and read(client, world, rid).json["status"] == "signed"
    r = move(sup, client, world, rid, "cancel", reason="")
    assert r.status_code == 422 and "理由：必填" in text(r)
    assert move(sup, client, world, rid, "cancel", reason="企业已自行解决。").status_code == 302
    assert read(client, world, rid).json["status"] == "cancelled"
    assert "已撤销" in text(sup.get(f"/referrals/{rid}"))


def test_a_stale_page_is_a_conflict_shown_with_the_current_referral(client, world, login):
    rid = issue(client, world).json["id"]
    staff = login("staff")
    stale = version(client, world, rid)
    assert move(staff, client, world, rid, "sign").status_code == 302
    r = staff.post(f"/referrals/{rid}/request_return", {"version": stale, "grounds": "不属于本单位"})
    assert r.status_code == 409
    page = text(r)
    assert "刚被他人修改过" in page and "不属于本单位" in page
    assert f'name="version" value="{version(client, world, rid)}"' in page


def test_the_wrong_move_for_the_state_is_refused_in_chinese(client, world, login):
    rid = referral_in(client, world, "closed")["id"]
    staff = login("staff")
    r = move(staff, client, world, rid, "sign")
    assert r.status_code == 409 and "不再适用" in text(r)
    assert staff.post(f"/referrals/{rid}/reopen", {}).status_code == 404
    assert staff.post(f"/referrals/{rid}/nonsense", {}).status_code == 404


# The printable sheet -------------------------------------------------------------------------


def test_the_print_view_is_the_apis_sheet_under_the_consoles_csp(client, world, login):
    referral = issue(client, world).json
    sup = login("supervisor")
    r = sup.get(f"/referrals/{referral['id']}/print")
    assert r.status_code == 200
    page = text(r)
    assert "问题交办单" in page and referral["number"] in page and "融资难融资贵" in page
    assert "<style" not in page and "onclick" not in page and "data-print" in page
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    for ref in re.findall(r'(?:src|href)="(/[^"]+)"', page):
        asset = sup.get(ref)
        assert asset.status_code == 200, ref
        asset.close()
    css = sup.get("/referrals/sheet.css")
    assert css.mimetype == "text/css" and "@page" in text(css)


# The list ------------------------------------------------------------------------------------


def test_the_list_filters_by_state_and_department_and_pages(app, client, world, login, monkeypatch):
    from server.console import referrals as page_module

    signed = referral_in(client, world, "signed")
    issued = issue(client, world).json
    other = issue(client, world, lead_department_id=str(world.other_dept)).json
    sup = login("supervisor")
    everything = text(sup.get("/referrals"))
    assert all(r["number"] in everything for r in (signed, issued, other))
    only_signed = text(sup.get("/referrals?state=signed"))
    assert signed["number"] in only_signed and issued["number"] not in only_signed
    by_id = text(sup.get(f"/referrals?department={world.other_dept}"))
    assert other["number"] in by_id and issued["number"] not in by_id
    with app.app_context():
        code = db.session().get(Department, world.other_dept).code
    by_code = text(sup.get(f"/referrals?department={code}"))
    assert other["number"] in by_code and issued["number"] not in by_code
    assert "没有符合条件的交办单" in text(sup.get("/referrals?state=overdue"))
    with app.app_context(), db.session_scope() as s:
        s.execute(
            update(Referral)
            .where(Referral.id == uuid.UUID(issued["id"]))
            .values(deadline=dt.datetime(2026, 1, 5, tzinfo=dt.UTC))
        )
    overdue = text(sup.get("/referrals?state=overdue"))
    assert issued["number"] in overdue and signed["number"] not in overdue and "逾期" in overdue
    soon = text(sup.get("/referrals?state=due_soon"))
    assert signed["number"] in soon and other["number"] in soon and issued["number"] not in soon
    monkeypatch.setattr(page_module, "PAGE", 2)
    first = text(sup.get("/referrals"))
    cursor = re.search(r'cursor=([^"&]+)"[^>]*>下一页', first).group(1)
    second = text(sup.get(f"/referrals?cursor={cursor}"))
    assert "第一页" in second and sum(r["number"] in first + second for r in (signed, issued, other)) == 3


@pytest.mark.parametrize(
    "query",
    [
        "state=nonsense",
        "year=abc",
        "year=99999",
        "number=xyz",
        "department=no-such-code",
        "cursor=%%%",
        "cursor=eyJ4IjoxfQ",
        "cursor=WzFd",
        "state=due_soon&department=nope",
        "number=" + "9" * 200,
    ],
)
def test_odd_list_queries_never_give_500(client, world, login, query):
    issue(client, world)
    r = login("supervisor").get(f"/referrals?{query}")
    assert r.status_code == 200, text(r)[:500]
    assert not ENGLISH.search(text(r))
    assert login("staff").get(f"/referrals.xlsx?{query}").status_code in (200, 400, 422)


def test_the_list_exports_to_xlsx_with_chinese_headers(client, world, login):
    referral = referral_in(client, world, "closed")
    xlsx = login("supervisor").get("/referrals.xlsx?state=closed")
    rows = list(load_workbook(io.BytesIO(xlsx.data)).active.iter_rows(values_only=True))
    assert rows[0][:5] == ("编号", "主办单位", "协办单位", "交办问题", "状态")
    assert rows[1][0] == referral["number"] and rows[1][4] == "已办结" and rows[1][-1] == "是"


def test_the_department_staff_list_holds_only_its_own(client, world, login):
    mine = issue(client, world).json
    theirs = issue(client, world, lead_department_id=str(world.other_dept)).json
    page = text(login("staff").get(f"/referrals?department={world.other_dept}"))
    assert theirs["number"] not in page and mine["number"] not in page
    page = text(login("staff").get("/referrals"))
    assert mine["number"] in page and theirs["number"] not in page


def test_the_dashboards_overdue_list_links_to_the_referral(app, client, world, login):
    referral = issue(client, world).json
    with app.app_context(), db.session_scope() as s:
        late = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
        s.execute(update(Referral).where(Referral.id == uuid.UUID(referral["id"])).values(deadline=late))
    page = text(login("supervisor").get("/dashboard"))
    assert f'href="/referrals/{referral["id"]}">{referral["number"]}</a>' in page and "已交办" in page


def test_links_in_mail_under_console_reach_the_pages(client, world, login):
    referral = issue(client, world).json
    sup = login("supervisor")
    r = sup.get(f"/console/referrals/{referral['id']}")
    assert r.status_code == 302 and r.headers["Location"] == f"/referrals/{referral['id']}"
    r = sup.get("/console/referrals?state=overdue&department=x")
    assert r.headers["Location"] == "/referrals?state=overdue&department=x"
    for odd in ("/console//evil.example", "/console/%5C%5Cevil.example", "/console/%2F%2Fevil.example"):
        location = urlsplit(sup.get(odd).headers["Location"])
        assert location.netloc in ("", "localhost") and location.path.endswith("/evil.example"), odd


# Follow-ups ----------------------------------------------------------------------------------


def revisit_of(app: Any, referral_id: str) -> FollowUp:
    with app.app_context():
        return db.session().scalars(select(FollowUp).where(FollowUp.referral_id == uuid.UUID(referral_id))).one()


def test_a_cadre_records_a_revisit_and_unsatisfied_reopens_the_referral(app, client, world, login):
    rid = referral_in(client, world, "closed")["id"]
    followup = revisit_of(app, rid)
    assert followup.assignee_id == world.users["cadre"]
    cadre = login("cadre")
    page = text(cadre.get("/followups"))
    assert "回访" in page and "满意" in page and "基本满意" in page and "不满意" in page
    assert str(followup.id) not in text(login("other_cadre").get("/followups"))
    url = f"/followups/{followup.id}/complete"
    r = cadre.post(url, {"version": str(followup.version), "satisfaction": "unsatisfied", "note": ""})
    assert r.status_code == 422
    page = text(r)
    assert "不满意的，请说明原因" in page and 'value="unsatisfied" checked' in page and not ENGLISH.search(page)
    r = cadre.post(url, {"version": str(followup.version), "satisfaction": "unsatisfied", "note": "贷款仍未发放。"})
    assert r.status_code == 302
    after = read(client, world, rid).json
    assert after["status"] == "signed"
    assert "回访不满意，重新办理" in text(login("supervisor").get(f"/referrals/{rid}"))
    assert login("other_cadre").post(url, {"version": "2", "satisfaction": "satisfied"}).status_code == 404


def test_supervisors_see_every_followup_and_reassign(app, client, world, login):
    rid = referral_in(client, world, "closed")["id"]
    followup = revisit_of(app, rid)
    sup = login("supervisor")
    page = text(sup.get("/followups"))
    assert str(followup.id) in page and "改派" in page and "各干部待办数" in page
    url = f"/followups/{followup.id}/reassign"
    r = sup.post(url, {"version": str(followup.version), "assignee_id": str(world.users["staff"])})
    assert r.status_code == 422 and "请选择在岗的干部或督查人员" in text(r)
    r = sup.post(url, {"version": str(followup.version), "assignee_id": str(world.users["other_cadre"])})
    assert r.status_code == 302
    assert str(followup.id) in text(login("other_cadre").get("/followups"))
    assert str(followup.id) not in text(login("cadre").get("/followups"))
    assert login("cadre").post(url, {"version": "2", "assignee_id": str(world.users["cadre"])}).status_code == 403
    stale = sup.post(url, {"version": str(followup.version), "assignee_id": str(world.users["cadre"])})
    assert stale.status_code == 409 and "刚被他人修改过" in text(stale)
    listed = text(sup.get(f"/followups?status=all&assignee={world.users['other_cadre']}&kind=revisit"))
    assert str(followup.id) in listed
    for junk in ("status=zzz", "kind=zzz", "assignee=zzz", "cursor=%%%"):
        assert sup.get(f"/followups?{junk}").status_code == 200


# The calendar and the digest -----------------------------------------------------------------


def test_admins_keep_the_calendar_overrides(world, login):
    admin = login("admin")
    r = admin.post("/admin/calendar", {"day": "2026-02-31", "workday": "true", "note": "调休"})
    assert r.status_code == 422 and 'value="调休"' in text(r) and "日期格式不对" in text(r)
    r = admin.post("/admin/calendar", {"day": "2026-10-10", "workday": "true", "note": "调休上班"})
    assert r.status_code == 302 and r.headers["Location"].endswith("year=2026")
    page = text(admin.get("/admin/calendar?year=2026"))
    assert "2026-10-10（周六）" in page and "调休上班" in page and "上班" in page
    sup = login("supervisor")
    assert "调休上班" in text(sup.get("/admin/calendar?year=2026"))
    assert sup.post("/admin/calendar/2026-10-10/delete").status_code == 403
    assert admin.post("/admin/calendar/2026-13-01/delete").status_code == 404
    assert admin.post("/admin/calendar/2026-10-10/delete").status_code == 302
    assert admin.post("/admin/calendar/2026-10-10/delete").status_code == 404
    assert "没有单独设置" in text(admin.get("/admin/calendar?year=2026"))
    assert admin.get("/admin/calendar?year=abc").status_code == 200


@pytest.mark.skipif(digests is None, reason="the digest service is not in this tree")
def test_the_digest_preview_renders_for_the_bureau_and_a_department(app, client, world, login):
    issue(client, world)
    sup = login("supervisor")
    r = sup.get("/admin/digests")
    assert r.status_code == 200 and '<pre class="mail">' in text(r)
    with app.app_context():
        code = db.session().get(Department, world.dept).code
    week = digests.iso_week(dt.date.today() + dt.timedelta(days=7))
    r = sup.get(f"/admin/digests?who={code}&week={week}")
    assert r.status_code == 200 and '<pre class="mail">' in text(r)
    html = sup.get(f"/admin/digests/mail.html?who={code}&week={week}")
    assert html.status_code == 200 and "attachment" in html.headers["Content-Disposition"]
    assert sup.get("/admin/digests?week=2026-W99").status_code == 422
    assert "没有这个单位" in text(sup.get("/admin/digests?who=nope"))


# Every page: no 500, no inline script or style -----------------------------------------------

INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", re.I)


def test_new_pages_carry_no_inline_script_or_style(client, world, login):
    rid = referral_in(client, world, "closed")["id"]
    pid = read(client, world, rid).json["problems"][0]["id"]
    pages = {
        "supervisor": ["/referrals", f"/referrals/{rid}", f"/referrals/{rid}/print", f"/referrals/new?problem={pid}",
                       "/followups", "/admin/calendar", "/problems", f"/problems/{pid}", "/dashboard"],
        "staff": ["/inbox", f"/referrals/{rid}"],
        "cadre": ["/followups"],
    }  # fmt: skip
    if digests is not None:
        pages["supervisor"].append("/admin/digests")
    for who, urls in pages.items():
        user = login(who)
        for url in urls:
            r = user.get(url)
            assert r.status_code == 200, (who, url)
            assert not INLINE.search(text(r)), (who, url, INLINE.search(text(r)))


JUNK = ["", " ", "\x00", "9" * 400, "-1", "2026-02-30", "null", "true", str(uuid.uuid4()), "<b>x</b>", "２０２６"]


@pytest.mark.parametrize("action", ["sign", "request_return", "request_extension", "respond", "decide_extension",
                                    "decide_return", "review", "cancel"])  # fmt: skip
def test_junk_in_any_field_of_a_move_never_gives_500(client, world, login, action):
    rid = referral_in(client, world, "signed")["id"]
    fields = ["version", "variant", "grounds", "reason", "until", "approve", "reassign_to", "co_department_ids",
              "outcome", "done", "plan", "next_date", "accept", "workdays"]  # fmt: skip
    for who in ("staff", "supervisor"):
        user = login(who)
        for junk in JUNK:
            r = user.post(f"/referrals/{rid}/{action}", dict.fromkeys(fields, junk))
            assert r.status_code < 500, (who, action, junk, text(r)[:300])


def test_junk_in_the_issue_form_and_followups_never_gives_500(app, client, world, login):
    sup = login("supervisor")
    fields = ["problem_ids", "lead_department_id", "co_department_ids", "requirements", "workdays"]
    for junk in JUNK:
        assert sup.post("/referrals", dict.fromkeys(fields, junk)).status_code < 500, junk
        assert sup.get("/referrals/new", query_string={"problem": junk}).status_code < 500, junk
    rid = referral_in(client, world, "closed")["id"]
    followup = revisit_of(app, rid)
    cadre = login("cadre")
    for junk in JUNK:
        body = dict.fromkeys(["version", "satisfaction", "note", "next_date"], junk)
        assert cadre.post(f"/followups/{followup.id}/complete", body).status_code < 500, junk
        body = dict.fromkeys(["version", "assignee_id"], junk)
        assert sup.post(f"/followups/{followup.id}/reassign", body).status_code < 500, junk
    admin = login("admin")
    for junk in JUNK:
        assert admin.post("/admin/calendar", dict.fromkeys(["day", "workday", "note"], junk)).status_code < 500


def test_problems_routed_by_a_referral_reach_the_department(app, client, world, login):
    rid = issue(client, world).json["id"]
    pid = read(client, world, rid).json["problems"][0]["id"]
    staff = login("staff")
    page = text(staff.get(f"/referrals/{rid}"))
    assert f'href="/problems/{pid}"' in page
    with app.app_context():
        assert db.session().get(Problem, uuid.UUID(pid)).department_id == world.dept


def test_the_dashboard_says_which_portfolio_targets_were_visited_in_the_period(app, client, world, login):
    from server.db.models import Target, User

    with app.app_context():
        s = db.session()
        cadre, firm = s.get(User, world.users["cadre"]).display_name, s.get(Target, world.firm).name
    sup = login("supervisor")

    def row(query: str = "") -> str:
        page = text(sup.get(f"/dashboard{query}")).split("包挂走访情况")[1]
        return re.search(rf"<tr><td>{cadre}</td>(.*?)</tr>", page, re.S).group(1)

    assert firm in row()  # nothing visited yet
    client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre"))  # at the firm, 2026-11-20
    visited = row()
    assert '<td class="num">1</td><td class="num">1</td>' in visited and firm not in visited
    assert firm in row("?from=2026-01-01&to=2026-01-31")
    assert firm not in row("?from=2026-11-01&to=2026-11-30")


def test_the_dashboard_counts_closed_on_time_and_satisfied(app, client, world, login):
    sup = login("supervisor")

    def tile(label: str) -> str:
        return re.search(rf"<b>([^<]*)</b><span>{label}</span>", text(sup.get("/dashboard"))).group(1)

    assert (tile("办结率"), tile("满意率")) == ("—%", "—%")
    first, second = referral_in(client, world, "closed"), referral_in(client, world, "closed")
    referral_in(client, world, "signed")
    referral_in(client, world, "cancelled")  # not counted as issued
    assert (tile("下发交办单"), tile("办结率"), tile("按时办结率")) == ("3", "66.7%", "100.0%")
    for referral, satisfaction in ((first, "satisfied"), (second, "unsatisfied")):
        followup = revisit_of(app, referral["id"])
        body = {"satisfaction": satisfaction, "note": "企业反馈。", "version": followup.version}
        url = f"/api/v1/followups/{followup.id}/complete"
        assert client.post(url, json=body, headers=world.headers("cadre")).status_code == 200
    assert tile("满意率") == "50.0%"
    assert tile("办结率") == "33.3%"  # the unsatisfied revisit reopened the second
