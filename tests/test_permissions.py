"""Every route x every role: who may do what, and rows a role must not see.

Each case runs against a fresh database: the world (tests/factories.py) plus one visit of
`cadre` whose first problem concerns `staff`'s department.
"""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from server import db
from server.db.models import Problem
from tests.factories import visit_note
from tests.referral_helpers import followup_case, on_ctx, override_case, referral_case
from tests.sync_helpers import CLIENT

WHO = ["anonymous", "cadre", "other_cadre", "supervisor", "staff", "other_staff", "admin"]


@dataclass
class Ctx:
    world: Any
    visit: dict[str, Any]
    spare: dict[str, Any]  # a visit of `cadre` that nobody acted on
    conflict: str = ""  # an open sync conflict of `cadre`
    device_of: Any = None  # the device of the caller's token (set per case)

    def version(self, client, url: str) -> int:
        return client.get(url, headers=self.world.headers("admin")).json["version"]


@dataclass
class Case:
    method: str
    url: Callable[[Ctx], str]
    expect: dict[str, int]
    body: Callable[[Ctx, Any], Any] | None = None
    files: bool = False
    headers: dict[str, str] | None = None


def everyone(status: int, **overrides: int) -> dict[str, int]:
    return {w: overrides.get(w, status) for w in WHO} | ({"anonymous": 401} if "anonymous" not in overrides else {})


def only(roles: dict[str, int], denied: int = 403) -> dict[str, int]:
    return {w: roles.get(w, 401 if w == "anonymous" else denied) for w in WHO}


def _csv(_ctx: Ctx, _client: Any) -> dict[str, Any]:
    return {"file": (io.BytesIO("类型,名称\n企业,新企业\n".encode()), "targets.csv")}


PHOTO = b"\xff\xd8\xff a photo of the visit"
PHOTO_SHA = hashlib.sha256(PHOTO).hexdigest()
TUS = {"Tus-Resumable": "1.0.0"}
TUS_CREATE = TUS | {
    "Upload-Length": str(len(PHOTO)),
    "Upload-Metadata": ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"sha256": PHOTO_SHA, "filetype": "image/jpeg"}.items()
    ),
}
TUS_CHUNK = TUS | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}


def _upload_of_cadre(ctx: Ctx, client: Any) -> None:
    """An upload of `cadre` in progress (ctx.upload); the request under test has no body."""
    r = client.post("/api/v1/uploads/", headers=ctx.world.headers("cadre") | TUS_CREATE)
    ctx.upload = r.headers["Location"].rsplit("/", 1)[-1]  # type: ignore[attr-defined]


def _photo_of_visit(ctx: Ctx, client: Any) -> None:
    """A photo of a visit of `cadre`, uploaded (ctx.photo); the request under test has no body."""
    ref = {"id": str(uuid.uuid4()), "sha256": PHOTO_SHA, "filename": "照片.jpg", "content_type": "image/jpeg"}
    note = visit_note(ctx.world, problems=[], attachments=[ref | {"size": len(PHOTO)}])
    client.post("/api/v1/visits", json=note, headers=ctx.world.headers("cadre"))
    _upload_of_cadre(ctx, client)
    url = f"/api/v1/uploads/{ctx.upload}"  # type: ignore[attr-defined]
    client.patch(url, data=PHOTO, headers=ctx.world.headers("cadre") | TUS_CHUNK)
    ctx.photo = PHOTO_SHA  # type: ignore[attr-defined]


def _merged_problem(ctx: Ctx, client: Any) -> dict[str, Any]:
    """`cadre`'s second problem merged into the first by the supervisor; the body to unmerge it."""
    problems = ctx.visit["problems"]
    body = {"into": problems[0]["id"], "version": 1}
    r = client.post(f"/api/v1/problems/{problems[1]['id']}/merge", json=body, headers=ctx.world.headers("supervisor"))
    assert r.status_code == 200, r.json
    return {"version": r.json["version"]}


CASES: dict[str, Case] = {
    "version": Case("GET", lambda c: "/api/v1/version", everyone(200, anonymous=200)),
    "me": Case("GET", lambda c: "/api/v1/auth/me", everyone(200)),
    "logout": Case("POST", lambda c: "/api/v1/auth/logout", everyone(204)),
    "devices": Case("GET", lambda c: "/api/v1/devices", everyone(200)),
    "departments.list": Case("GET", lambda c: "/api/v1/departments", everyone(200)),
    "departments.create": Case(
        "POST", lambda c: "/api/v1/departments", only({"admin": 201}), lambda c, cl: {"code": "new", "name": "新部门"}
    ),
    "departments.get": Case("GET", lambda c: f"/api/v1/departments/{c.world.dept}", everyone(200)),
    "departments.update": Case(
        "PATCH",
        lambda c: f"/api/v1/departments/{c.world.dept}",
        only({"admin": 200}),
        lambda c, cl: {"name": "改名部门", "version": 1},
    ),
    "users.list": Case("GET", lambda c: "/api/v1/users", only({"admin": 200, "supervisor": 200})),
    "users.create": Case(
        "POST",
        lambda c: "/api/v1/users",
        only({"admin": 201}),
        lambda c, cl: {"username": "newbie", "display_name": "新人", "role": "cadre", "password": "long-enough-pw"},
    ),
    "users.get_other": Case(
        "GET",
        lambda c: f"/api/v1/users/{c.world.users['cadre']}",
        only({"admin": 200, "supervisor": 200, "cadre": 200}),
    ),
    "users.update": Case(
        "PATCH",
        lambda c: f"/api/v1/users/{c.world.users['other_cadre']}",
        only({"admin": 200}),
        lambda c, cl: {"title": "科长", "version": 1},
    ),
    "campaigns.list": Case("GET", lambda c: "/api/v1/campaigns", everyone(200)),
    "campaigns.create": Case(
        "POST",
        lambda c: "/api/v1/campaigns",
        only({"admin": 201, "supervisor": 201}),
        lambda c, cl: {"code": "new-round", "name": "新一轮走访", "starts_on": "2026-12-01"},
    ),
    "campaigns.get": Case("GET", lambda c: f"/api/v1/campaigns/{c.world.campaign}", everyone(200)),
    "campaigns.update": Case(
        "PATCH",
        lambda c: f"/api/v1/campaigns/{c.world.campaign}",
        only({"admin": 200, "supervisor": 200}),
        lambda c, cl: {"description": "说明", "version": 1},
    ),
    "targets.list": Case("GET", lambda c: "/api/v1/targets", everyone(200)),
    "targets.create": Case(
        "POST", lambda c: "/api/v1/targets", only({"admin": 201}), lambda c, cl: {"kind": "firm", "name": "新企业"}
    ),
    "targets.get": Case("GET", lambda c: f"/api/v1/targets/{c.world.firm}", everyone(200)),
    "targets.update": Case(
        "PATCH",
        lambda c: f"/api/v1/targets/{c.world.firm}",
        only({"admin": 200}),
        lambda c, cl: {"address": "徐州市", "version": 1},
    ),
    "targets.delete": Case("DELETE", lambda c: f"/api/v1/targets/{c.world.project}", only({"admin": 204})),
    "targets.export": Case(
        "GET", lambda c: "/api/v1/targets/export?format=csv", only({"admin": 200, "supervisor": 200})
    ),
    "targets.import": Case("POST", lambda c: "/api/v1/targets/import", only({"admin": 200}), _csv, files=True),
    "portfolio.get": Case("GET", lambda c: f"/api/v1/users/{c.world.users['cadre']}/portfolio", everyone(200)),
    "portfolio.put": Case(
        "PUT",
        lambda c: f"/api/v1/users/{c.world.users['cadre']}/portfolio",
        only({"admin": 200}),
        lambda c, cl: {"target_ids": [str(c.world.firm), str(c.world.project)]},
    ),
    "visits.list": Case(
        "GET",
        lambda c: "/api/v1/visits",
        only({"cadre": 200, "other_cadre": 200, "supervisor": 200, "admin": 200}),
    ),
    "visits.create": Case(
        "POST",
        lambda c: "/api/v1/visits",
        only({"cadre": 201, "other_cadre": 201, "supervisor": 201}),
        lambda c, cl: visit_note(c.world),
    ),
    "visits.get": Case(
        "GET",
        lambda c: f"/api/v1/visits/{c.visit['id']}",
        only({"cadre": 200, "other_cadre": 404, "supervisor": 200, "admin": 200}),
    ),
    "visits.update": Case(
        "PATCH",
        lambda c: f"/api/v1/visits/{c.visit['id']}",
        only({"cadre": 200, "other_cadre": 404}),
        lambda c, cl: {"summary": "补充记录", "version": 1},
    ),
    "visits.delete": Case(
        "DELETE", lambda c: f"/api/v1/visits/{c.spare['id']}", only({"cadre": 204, "other_cadre": 404})
    ),
    "visits.add_problem": Case(
        "POST",
        lambda c: f"/api/v1/visits/{c.visit['id']}/problems",
        only({"cadre": 201, "other_cadre": 404}),
        lambda c, cl: {"category": "land", "description": "用地指标紧张。"},
    ),
    "problems.list": Case("GET", lambda c: "/api/v1/problems", everyone(200)),
    "problems.get_routed": Case(
        "GET",
        lambda c: f"/api/v1/problems/{c.visit['problems'][0]['id']}",
        only({"cadre": 200, "supervisor": 200, "admin": 200, "staff": 200}, denied=404),
    ),
    "problems.get_unrouted": Case(
        "GET",
        lambda c: f"/api/v1/problems/{c.visit['problems'][1]['id']}",
        only({"cadre": 200, "supervisor": 200, "admin": 200}, denied=404),
    ),
    "problems.triage": Case(
        "PATCH",
        lambda c: f"/api/v1/problems/{c.visit['problems'][1]['id']}",
        only({"supervisor": 200, "cadre": 403, "admin": 403}, denied=404),
        lambda c, cl: {"department_id": str(c.world.other_dept), "version": 1},
    ),
    "problems.reword": Case(
        "PATCH",
        lambda c: f"/api/v1/problems/{c.visit['problems'][1]['id']}",
        only({"supervisor": 200, "cadre": 200, "admin": 403}, denied=404),
        lambda c, cl: {"description": "招工难，一线工人缺口50人。", "version": 1},
    ),
    "problems.merge": Case(
        "POST",
        lambda c: f"/api/v1/problems/{c.visit['problems'][1]['id']}/merge",
        only({"supervisor": 200}),
        lambda c, cl: {"into": c.visit["problems"][0]["id"], "version": 1},
    ),
    "problems.unmerge": Case(
        "POST",
        lambda c: f"/api/v1/problems/{c.visit['problems'][1]['id']}/unmerge",
        only({"supervisor": 200}),
        _merged_problem,
    ),
    "reports.summary": Case("GET", lambda c: "/api/v1/reports/summary", only({"supervisor": 200, "admin": 200})),
    "sync.push": Case(
        "POST",
        lambda c: "/api/v1/sync/push",
        only({"cadre": 200, "other_cadre": 200, "supervisor": 200}),
        lambda c, cl: {"device_id": str(c.device_of), "changes": []},
        headers=CLIENT,
    ),
    "sync.pull": Case(
        "POST",
        lambda c: "/api/v1/sync/pull",
        only({"cadre": 200, "other_cadre": 200, "supervisor": 200}),
        lambda c, cl: {"cursor": "0"},
        headers=CLIENT,
    ),
    "sync.devices": Case("GET", lambda c: "/api/v1/sync/devices", everyone(200, staff=403, other_staff=403)),
    "sync.rejections": Case("GET", lambda c: "/api/v1/sync/rejections", everyone(200, staff=403, other_staff=403)),
    "sync.conflicts": Case("GET", lambda c: "/api/v1/sync/conflicts", everyone(200, staff=403, other_staff=403)),
    "sync.resolve": Case(
        "POST",
        lambda c: f"/api/v1/sync/conflicts/{c.conflict}/resolve",
        only({"cadre": 200, "supervisor": 200, "admin": 200}, denied=404),
        lambda c, cl: {"resolution": "keep_server"},
    ),
    "attachments.missing": Case(
        "POST",
        lambda c: "/api/v1/attachments/missing",
        only({"cadre": 200, "other_cadre": 200, "supervisor": 200}),
        lambda c, cl: {"sha256": [PHOTO_SHA]},
    ),
    "attachments.get": Case(
        "GET",
        lambda c: f"/api/v1/attachments/{getattr(c, 'photo', '<string(length=64):sha256>')}",
        only({"cadre": 200, "supervisor": 200, "admin": 200}, denied=404),
        _photo_of_visit,
    ),
    "uploads.create": Case(
        "POST",
        lambda c: "/api/v1/uploads/",
        only({"cadre": 201, "other_cadre": 201, "supervisor": 201}),
        headers=TUS_CREATE,
    ),
    "uploads.patch": Case(
        "PATCH",
        lambda c: f"/api/v1/uploads/{getattr(c, 'upload', '<upload_id>')}",
        only({"cadre": 204, "other_cadre": 404, "supervisor": 404}),
        _upload_of_cadre,
        headers=TUS_CHUNK,
    ),
    "uploads.delete": Case(
        "DELETE",
        lambda c: f"/api/v1/uploads/{getattr(c, 'upload', '<upload_id>')}",
        only({"cadre": 204, "other_cadre": 404, "supervisor": 404}),
        _upload_of_cadre,
        headers=TUS,
    ),
    "referrals.list": Case("GET", lambda c: "/api/v1/referrals", everyone(200)),
    "referrals.issue": Case(
        "POST",
        lambda c: "/api/v1/referrals",
        only({"supervisor": 201}),
        lambda c, cl: {
            "problem_ids": [c.visit["problems"][0]["id"]],
            "lead_department_id": str(c.world.dept),
            "requirements": "请协调解决。",
            "workdays": 5,
        },
    ),
    "referrals.get": Case(
        "GET",
        lambda c: f"/api/v1/referrals/{on_ctx(c, 'referral', '<uuid:referral_id>')}",
        only({"cadre": 200, "supervisor": 200, "staff": 200, "admin": 200}, denied=404),
        referral_case("issued"),
    ),
    "referrals.sheet": Case(
        "GET",
        lambda c: f"/api/v1/referrals/{on_ctx(c, 'referral', '<uuid:referral_id>')}/sheet",
        only({"cadre": 200, "supervisor": 200, "staff": 200, "admin": 200}, denied=404),
        referral_case("issued"),
    ),
    **{
        f"referrals.{action}": Case(
            "POST",
            lambda c, action=action: f"/api/v1/referrals/{on_ctx(c, 'referral', '<uuid:referral_id>')}/{action}",
            only({"staff": 200, "other_staff": 404} if lead else {"supervisor": 200}),
            referral_case(state, action, **fields),
        )
        for action, state, lead, fields in (
            ("sign", "issued", True, {}),
            ("request_return", "issued", True, {"grounds": "不属于本单位职责。"}),
            ("request_extension", "signed", True, {"reason": "需协调省级部门。"}),
            ("respond", "signed", True, {"outcome": "solved", "done": "已解决。"}),
            ("decide_return", "return_requested", False, {"approve": False, "reason": "请继续办理。"}),
            ("decide_extension", "extension_requested", False, {"approve": True}),
            ("review", "responded", False, {"accept": True}),
            ("cancel", "issued", False, {"reason": "重复交办。"}),
        )
    },
    "followups.list": Case("GET", lambda c: "/api/v1/followups", everyone(200)),
    "followups.get": Case(
        "GET",
        lambda c: f"/api/v1/followups/{on_ctx(c, 'followup', '<uuid:followup_id>')}",
        only({"cadre": 200, "supervisor": 200, "staff": 200, "admin": 200}, denied=404),
        followup_case(),
    ),
    "followups.complete": Case(
        "POST",
        lambda c: f"/api/v1/followups/{on_ctx(c, 'followup', '<uuid:followup_id>')}/complete",
        only({"cadre": 200, "supervisor": 403, "staff": 403, "admin": 403}, denied=404),
        followup_case(satisfaction="satisfied", version=1),
    ),
    "followups.reassign": Case(
        "POST",
        lambda c: f"/api/v1/followups/{on_ctx(c, 'followup', '<uuid:followup_id>')}/reassign",
        only({"supervisor": 200}),
        lambda c, cl: followup_case(assignee_id=str(c.world.users["other_cadre"]), version=1)(c, cl),
    ),
    "calendar.list": Case("GET", lambda c: "/api/v1/calendar/overrides", everyone(200)),
    "calendar.set": Case(
        "POST",
        lambda c: "/api/v1/calendar/overrides",
        only({"admin": 201}),
        lambda c, cl: {"day": "2026-10-10", "workday": True, "note": "调休补班"},
    ),
    "calendar.delete": Case(
        "DELETE",
        lambda c: f"/api/v1/calendar/overrides/{on_ctx(c, 'override_day', '<day>')}",
        only({"admin": 204}),
        override_case,
    ),
}
# Role denials come before row checks, except for the rows a role may not even know exist.
for name in ("visits.list", "visits.get", "visits.update", "visits.delete", "visits.add_problem"):
    CASES[name].expect["staff"] = CASES[name].expect["other_staff"] = 403
for name in ("visits.update", "visits.delete", "visits.add_problem"):
    CASES[name].expect["supervisor"] = CASES[name].expect["admin"] = 403
CASES["users.get_other"].expect["other_cadre"] = 403


def test_every_route_is_in_the_matrix(app):
    routes = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    covered = {"POST /api/v1/auth/login", "POST /api/v1/devices/<uuid:device_id>/revoke"}  # tests/test_auth.py
    for case in CASES.values():
        covered.add(f"{case.method} {case.url_rule}")  # type: ignore[attr-defined]
    missing = {f"{m} {r}" for m, r in routes} - covered
    assert not missing, f"routes without a permission case: {sorted(missing)}"


def _rule_of(case: Case) -> str:
    fake = Ctx(
        world=type(
            "W",
            (),
            {
                "dept": "<uuid:department_id>",
                "other_dept": "x",
                "firm": "<uuid:target_id>",
                "project": "<uuid:target_id>",
                "campaign": "<uuid:campaign_id>",
                "users": {"cadre": "<uuid:user_id>", "other_cadre": "<uuid:user_id>"},
            },
        ),
        visit={"id": "<uuid:visit_id>", "problems": [{"id": "<uuid:problem_id>"}] * 2},
        spare={"id": "<uuid:visit_id>"},
        conflict="<uuid:conflict_id>",
    )
    return case.url(fake).split("?")[0]


for _case in CASES.values():
    _case.url_rule = _rule_of(_case)  # type: ignore[attr-defined]


@pytest.fixture
def ctx(app, client, world) -> Ctx:
    visit = client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre")).json
    with app.app_context(), db.session_scope() as s:
        s.get(Problem, uuid.UUID(visit["problems"][0]["id"])).department_id = world.dept
    spare = client.post("/api/v1/visits", json=visit_note(world, problems=[]), headers=world.headers("cadre")).json
    # An edit from the cadre's phone based on an old version: an open conflict.
    client.patch(
        f"/api/v1/visits/{spare['id']}", json={"summary": "改过", "version": 1}, headers=world.headers("cadre")
    )
    push = {
        "device_id": str(world.devices["cadre"]),
        "changes": [
            {
                "seq": 1,
                "kind": "visit.update",
                "record_id": spare["id"],
                "base_version": 1,
                "payload": {"summary": "旧"},
            }
        ],
    }
    r = client.post("/api/v1/sync/push", json=push, headers=world.headers("cadre") | CLIENT)
    return Ctx(world, visit, spare, conflict=r.json["results"][0]["conflict_id"])


# A GET changes nothing, so every role asks on the same database; any other call gets a fresh one.
READS = sorted(name for name, case in CASES.items() if case.method == "GET")
WRITES = sorted(name for name, case in CASES.items() if case.method != "GET")


@pytest.mark.parametrize("name", READS)
def test_read_route_by_role(client, ctx: Ctx, name: str) -> None:
    for who in WHO:
        call_as(client, ctx, name, who)


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("name", WRITES)
def test_route_by_role(client, ctx: Ctx, name: str, who: str) -> None:
    call_as(client, ctx, name, who)


def call_as(client: Any, ctx: Ctx, name: str, who: str) -> None:
    case = CASES[name]
    headers = {} if who == "anonymous" else ctx.world.headers(who)
    headers |= case.headers or {}
    ctx.device_of = ctx.world.devices.get(who)
    kwargs: dict[str, Any] = {"headers": headers}
    if case.body is not None:
        body = case.body(ctx, client)
        if case.files:
            kwargs["data"] = body
            kwargs["content_type"] = "multipart/form-data"
        else:
            kwargs["json"] = body
    r = client.open(case.url(ctx), method=case.method, **kwargs)
    assert r.status_code == case.expect[who], (name, who, r.get_json())
    if r.status_code >= 400:
        assert set(r.json) >= {"status", "code", "message"}


def test_department_staff_list_only_their_departments_problems(client, ctx: Ctx):
    mine = client.get("/api/v1/problems", headers=ctx.world.headers("staff")).json["items"]
    assert [p["id"] for p in mine] == [ctx.visit["problems"][0]["id"]]
    assert client.get("/api/v1/problems", headers=ctx.world.headers("other_staff")).json["items"] == []


def test_cadres_list_only_their_own_visits_and_problems(client, ctx: Ctx):
    assert len(client.get("/api/v1/visits", headers=ctx.world.headers("cadre")).json["items"]) == 2
    assert client.get("/api/v1/visits", headers=ctx.world.headers("other_cadre")).json["items"] == []
    assert client.get("/api/v1/problems", headers=ctx.world.headers("other_cadre")).json["items"] == []
