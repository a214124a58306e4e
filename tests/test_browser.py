"""End-to-end in headless Chromium (Debian's, driven by Playwright; no browser download).

CI (REQUIRE_BROWSER=1) installs chromium and fails these tests if it is missing; elsewhere they
skip with one line. Screenshots of the main pages land in docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server import db as store
from server.db.models import Department
from tests.factories import PASSWORD, visit_note
from tests.referral_helpers import issue, referral_in
from tests.servers import ServerProcess
from tests.sync_helpers import device, note_payload

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# `make screenshots` sets this to docs/screenshots; otherwise screenshots go to the test's tmp dir.
SHOTS = Path(os.environ["SCREENSHOT_DIR"]) if os.environ.get("SCREENSHOT_DIR") else None
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = None
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium fonts-wqy-microhei)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "the playwright package is not installed"
    if missing:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(missing + " (REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(missing)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def live(app, world, db_url, tmp_path) -> Iterator[ServerProcess]:
    server = ServerProcess(db_url, tmp_path / "srv").start()
    yield server
    server.stop()


def login(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def shot(page: Any, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    else:
        page.screenshot()  # still renders the whole page once: a crash here is a failure


def test_supervisor_sees_the_dashboard_and_searches_problems(browser, live, client, world):
    client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre"))
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    login(page, live.url, "supervisor")
    page.wait_for_url("**/dashboard")
    assert "共梳理问题2个" in page.inner_text("main")
    page.wait_for_function("document.querySelector('#outcomes').width > 0")
    page.screenshot()
    page.goto(live.url + "/problems?q=融资")
    assert "流动资金贷款利率偏高" in page.inner_text("main")
    page.screenshot()
    assert errors == [], errors  # no CSP violation, no script error
    context.close()


def test_the_console_is_usable_on_a_360px_phone(browser, live, world):
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN", is_mobile=True)
    page = context.new_page()
    login(page, live.url, "supervisor")
    page.wait_for_url("**/dashboard")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360 + 1, f"the page scrolls sideways at 360 px ({width}px)"
    shot(page, "dashboard-phone")
    context.close()


def tile(page: Any, label: str) -> str:
    """The figure of a dashboard tile, by its label."""
    return page.inner_text(f".tile:has(span:text-is('{label}')) b")


def submit(page: Any, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def test_a_synced_problem_is_referred_signed_answered_and_accepted_in_the_browser(browser, live, client, app, world):
    """The issue's end-to-end story, each person in their own browser, and the dashboard moving."""
    phone = device(client, "cadre", PASSWORD)
    problem_id = str(uuid.uuid4())
    text = "设备更新贷款审批周期长，企业急需资金（端到端）。"
    problem = {"id": problem_id, "category": "financing", "description": text}
    visit_id, note = note_payload(world, problems=[problem])
    pushed = phone.push([phone.change("visit.create", visit_id, note)], queue_depth=0)
    assert pushed.status_code == 200 and pushed.json["results"][0]["status"] == "applied", pushed.json
    errors: list[str] = []

    def person(username: str) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = context.new_page()
        refused = username == "other_staff"  # its 404 pages are expected; Chromium logs them as errors

        def seen(m: Any) -> None:
            if m.type == "error" and not (refused and "status of 404" in m.text):
                errors.append(f"{username}: {m.text} {m.location.get('url', '')}")

        page.on("console", seen)
        login(page, live.url, username)
        page.wait_for_load_state()
        return context, page

    sup_context, sup = person("supervisor")
    sup.wait_for_url("**/dashboard")
    solved_before, closed_rate_before = tile(sup, "已解决"), tile(sup, "办结率")
    assert closed_rate_before == "—%"

    # The supervisor ticks the synced problem on the list and issues a referral.
    sup.goto(live.url + "/problems")
    sup.check(f"input[name=problem][value='{problem_id}']")
    submit(sup, "button:has-text('交办所选问题')")
    assert "设备更新贷款审批周期长" in sup.inner_text("main")
    sup.select_option("select[name=lead_department_id]", str(world.dept))
    sup.fill("textarea[name=requirements]", "请协调合作银行加快审批，5个工作日内反馈办理结果。")
    sup.fill("input[name=workdays]", "5")
    submit(sup, "form.move button[type=submit]")
    assert "已交办，编号 徐工信交〔" in sup.inner_text("main")
    referral_url = sup.url
    referral_id = referral_url.rstrip("/").rsplit("/", 1)[1]
    sup.screenshot()  # renders the whole page once: a crash here is a failure

    # The department's staff find it in the inbox, sign for it and answer.
    staff_context, staff = person("staff")
    staff.goto(live.url + "/inbox")
    assert "设备更新贷款审批周期长" in staff.inner_text("#issued")
    submit(staff, f"#issued a.button[href*='{referral_id}']")
    submit(staff, "button:has-text('签收')")
    assert "已签收" in staff.inner_text("main")
    staff.check("input[name=outcome][value=coordinating]")
    assert staff.is_visible("textarea[name=plan]") and staff.is_hidden("textarea[name=reason]")
    staff.check("input[name=outcome][value=solved]")
    assert staff.is_hidden("textarea[name=plan]"), "the form shows only what a solved answer needs"
    staff.fill("textarea[name=done]", "已协调合作银行开辟绿色通道，贷款800万元已于本周发放。")
    submit(staff, "button:has-text('提交反馈')")
    assert "已反馈办理结果" in staff.inner_text("main")
    staff.screenshot()

    # The supervisor accepts; the dashboard's figures move.
    sup.goto(referral_url)
    assert "贷款800万元已于本周发放" in sup.inner_text("main")
    submit(sup, "button:has-text('审核通过并办结')")
    assert "已审核通过" in sup.inner_text("main") and "已办结" in sup.inner_text("main")
    sup.goto(live.url + "/dashboard")
    assert tile(sup, "办结率") == "100.0%"
    assert int(tile(sup, "已解决")) == int(solved_before) + 1
    assert tile(sup, "按时办结率") == "100.0%"

    # Another department's user is refused the referral by URL.
    other_context, other = person("other_staff")
    response = other.goto(referral_url)
    assert response is not None and response.status == 404
    assert "不存在" in other.inner_text("main")
    assert other.goto(referral_url + "/print").status == 404

    # The printable sheet and the digest preview render.
    sheet = sup.goto(referral_url + "/print")
    assert sheet is not None and sheet.status == 200 and "问题交办单" in sup.inner_text("body")
    if digests_available():
        with app.app_context():
            code = store.session().get(Department, world.dept).code
        preview = sup.goto(f"{live.url}/admin/digests?who={code}")
        assert preview is not None and preview.status == 200
        assert sup.is_visible("pre.mail") and len(sup.inner_text("pre.mail")) > 20
        sup.goto(live.url + "/admin/digests")
        assert sup.is_visible("pre.mail")
    for context in (sup_context, staff_context, other_context):
        context.close()
    assert errors == [], errors  # no CSP violation, no script error on any page


def digests_available() -> bool:
    try:
        from server.services import digests  # noqa: F401
    except ImportError:  # pragma: no cover - the digest service ships with the mail work
        return False
    return True


def test_a_supervisor_merges_a_duplicate_in_the_browser(browser, live, client, world):
    """Two cadres wrote the same problem of one firm; the supervisor merges one, on a 360 px phone."""
    ids = []
    for who in ("cadre", "other_cadre"):
        r = client.post("/api/v1/visits", json=visit_note(world, problems=visit_note(world)["problems"][:1]),
                        headers=world.headers(who))  # fmt: skip
        ids.append(r.json["problems"][0]["id"])
    survivor, duplicate = ids
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN", is_mobile=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    login(page, live.url, "supervisor")
    page.wait_for_url("**/dashboard")
    page.goto(f"{live.url}/problems/{duplicate}")
    page.select_option("select[name=into]", survivor)
    submit(page, "#merge button[type=submit]")
    assert "已合并至" in page.inner_text("main")
    assert page.evaluate("document.documentElement.scrollWidth") <= 361
    submit(page, f"a[href='/problems/{survivor}']")
    assert "已合并的重复问题（1个）" in page.inner_text("main")
    assert errors == [], errors
    context.close()


def test_the_referral_pages_fit_a_360px_phone(browser, live, client, world):
    referral = referral_in(client, world, "closed")
    issue(client, world)
    phone = {"viewport": {"width": 360, "height": 740}, "locale": "zh-CN", "is_mobile": True}
    pages = {
        "supervisor": ["/referrals", f"/referrals/{referral['id']}", "/followups", "/admin/calendar", "/problems"],
        "staff": ["/inbox", f"/referrals/{referral['id']}"],
        "cadre": ["/followups"],
    }
    for username, paths in pages.items():
        context = browser.new_context(**phone)
        page = context.new_page()
        login(page, live.url, username)
        page.wait_for_load_state()
        for path in paths:
            page.goto(live.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360 + 1, f"{path} scrolls sideways at 360 px for {username} ({width}px)"
        context.close()


@pytest.mark.skipif(SHOTS is None, reason="screenshots of the demo only on `make screenshots`")
def test_screenshots_of_the_demo(browser, app, db_url, tmp_path):
    """The README's pictures: the demo Xuzhou data set, as supervisors and departments see it."""
    import datetime as dt

    from server.demo import DEMO_PASSWORD, seed

    with app.app_context(), store.session_scope(app) as s:
        seed(s, today=dt.date.today())
        shown = demo_referrals(s)
    server = ServerProcess(db_url, tmp_path / "demo").start()
    try:

        def person(username: str) -> tuple[Any, Any]:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            page = context.new_page()
            page.goto(server.url + "/login")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", DEMO_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            return context, page

        context, page = person("supervisor")
        page.wait_for_url("**/dashboard")
        page.wait_for_function("document.querySelector('#outcomes').width > 0")
        shot(page, "dashboard")
        for path, name in (
            ("/problems?q=融资", "problems"),
            ("/admin/devices", "devices"),
            ("/referrals", "referrals"),
            (f"/referrals/{shown}", "referral"),
            (f"/referrals/{shown}/print", "referral-sheet"),
            ("/followups", "followups"),
        ):
            page.goto(server.url + path)
            shot(page, name)
        context.close()
        context, page = person("dept-jrjg")
        page.goto(server.url + "/inbox")
        shot(page, "inbox")
        context.close()
    finally:
        server.stop()


def demo_referrals(session: Any) -> uuid.UUID:
    """Referrals in each state on the demo data, most of them to the financial regulator (金融监管局);
    returns one with a full history (extended, then answered) to show."""
    from sqlalchemy import select

    from schemas.enums import ProblemCategory, Role
    from server.db.models import Problem, User
    from server.domain.referrals import ReferralAction as A
    from server.services import referrals as service
    from server.services.actors import Actor
    from server.services.calendar import load_calendar

    def user(username: str) -> Actor:
        u = session.scalar(select(User).where(User.username == username))
        return Actor(u.id, u.role, u.department_id)

    sup, staff = user("supervisor"), user("dept-jrjg")
    assert staff.role is Role.department_staff
    codes = {d.code: d.id for d in session.scalars(select(Department))}
    problems = list(
        session.scalars(
            select(Problem)
            .where(Problem.category == ProblemCategory.financing)
            .order_by(Problem.raised_at.desc(), Problem.id)
            .limit(9)
        )
    )
    calendar = load_calendar(session)

    def refer(ps: list[Any], requirements: str, co: tuple[str, ...] = (), days: int = 5) -> Any:
        data = {"problem_ids": [p.id for p in ps], "lead_department_id": codes["jrjg"], "workdays": days}
        data |= {"co_department_ids": [codes[c] for c in co], "requirements": requirements}
        return service.issue_referral(session, sup, data)

    def step(referral: Any, who: Actor, action: A, **data: Any) -> None:
        service.act(session, who, referral.id, action, data | {"version": referral.version})

    shown = refer(
        problems[0:2],
        "请牵头协调合作银行，对两家企业的流动资金贷款需求逐户对接，书面反馈办理结果。",
        ("yingshang",),
        10,
    )
    step(shown, staff, A.sign)
    until = calendar.add_workdays(service.state_of(shown).due_day, 5)
    step(shown, staff, A.request_extension, until=until, reason="涉及省级分行授信审批，需延长办理时限。")
    step(shown, sup, A.decide_extension, approve=True, until=until, reason="同意，请抓紧推进。")
    step(
        shown,
        staff,
        A.respond,
        outcome="solved",
        done="已组织3家银行上门对接，两家企业共获流动资金贷款1200万元，利率下浮20个基点。",
    )
    closed = refer(problems[2:3], "请协调解决企业融资担保问题。")
    step(closed, staff, A.sign)
    step(closed, staff, A.respond, outcome="solved", done="市融资担保公司已为企业提供500万元担保。")
    step(closed, sup, A.review, accept=True, reason="办理及时，企业认可。")
    signed = refer(problems[3:4], "请了解企业贷款利率偏高的原因并提出解决办法。", ("fgw",))
    step(signed, staff, A.sign)
    refer(problems[4:5], "请对接企业技改项目融资需求。")
    refer(problems[5:7], "请协调银行落实无还本续贷政策。", ("yingshang",), 8)
    returned = refer(problems[7:8], "请协调解决企业上市辅导费用补贴问题。")
    step(returned, staff, A.request_return, grounds="上市补贴由市发改委负责，建议改派。")
    waiting = refer(problems[8:9], "请协调应收账款质押融资。")
    step(waiting, staff, A.sign)
    step(waiting, staff, A.request_extension, until=calendar.add_workdays(service.state_of(waiting).due_day, 3),
         reason="需等待人民银行征信平台数据。")  # fmt: skip
    return shown.id
