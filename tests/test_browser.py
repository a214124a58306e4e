"""End-to-end in headless Chromium (Debian's, driven by Playwright; no browser download).

CI (REQUIRE_BROWSER=1) installs chromium and fails these tests if it is missing; elsewhere they
skip with one line. Screenshots of the main pages land in docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import PASSWORD, visit_note
from tests.servers import ServerProcess

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


@pytest.mark.skipif(SHOTS is None, reason="screenshots of the demo only on `make screenshots`")
def test_screenshots_of_the_demo(browser, app, db_url, tmp_path):
    """The README's pictures: the demo Xuzhou data set, as supervisors and departments see it."""
    import datetime as dt

    from server import db as store
    from server.demo import DEMO_PASSWORD, seed

    with app.app_context(), store.session_scope(app) as s:
        seed(s, today=dt.date.today())
    server = ServerProcess(db_url, tmp_path / "demo").start()
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = context.new_page()
        page.goto(server.url + "/login")
        page.fill("input[name=username]", "supervisor")
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/dashboard")
        page.wait_for_function("document.querySelector('#outcomes').width > 0")
        shot(page, "dashboard")
        for path, name in (("/problems?q=融资", "problems"), ("/admin/devices", "devices")):
            page.goto(server.url + path)
            shot(page, name)
        context.close()
    finally:
        server.stop()
