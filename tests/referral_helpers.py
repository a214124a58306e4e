"""Building blocks for referral tests: problems to refer, and referrals driven to any state over the API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from server.domain.workdays import WorkCalendar
from tests.factories import visit_note

# The states a referral can be driven to, with the moves (who, action, body) that get it there.
ANSWER = {"outcome": "solved", "done": "已协调银行发放贷款500万元。"}
PATHS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "issued": [],
    "signed": [("staff", "sign", {})],
    "return_requested": [("staff", "request_return", {"grounds": "该事项属于人社局职责。"})],
    "extension_requested": [("staff", "sign", {}), ("staff", "request_extension", {"reason": "需协调省级部门。"})],
    "responded": [("staff", "sign", {}), ("staff", "respond", ANSWER)],
    "closed": [("staff", "sign", {}), ("staff", "respond", ANSWER), ("supervisor", "review", {"accept": True})],
    "cancelled": [("supervisor", "cancel", {"reason": "企业已自行解决。"})],
}


def problem_ids(client: Any, world: Any, n: int = 1, *, target: Any = None, who: str = "cadre") -> list[str]:
    """Problems raised in a new visit of `who` (at the world's firm unless `target` is given)."""
    problems = [
        {"id": str(uuid.uuid4()), "category": "financing", "description": f"融资难融资贵，贷款利率偏高（{i + 1}）。"}
        for i in range(n)
    ]
    note = visit_note(world, problems=problems, **({"target_id": str(target)} if target else {}))
    r = client.post("/api/v1/visits", json=note, headers=world.headers(who))
    assert r.status_code == 201, r.json
    return [p["id"] for p in r.json["problems"]]


def issue(client: Any, world: Any, problems: list[str] | None = None, **body: Any) -> Any:
    """POST /referrals as the supervisor: to `staff`'s department, 5 working days, unless told otherwise."""
    payload = {
        "problem_ids": problems if problems is not None else problem_ids(client, world),
        "lead_department_id": str(world.dept),
        "co_department_ids": [],
        "requirements": "请于期限内协调解决企业融资问题，并反馈办理结果。",
        "workdays": 5,
    } | body
    return client.post("/api/v1/referrals", json=payload, headers=world.headers("supervisor"))


def read(client: Any, world: Any, referral_id: str, who: str = "supervisor") -> Any:
    return client.get(f"/api/v1/referrals/{referral_id}", headers=world.headers(who))


def act(client: Any, world: Any, referral_id: str, action: str, who: str, **body: Any) -> Any:
    """POST /referrals/<id>/<action> as `who`, with the version a supervisor reads now unless given."""
    current = read(client, world, referral_id).json
    if action == "request_extension" and "until" not in body:
        body["until"] = later_workday(current["due_day"]).isoformat()
    body.setdefault("version", current["version"])
    return client.post(f"/api/v1/referrals/{referral_id}/{action}", json=body, headers=world.headers(who))


def later_workday(due_day: str, n: int = 3) -> dt.date:
    return WorkCalendar().add_workdays(dt.date.fromisoformat(due_day), n)


def referral_in(client: Any, world: Any, state: str, **issue_body: Any) -> dict[str, Any]:
    """A referral driven over the API to `state` (a key of PATHS); returns it as read after the last move."""
    r = issue(client, world, **issue_body)
    assert r.status_code == 201, r.json
    referral = r.json
    lead_staff = "other_staff" if referral["lead_department"]["id"] == str(world.other_dept) else "staff"
    for who, action, body in PATHS[state]:
        who = lead_staff if who == "staff" else who
        r = act(client, world, referral["id"], action, who, **body)
        assert r.status_code == 200, (action, r.json)
        referral = r.json
    assert referral["status"] == state
    return referral


# For tests/test_permissions.py: a case's body builds what its URL needs, on the case's context.


def on_ctx(ctx: Any, name: str, rule: str) -> str:
    """The id a permission case stored on its context, or the URL rule's placeholder (for the route check)."""
    return str(getattr(ctx, name, rule))


def referral_case(state: str, action: str | None = None, **fields: Any) -> Any:
    """A case body: a referral of `cadre`'s first problem driven to `state` (ctx.referral), and the action's body."""

    def body(ctx: Any, client: Any) -> dict[str, Any] | None:
        referral = referral_in(client, ctx.world, state, problems=[ctx.visit["problems"][0]["id"]])
        ctx.referral = referral["id"]
        if referral["followups"]:
            ctx.followup = referral["followups"][0]["id"]
        if action is None:
            return None
        payload = dict(fields)
        if action == "request_extension":
            payload["until"] = later_workday(referral["due_day"]).isoformat()
        return payload | {"version": referral["version"]}

    return body


def followup_case(**fields: Any) -> Any:
    """A case body: a revisit assigned to `cadre` (ctx.followup), and the body given."""
    make = referral_case("closed")

    def body(ctx: Any, client: Any) -> dict[str, Any] | None:
        make(ctx, client)
        return dict(fields) or None

    return body


def override_case(ctx: Any, client: Any) -> None:
    """A case body: a calendar override on ctx.override_day; the request under test has no body."""
    ctx.override_day = "2026-10-10"
    body = {"day": ctx.override_day, "workday": True}
    assert client.post("/api/v1/calendar/overrides", json=body, headers=ctx.world.headers("admin")).status_code == 201
