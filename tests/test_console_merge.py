"""The console's merging of duplicate problems: the form on a problem's page, what the duplicate and
the survivor show, the list's filter, refusals in Chinese with the choice kept, CSRF, no 500."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

import pytest
from openpyxl import load_workbook

from tests.console_helpers import console_login, csrf_token
from tests.referral_helpers import issue, problem_ids

INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", re.I)
ENGLISH = re.compile(r"\b(Missing data|Not a valid|merged|must be|required field|No such)\b")


class Browser:
    def __init__(self, app: Any, who: str) -> None:
        self.client = app.test_client()
        assert console_login(self.client, who).status_code == 302
        self.token = csrf_token(self.client, "/problems")

    def get(self, url: str) -> Any:
        return self.client.get(url)

    def post(self, url: str, data: dict[str, Any], *, token: bool = True) -> Any:
        return self.client.post(url, data=data | ({"csrf_token": self.token} if token else {}))


def text(r: Any) -> str:
    return r.get_data(as_text=True)


@pytest.fixture
def pair(client, world):
    """(survivor, duplicate): the same problem of the world's firm, written by two cadres."""
    (survivor,) = problem_ids(client, world, 1, who="cadre")
    (duplicate,) = problem_ids(client, world, 1, who="other_cadre")
    return survivor, duplicate


def test_a_supervisor_merges_from_the_problem_page(app, client, world, pair):
    survivor, duplicate = pair
    sup = Browser(app, "supervisor")
    page = text(sup.get(f"/problems/{duplicate}"))
    assert "合并重复问题" in page and f'value="{survivor}"' in page
    assert f'action="/problems/{duplicate}/merge"' in page

    r = sup.post(f"/problems/{duplicate}/merge", {"into": survivor, "version": "1"})
    assert r.status_code == 302 and r.headers["Location"] == f"/problems/{duplicate}"
    page = text(sup.get(f"/problems/{duplicate}"))
    assert "已合并为重复问题" in page  # the flash
    assert "已合并至" in page and f'href="/problems/{survivor}"' in page
    assert "撤销合并" in page and "交办此问题" not in page
    assert "合并至其他问题" in page  # the history line

    page = text(sup.get(f"/problems/{survivor}"))
    assert "已合并的重复问题（1个）" in page and f'href="/problems/{duplicate}"' in page

    listed = text(sup.get("/problems"))
    assert f"/problems/{survivor}" in listed and f"/problems/{duplicate}" not in listed
    listed = text(sup.get("/problems?duplicates=only"))
    assert f"/problems/{duplicate}" in listed and f"/problems/{survivor}" not in listed and "已合并" in listed
    sheet = load_workbook(io.BytesIO(sup.get("/problems.xlsx?duplicates=include").data)).active
    assert sorted(row[-1] or "" for row in sheet.iter_rows(min_row=2, values_only=True)) == ["", "已合并至其他问题"]

    r = sup.post(f"/problems/{duplicate}/unmerge", {"version": "2"})
    assert r.status_code == 302
    assert "已撤销合并" in text(sup.get(f"/problems/{duplicate}"))
    assert f"/problems/{duplicate}" in text(sup.get("/problems"))


def test_a_refused_merge_comes_back_in_chinese_with_the_choice_kept(app, client, world, pair):
    survivor, duplicate = pair
    issue(client, world, [duplicate])  # an open referral (issuing it made the problem's version 2)
    sup = Browser(app, "supervisor")
    r = sup.post(f"/problems/{duplicate}/merge", {"into": survivor, "version": "2"})
    assert r.status_code == 409
    page = text(r)
    assert "尚未办结的交办单" in page
    assert re.search(rf'<option value="{survivor}" selected', page)
    assert not ENGLISH.search(page), ENGLISH.search(page)

    r = sup.post(f"/problems/{survivor}/merge", {"into": "", "version": "1"})
    assert r.status_code == 422 and "合并至：必填" in text(r)
    r = sup.post(f"/problems/{survivor}/merge", {"into": str(uuid.uuid4()), "version": "1"})
    assert r.status_code == 422 and "问题不存在" in text(r)
    r = sup.post(f"/problems/{survivor}/merge", {"into": duplicate, "version": "9"})
    assert r.status_code == 409 and "刚被他人修改过" in text(r)


def test_other_roles_see_no_form_and_may_not_post(app, client, world, pair):
    survivor, duplicate = pair
    for who in ("cadre", "admin"):
        user = Browser(app, who)
        if who == "admin":
            assert "合并重复问题" not in text(user.get(f"/problems/{survivor}"))
        r = user.post(f"/problems/{survivor}/merge", {"into": duplicate, "version": "1"})
        assert r.status_code == 403
    sup = Browser(app, "supervisor")
    assert sup.post(f"/problems/{survivor}/merge", {"into": duplicate, "version": "1"}, token=False).status_code == 400
    assert sup.post(f"/problems/{uuid.uuid4()}/merge", {"into": duplicate, "version": "1"}).status_code == 404


def test_the_writer_of_a_duplicate_reads_where_it_went(app, client, world, pair):
    survivor, duplicate = pair
    sup = Browser(app, "supervisor")
    assert sup.post(f"/problems/{duplicate}/merge", {"into": survivor, "version": "1"}).status_code == 302
    # other_cadre wrote the duplicate but may not open cadre's survivor: the page says so without a link.
    page = text(Browser(app, "other_cadre").get(f"/problems/{duplicate}"))
    assert "已合并至" in page and "另一个问题" in page and f'href="/problems/{survivor}"' not in page


JUNK = ["", " ", "\x00", "9" * 400, "-1", "null", "true", str(uuid.uuid4()), "<b>x</b>", "２０２６"]


def test_junk_never_gives_500_and_pages_carry_no_inline_script(app, client, world, pair):
    survivor, duplicate = pair
    sup = Browser(app, "supervisor")
    for junk in JUNK:
        for action in ("merge", "unmerge"):
            r = sup.post(f"/problems/{duplicate}/{action}", {"into": junk, "version": junk})
            assert r.status_code < 500, (action, junk, text(r)[:300])
        assert sup.get(f"/problems?duplicates={junk}").status_code < 500
    sup.post(f"/problems/{duplicate}/merge", {"into": survivor, "version": "1"})
    for url in (f"/problems/{duplicate}", f"/problems/{survivor}", "/problems?duplicates=include"):
        r = sup.get(url)
        assert r.status_code == 200 and not INLINE.search(text(r)), url
