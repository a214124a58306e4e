"""Referrals over the API: every action × role × state, numbering, deadlines, problems, revisits, rows.

The pure rules are tested exhaustively in tests/domain/; here the same workflow runs through the
store: what is written, what is refused (and then that nothing changed), who sees what. Moves
that need another moment than now call the service functions with `now`, as the scheduler does.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update

from schemas.enums import ProblemOutcome, Role
from schemas.followups import FollowUpKind
from schemas.referrals import REFERRAL_ACTIONS, REFERRAL_STATUSES
from server import db
from server.db.followup_models import FollowUp, Referral, ReferralCounter
from server.db.models import AuditEntry, PortfolioEntry, User
from server.domain.periods import SHANGHAI
from server.domain.referrals import RULES, ReferralAction, ReferralStatus
from server.domain.workdays import WorkCalendar, end_of_day
from server.errors import ApiError
from server.services import followups, referrals
from server.services.actors import Actor
from tests.factories import PASSWORD, gen_user
from tests.referral_helpers import ANSWER, PATHS, act, issue, later_workday, problem_ids, read, referral_in
from tests.sync_helpers import device
from tests.test_errors import send_json

ROLE_OF = {
    "cadre": Role.cadre,
    "other_cadre": Role.cadre,
    "supervisor": Role.supervisor,
    "staff": Role.department_staff,
    "other_staff": Role.department_staff,
    "admin": Role.admin,
}


def actor(world: Any, who: str) -> Actor:
    department = {"staff": world.dept, "other_staff": world.other_dept}.get(who)
    return Actor(user_id=world.users[who], role=ROLE_OF[who], department_id=department)


def run(app: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a service function in a transaction of its own, as a job would."""
    with app.app_context(), db.session_scope() as session:
        return fn(session, *args, **kwargs)


def audit_count(app: Any, entity_id: str) -> int:
    with app.app_context():
        return db.session().scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.entity_id == entity_id)
        )


def problem(client: Any, world: Any, problem_id: str) -> dict[str, Any]:
    return client.get(f"/api/v1/problems/{problem_id}", headers=world.headers("supervisor")).json


def snapshot(app: Any, client: Any, world: Any, referral: dict[str, Any]) -> tuple[Any, ...]:
    """Everything a refused action must leave as it was."""
    problems = [problem(client, world, p["id"]) for p in referral["problems"]]
    return read(client, world, referral["id"]).json, audit_count(app, referral["id"]), problems


def test_schemas_name_the_domains_states_and_actions():
    assert tuple(s.value for s in ReferralStatus) == REFERRAL_STATUSES
    assert set(REFERRAL_ACTIONS) == {a.value for a in ReferralAction} - {"issue", "reopen"}


# Every action × every role × every state ---------------------------------------------------

BODIES: dict[str, dict[str, Any]] = {
    "sign": {},
    "request_return": {"grounds": "不属于本单位职责。"},
    "decide_return": {"approve": False, "reason": "属于本单位职责，请继续办理。"},
    "request_extension": {"reason": "需协调省级部门。"},
    "decide_extension": {"approve": True},
    "respond": ANSWER,
    "review": {"accept": True},
    "cancel": {"reason": "企业已自行解决。"},
}
# Where the action leads from each state it applies in (decide_return refuses; the path came from issued).
LEADS_TO = {
    "sign": "signed",
    "request_return": "return_requested",
    "decide_return": "issued",
    "request_extension": "extension_requested",
    "decide_extension": "signed",
    "respond": "responded",
    "review": "closed",
    "cancel": "cancelled",
}
EVENT = {
    "sign": "signed",
    "request_return": "return_requested",
    "decide_return": "return_refused",
    "request_extension": "extension_requested",
    "decide_extension": "extension_approved",
    "respond": "responded",
    "review": "accepted",
    "cancel": "cancelled",
}


@pytest.mark.parametrize("state", list(PATHS))
@pytest.mark.parametrize("action", REFERRAL_ACTIONS)
def test_action_by_role_and_state(app, client, world, action, state):
    """Wrong role → 403, co-department → 403, wrong state → 409, each changing nothing; else the move."""
    referral = referral_in(client, world, state, co_department_ids=[str(world.other_dept)])
    rule = RULES[ReferralAction(action)]
    applies = ReferralStatus(state) in rule.sources
    before = snapshot(app, client, world, referral)
    refused: dict[str, tuple[int, str | None]] = {}
    for who, role in ROLE_OF.items():
        if role is not rule.actor:
            refused[who] = (403, "forbidden")
    if rule.actor is Role.department_staff:
        refused["other_staff"] = (403, "forbidden")  # a co-department reads, never acts
    actor_name = "staff" if rule.actor is Role.department_staff else "supervisor"
    if not applies:
        refused[actor_name] = (409, "invalid_transition")
    for who, (status, code) in refused.items():
        r = act(client, world, referral["id"], action, who, **BODIES[action])
        assert (r.status_code, r.json["code"]) == (status, code), (who, r.json)
        assert snapshot(app, client, world, referral) == before, who
    if not applies:
        return
    r = act(client, world, referral["id"], action, actor_name, **BODIES[action])
    assert r.status_code == 200, r.json
    after = r.json
    assert after["status"] == LEADS_TO[action]
    assert after["version"] == referral["version"] + 1
    assert [e["event"] for e in after["history"]] == [e["event"] for e in referral["history"]] + [EVENT[action]]
    assert after["history"][-1]["actor_id"] == str(world.users[actor_name])
    assert audit_count(app, referral["id"]) > before[1]


def test_a_co_department_is_told_why(client, world):
    referral = referral_in(client, world, "issued", co_department_ids=[str(world.other_dept)])
    r = act(client, world, referral["id"], "sign", "other_staff")
    assert r.status_code == 403
    assert r.json["details"] == {"reason": "co_department"}


def test_nobody_reopens_by_hand(client, world):
    referral = referral_in(client, world, "closed")
    r = act(client, world, referral["id"], "reopen", "supervisor", reason="再办一次")
    assert r.status_code == 404


def test_a_stale_version_is_409_and_changes_nothing(app, client, world):
    referral = referral_in(client, world, "issued")
    before = snapshot(app, client, world, referral)
    r = act(client, world, referral["id"], "sign", "staff", version=referral["version"] + 1)
    assert (r.status_code, r.json["code"]) == (409, "version_conflict")
    assert r.json["details"] == {"current_version": referral["version"]}
    assert snapshot(app, client, world, referral) == before


def test_blank_text_is_422_and_changes_nothing(app, client, world):
    referral = referral_in(client, world, "signed")
    before = snapshot(app, client, world, referral)
    for action, body, field in (
        ("request_return", {"grounds": "   "}, "grounds"),
        ("respond", {"outcome": "coordinating", "done": "已对接", "plan": " "}, "plan"),
        ("respond", {"outcome": "deferred", "done": "已研究"}, "reason"),
        (
            "respond",
            {"outcome": "coordinating", "done": "已对接", "plan": "分步推进", "next_date": "2020-01-01"},
            "next_date",
        ),
        ("request_extension", {"reason": "  "}, "reason"),
    ):
        r = act(client, world, referral["id"], action, "staff", **body)
        assert r.status_code == 422, (action, r.json)
        assert field in r.json["errors"], (action, r.json)
        assert snapshot(app, client, world, referral) == before


def test_the_allowed_actions_say_whose_move_it_is(client, world):
    referral = referral_in(client, world, "issued", co_department_ids=[str(world.other_dept)])
    assert read(client, world, referral["id"], "staff").json["allowed_actions"] == ["sign", "request_return"]
    assert read(client, world, referral["id"], "other_staff").json["allowed_actions"] == []
    assert read(client, world, referral["id"], "supervisor").json["allowed_actions"] == ["cancel"]
    assert read(client, world, referral["id"], "admin").json["allowed_actions"] == []
    assert referral["awaiting"] == "department_staff"


# Issuing and numbering ----------------------------------------------------------------------


def test_issue_numbers_starts_the_clock_and_routes_the_problems(client, world):
    ids = problem_ids(client, world, 2)
    r = issue(client, world, ids, co_department_ids=[str(world.other_dept)], workdays=3)
    assert r.status_code == 201, r.json
    referral = r.json
    year = dt.datetime.now(SHANGHAI).year
    assert referral["number"] == f"徐工信交〔{year}〕第0001号"
    assert (referral["status"], referral["status_label"]) == ("issued", "已交办")
    issued_at = dt.datetime.fromisoformat(referral["issued_at"])
    expected = WorkCalendar().deadline_at(issued_at, 3)
    assert dt.datetime.fromisoformat(referral["deadline"]) == expected
    assert referral["original_deadline"] == referral["deadline"]
    assert [p["id"] for p in referral["problems"]] == ids
    assert referral["co_departments"][0]["id"] == str(world.other_dept)
    assert [e["event"] for e in referral["history"]] == ["issued"]
    for pid in ids:
        p = problem(client, world, pid)
        assert (p["department_id"], p["status"], p["outcome"]) == (str(world.dept), "open", None)
    # The lead department now reads the problems; the co-department reads them in the referral.
    assert client.get(f"/api/v1/problems/{ids[0]}", headers=world.headers("staff")).status_code == 200
    assert issue(client, world, ids).json["number"] == f"徐工信交〔{year}〕第0002号"


@pytest.mark.parametrize(
    "change,field",
    [
        ({"problem_ids": []}, "problem_ids"),
        ({"problem_ids": [str(uuid.uuid4())]}, "problem_ids"),
        ({"lead_department_id": str(uuid.uuid4())}, "lead_department_id"),
        ({"co_department_ids": [str(uuid.uuid4())]}, "co_department_ids"),
        ({"workdays": 0}, "workdays"),
        ({"workdays": 251}, "workdays"),
        ({"requirements": "   "}, "requirements"),
    ],
)
def test_issue_refuses_bad_input_and_takes_no_number(app, client, world, change, field):
    r = issue(client, world, **change)
    assert r.status_code == 422, r.json
    assert field in r.json["errors"]
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(Referral)) == 0
    assert issue(client, world).json["number"].endswith("第0001号")


def test_the_lead_cannot_also_be_a_co_department(client, world):
    r = issue(client, world, co_department_ids=[str(world.dept)])
    assert r.status_code == 422
    assert "co_department_ids" in r.json["errors"]


def test_only_supervisors_issue(client, world):
    ids = problem_ids(client, world)
    for who in ("cadre", "staff", "admin"):
        body = {"problem_ids": ids, "lead_department_id": str(world.dept), "requirements": "办理", "workdays": 5}
        assert client.post("/api/v1/referrals", json=body, headers=world.headers(who)).status_code == 403


def test_numbers_are_per_year(app, client, world):
    ids = problem_ids(client, world)
    data = {
        "problem_ids": [uuid.UUID(ids[0])],
        "lead_department_id": world.dept,
        "requirements": "请办理",
        "workdays": 2,
    }
    moments = [
        dt.datetime(2026, 12, 31, 10, 0, tzinfo=SHANGHAI),
        dt.datetime(2026, 12, 31, 23, 59, tzinfo=SHANGHAI),
        dt.datetime(2027, 1, 1, 0, 1, tzinfo=SHANGHAI),  # still 2026 in UTC: the year is Beijing's
        dt.datetime(2027, 1, 4, 9, 0, tzinfo=SHANGHAI),
    ]
    numbers = [
        run(app, referrals.issue_referral, actor(world, "supervisor"), dict(data), now=m).number for m in moments
    ]
    assert numbers == [
        "徐工信交〔2026〕第0001号",
        "徐工信交〔2026〕第0002号",
        "徐工信交〔2027〕第0001号",
        "徐工信交〔2027〕第0002号",
    ]


def test_a_number_taken_by_a_rolled_back_issue_is_given_again(app, client, world):
    maker = app.extensions["db_writer_sessionmaker"]
    with maker() as s:
        assert referrals.next_number(s, 2030) == 1
        s.rollback()
    with maker() as s:
        assert referrals.next_number(s, 2030) == 1
        assert referrals.next_number(s, 2030) == 2
        s.commit()
    with maker() as s:
        assert referrals.next_number(s, 2030) == 3


def test_concurrent_issues_get_distinct_gapless_numbers(app, client, world):
    """Several writers at once (threads, each its own connection): numbers 1..N, none twice, none lost."""
    ids = problem_ids(client, world)
    n = 6
    barrier = threading.Barrier(n)
    numbers: list[int] = []
    errors: list[BaseException] = []
    data = {
        "problem_ids": [uuid.UUID(ids[0])],
        "lead_department_id": world.dept,
        "requirements": "请办理",
        "workdays": 2,
    }

    def issue_one() -> None:
        try:
            with app.app_context(), db.session_scope() as s:
                barrier.wait(timeout=10)
                referral = referrals.issue_referral(s, actor(world, "supervisor"), dict(data))
                time.sleep(0.05)  # hold the counter's lock a little: the others must queue behind it
                numbers.append(referral.seq)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=issue_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(numbers) == list(range(1, n + 1))
    with app.app_context():
        s = db.session()
        assert s.scalar(select(func.count(func.distinct(Referral.number)))) == n
        assert s.scalar(select(ReferralCounter.last_seq)) == n


# Deadlines ----------------------------------------------------------------------------------


def test_on_time_is_frozen_when_closed(app, client, world):
    on_time = referral_in(client, world, "closed")
    assert on_time["on_time"] is True
    assert on_time["closed_at"]
    # Late: the supervisor accepts after the deadline (a moment past it, as a job would pass it).
    late = referral_in(client, world, "responded")
    deadline = dt.datetime.fromisoformat(late["deadline"])
    done = run(
        app,
        referrals.act,
        actor(world, "supervisor"),
        uuid.UUID(late["id"]),
        ReferralAction.review,
        {"accept": True, "version": late["version"]},
        now=deadline + dt.timedelta(seconds=1),
    )
    assert (done.status, done.on_time) == ("closed", False)
    # The calendar changes afterwards: every day until the deadline becomes a day off, and back.
    h = world.headers("admin")
    today = dt.datetime.now(SHANGHAI).date()
    for offset in range(0, 15):
        body = {"day": (today + dt.timedelta(days=offset)).isoformat(), "workday": offset % 2 == 0}
        assert client.post("/api/v1/calendar/overrides", json=body, headers=h).status_code == 201
    again_on_time, again_late = read(client, world, on_time["id"]).json, read(client, world, late["id"]).json
    assert (again_on_time["on_time"], again_on_time["deadline"]) == (True, on_time["deadline"])
    assert (again_late["on_time"], again_late["deadline"]) == (False, late["deadline"])
    assert again_late["overdue"] is False  # closed: no longer counted as overdue


def test_an_extension_keeps_the_original_and_moves_the_current_deadline(client, world):
    referral = referral_in(client, world, "signed")
    asked = later_workday(referral["due_day"], 3)
    r = act(client, world, referral["id"], "request_extension", "staff", until=asked.isoformat(), reason="需省厅批复。")
    assert r.status_code == 200, r.json
    assert (r.json["requested_until"], r.json["pending_reason"]) == (asked.isoformat(), "需省厅批复。")
    granted = later_workday(referral["due_day"], 2)
    r = act(client, world, referral["id"], "decide_extension", "supervisor", approve=True, until=granted.isoformat())
    assert r.status_code == 200, r.json
    after = r.json
    assert after["original_deadline"] == referral["original_deadline"]
    assert dt.datetime.fromisoformat(after["deadline"]) == end_of_day(granted)
    assert after["due_day"] == granted.isoformat()
    assert (after["requested_until"], after["pending_reason"]) == (None, None)
    assert after["history"][-1]["details"]["until"] == granted.isoformat()
    # A rejected extension keeps the deadline.
    act(client, world, referral["id"], "request_extension", "staff", reason="再延期。")
    r = act(client, world, referral["id"], "decide_extension", "supervisor", approve=False, reason="不予延期。")
    assert r.json["deadline"] == after["deadline"]


def test_an_extension_after_the_deadline_is_409(app, client, world):
    referral = referral_in(client, world, "signed")
    deadline = dt.datetime.fromisoformat(referral["deadline"])
    data = {"until": later_workday(referral["due_day"]), "reason": "来不及了", "version": referral["version"]}
    with app.app_context(), db.session_scope() as s, pytest.raises(ApiError) as e:
        referrals.act(
            s,
            actor(world, "staff"),
            uuid.UUID(referral["id"]),
            ReferralAction.request_extension,
            data,
            now=deadline + dt.timedelta(minutes=1),
        )
    assert (e.value.status, e.value.code) == (409, "deadline_passed")


def test_an_extension_far_ahead_or_on_a_day_off_is_422(client, world):
    referral = referral_in(client, world, "signed")
    r = act(client, world, referral["id"], "request_extension", "staff", until="2099-06-01", reason="很久")
    assert r.status_code == 422 and "until" in r.json["errors"]
    due = dt.date.fromisoformat(referral["due_day"])
    saturday = due + dt.timedelta(days=(5 - due.weekday()) % 7 or 7)
    if not WorkCalendar().is_workday(saturday):
        r = act(client, world, referral["id"], "request_extension", "staff", until=saturday.isoformat(), reason="周末")
        assert r.status_code == 422 and "until" in r.json["errors"]


def test_a_send_back_may_give_a_new_allowance(client, world):
    referral = referral_in(client, world, "responded")
    r = act(client, world, referral["id"], "review", "supervisor", accept=False, reason="请补充佐证材料。", workdays=3)
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["outcome"]) == ("signed", None)
    assert r.json["original_deadline"] == referral["original_deadline"]
    assert r.json["answer"]["done"] == ANSWER["done"]  # the last answer stays readable
    assert r.json["history"][-1]["details"]["reason"] == "请补充佐证材料。"


def test_a_calendar_override_counts_for_new_deadlines(client, world):
    h = world.headers("admin")
    ids = problem_ids(client, world)
    before = issue(client, world, ids, workdays=1).json
    due = dt.date.fromisoformat(before["due_day"])
    r = client.post("/api/v1/calendar/overrides", json={"day": due.isoformat(), "workday": False}, headers=h)
    assert r.status_code == 201
    after = issue(client, world, ids, workdays=1).json
    assert dt.date.fromisoformat(after["due_day"]) > due
    assert read(client, world, before["id"]).json["due_day"] == due.isoformat()  # stored deadlines stay


# Returns ------------------------------------------------------------------------------------


def test_an_approved_return_reassigns_and_restarts_the_clock(app, client, world):
    referral = referral_in(client, world, "return_requested")
    assert referral["pending_reason"] == "该事项属于人社局职责。"
    r = act(
        client, world, referral["id"], "decide_return", "supervisor", approve=True, reassign_to=str(world.other_dept)
    )
    assert r.status_code == 200, r.json
    after = r.json
    assert (after["status"], after["lead_department"]["id"]) == ("issued", str(world.other_dept))
    assert after["issued_at"] >= referral["issued_at"]
    assert after["number"] == referral["number"]
    assert after["history"][-1]["event"] == "reassigned"
    assert after["history"][-1]["details"]["from_department_id"] == str(world.dept)
    assert read(client, world, referral["id"], "staff").status_code == 404
    assert read(client, world, referral["id"], "other_staff").status_code == 200
    pid = referral["problems"][0]["id"]
    assert problem(client, world, pid)["department_id"] == str(world.other_dept)
    assert client.get(f"/api/v1/problems/{pid}", headers=world.headers("other_staff")).status_code == 200
    assert act(client, world, referral["id"], "sign", "other_staff").status_code == 200


def test_a_return_cannot_go_to_an_unknown_department(app, client, world):
    referral = referral_in(client, world, "return_requested")
    before = snapshot(app, client, world, referral)
    r = act(client, world, referral["id"], "decide_return", "supervisor", approve=True, reassign_to=str(uuid.uuid4()))
    assert r.status_code == 422 and "reassign_to" in r.json["errors"]
    r = act(client, world, referral["id"], "decide_return", "supervisor", approve=True)
    assert r.status_code == 422 and "reassign_to" in r.json["errors"]
    assert snapshot(app, client, world, referral) == before


def test_a_refused_return_goes_back_where_it_came_from(client, world):
    referral = referral_in(client, world, "signed")
    act(client, world, referral["id"], "request_return", "staff", grounds="不属于本单位职责。")
    r = act(client, world, referral["id"], "decide_return", "supervisor", approve=False, reason="请继续办理。")
    assert (r.json["status"], r.json["signed_at"]) == ("signed", referral["signed_at"])


# Problems follow their referrals --------------------------------------------------------------


def test_problem_status_follows_its_referrals(client, world):
    pid = problem_ids(client, world)[0]
    first = referral_in(client, world, "signed", problems=[pid])
    second = referral_in(client, world, "signed", problems=[pid], lead_department_id=str(world.other_dept))
    act(client, world, first["id"], "respond", "staff", **ANSWER)
    act(client, world, first["id"], "review", "supervisor", accept=True)
    # One department solved it, the other has not answered: still open, no outcome yet.
    assert (problem(client, world, pid)["status"], problem(client, world, pid)["outcome"]) == ("open", None)
    next_date = (dt.datetime.now(SHANGHAI).date() + dt.timedelta(days=30)).isoformat()
    coordinating = {"outcome": "coordinating", "done": "已召开协调会", "plan": "分两批落实", "next_date": next_date}
    act(client, world, second["id"], "respond", "other_staff", **coordinating)
    act(client, world, second["id"], "review", "supervisor", accept=True)
    p = problem(client, world, pid)
    assert (p["status"], p["outcome"], p["outcome_note"]) == ("open", "coordinating", "已召开协调会")
    assert p["outcome_at"]


def test_a_deferred_answer_closes_the_problem_with_its_reason(client, world):
    referral = referral_in(client, world, "signed")
    deferred = {"outcome": "deferred", "done": "已研究", "reason": "涉及国家关税政策，地方无权限。"}
    assert act(client, world, referral["id"], "respond", "staff", **deferred).status_code == 200
    assert act(client, world, referral["id"], "review", "supervisor", accept=True).status_code == 200
    p = problem(client, world, referral["problems"][0]["id"])
    assert (p["status"], p["outcome"], p["outcome_reason"]) == ("closed", "deferred", "涉及国家关税政策，地方无权限。")
    assert p["closed_at"]


def test_a_solved_problem_closes_and_a_cancelled_referral_leaves_it_alone(client, world):
    closed = referral_in(client, world, "closed")
    p = problem(client, world, closed["problems"][0]["id"])
    assert (p["status"], p["outcome"], p["outcome_note"]) == ("closed", "solved", ANSWER["done"])
    cancelled = referral_in(client, world, "cancelled")
    p = problem(client, world, cancelled["problems"][0]["id"])
    assert (p["status"], p["outcome"]) == ("open", None)


def test_the_cadre_sees_the_problem_change_on_the_phone(client, world):
    phone = device(client, "cadre", PASSWORD)
    phone.pull_all()
    referral_in(client, world, "closed")
    seen = phone.pull_all()
    problems = [c for c in seen if c["entity"] == "problem"]
    assert problems and problems[-1]["data"]["status"] == "closed"


# Revisits ------------------------------------------------------------------------------------


def test_a_solved_answer_brings_a_revisit_for_the_portfolio_cadre(app, client, world):
    referral = referral_in(client, world, "closed")
    (revisit,) = referral["followups"]
    assert (revisit["kind"], revisit["status"], revisit["assignee_id"]) == (
        "revisit",
        "open",
        str(world.users["cadre"]),
    )
    accepted = dt.datetime.fromisoformat(referral["closed_at"]).astimezone(SHANGHAI).date()
    assert revisit["due_on"] == WorkCalendar().add_workdays(accepted, followups.REVISIT_WORKDAYS).isoformat()
    mine = client.get("/api/v1/followups", headers=world.headers("cadre")).json["items"]
    assert [f["id"] for f in mine] == [revisit["id"]]
    assert mine[0]["referral_number"] == referral["number"]
    assert mine[0]["answer_done"] == ANSWER["done"]
    assert client.get("/api/v1/followups", headers=world.headers("other_cadre")).json["items"] == []


def test_coordinating_and_deferred_answers_bring_no_revisit(client, world):
    referral = referral_in(client, world, "signed")
    act(client, world, referral["id"], "respond", "staff", outcome="deferred", done="已研究", reason="暂无政策依据。")
    r = act(client, world, referral["id"], "review", "supervisor", accept=True)
    assert r.json["followups"] == []


def _open_followups(app, cadre_id: uuid.UUID, n: int) -> None:
    def add(session):
        for _ in range(n):
            followups.create_followup(session, kind=FollowUpKind.reminder, title="催办", assignee_id=cadre_id)

    run(app, add)


def test_without_a_portfolio_cadre_the_least_loaded_cadre_revisits(app, client, world):
    """The project is nobody's portfolio: the cadre with fewer open follow-ups gets the revisit."""
    for busy, free in (("cadre", "other_cadre"), ("other_cadre", "cadre")):
        _open_followups(app, world.users[busy], 3)
        ids = problem_ids(client, world, target=world.project)
        referral = referral_in(client, world, "closed", problems=ids)
        assert referral["followups"][0]["assignee_id"] == str(world.users[free]), (busy, free)
        _open_followups(app, world.users[free], 4)


def test_of_several_portfolio_cadres_the_least_loaded_revisits(app, client, world):
    def share(session):
        session.add(PortfolioEntry(user_id=world.users["other_cadre"], target_id=world.firm))

    run(app, share)
    _open_followups(app, world.users["cadre"], 2)
    referral = referral_in(client, world, "closed")
    assert referral["followups"][0]["assignee_id"] == str(world.users["other_cadre"])


def test_with_no_cadre_at_all_the_revisit_waits_for_a_supervisor(app, client, world):
    ids = problem_ids(client, world, target=world.project)

    def retire(session):
        session.execute(update(User).where(User.role == Role.cadre).values(active=False))

    run(app, retire)
    referral = referral_in(client, world, "closed", problems=ids)
    (revisit,) = referral["followups"]
    assert revisit["assignee_id"] is None

    def rehire(session):
        return gen_user(session, Role.cadre).id

    new_cadre = run(app, rehire)
    url = f"/api/v1/followups/{revisit['id']}/reassign"
    r = client.post(url, json={"assignee_id": str(new_cadre), "version": 1}, headers=world.headers("supervisor"))
    assert r.status_code == 200, r.json
    assert r.json["assignee_id"] == str(new_cadre)
    r = client.post(
        url, json={"assignee_id": str(world.users["staff"]), "version": 2}, headers=world.headers("supervisor")
    )
    assert r.status_code == 422 and "assignee_id" in r.json["errors"]


def test_one_revisit_per_firm_of_the_referral(client, world):
    ids = problem_ids(client, world, 2) + problem_ids(client, world, target=world.project)
    referral = referral_in(client, world, "closed", problems=ids)
    assert sorted(f["kind"] for f in referral["followups"]) == ["revisit", "revisit"]


def complete(client, world, followup: dict[str, Any], who: str = "cadre", **body: Any):
    current = client.get(f"/api/v1/followups/{followup['id']}", headers=world.headers("supervisor")).json
    body.setdefault("version", current["version"])
    return client.post(f"/api/v1/followups/{followup['id']}/complete", json=body, headers=world.headers(who))


def test_a_satisfied_revisit_keeps_the_referral_closed(client, world):
    referral = referral_in(client, world, "closed")
    revisit = referral["followups"][0]
    r = complete(client, world, revisit, satisfaction="basically_satisfied", note="企业表示贷款已到位。")
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["satisfaction_label"]) == ("done", "基本满意")
    after = read(client, world, referral["id"]).json
    assert after["status"] == "closed" and after["on_time"] is True
    assert after["history"][-1]["event"] == "revisited"
    assert after["history"][-1]["details"]["satisfaction"] == "basically_satisfied"
    assert after["followups"][0]["satisfaction"] == "basically_satisfied"
    r = complete(client, world, revisit, satisfaction="satisfied")
    assert (r.status_code, r.json["code"]) == (409, "followup_closed")


def test_an_unsatisfied_revisit_reopens_the_referral(app, client, world):
    referral = referral_in(client, world, "closed")
    revisit = referral["followups"][0]
    r = complete(client, world, revisit, satisfaction="unsatisfied")
    assert r.status_code == 422 and "note" in r.json["errors"]
    r = complete(client, world, revisit, satisfaction="unsatisfied", note="贷款仍未到位。")
    assert r.status_code == 200, r.json
    after = read(client, world, referral["id"]).json
    assert (after["status"], after["on_time"], after["closed_at"], after["outcome"]) == ("signed", None, None, None)
    assert after["original_deadline"] == referral["original_deadline"]
    reopened = after["history"][-1]
    assert (reopened["event"], reopened["actor_id"]) == ("reopened", None)
    assert reopened["details"]["reason"] == "回访不满意：贷款仍未到位。"
    assert reopened["details"]["workdays"] == 5
    assert after["history"][-2]["event"] == "revisited"
    p = problem(client, world, referral["problems"][0]["id"])
    assert (p["status"], p["outcome"]) == ("open", None)
    # The department answers again; accepting it brings a new revisit.
    act(client, world, referral["id"], "respond", "staff", **ANSWER)
    r = act(client, world, referral["id"], "review", "supervisor", accept=True)
    assert [f["status"] for f in r.json["followups"]] == ["done", "open"]
    with app.app_context():
        entry = (
            db.session()
            .scalars(select(AuditEntry).where(AuditEntry.entity_id == referral["id"], AuditEntry.action == "reopen"))
            .one()
        )
        assert entry.actor_id is None and entry.request_id


def test_only_the_assignee_completes_a_revisit(client, world):
    revisit = referral_in(client, world, "closed")["followups"][0]
    assert complete(client, world, revisit, "other_cadre", satisfaction="satisfied").status_code == 404
    assert complete(client, world, revisit, "supervisor", satisfaction="satisfied").status_code == 403
    assert complete(client, world, revisit, "staff", satisfaction="satisfied").status_code == 403
    assert complete(client, world, revisit, "other_staff", satisfaction="satisfied").status_code == 404
    r = complete(client, world, revisit, satisfaction="satisfied", next_date="2026-12-01")
    assert r.status_code == 422 and "next_date" in r.json["errors"]
    r = complete(client, world, revisit, note="电话未接通")
    assert r.status_code == 422 and "satisfaction" in r.json["errors"]
    r = complete(client, world, revisit, satisfaction="satisfied", version=7)
    assert (r.status_code, r.json["code"]) == (409, "version_conflict")


def test_a_progress_check_moves_the_next_date(app, client, world):
    referral = referral_in(client, world, "signed")
    first = (dt.datetime.now(SHANGHAI).date() + dt.timedelta(days=10)).isoformat()
    answer = {"outcome": "coordinating", "done": "已召开协调会", "plan": "分两批落实", "next_date": first}
    act(client, world, referral["id"], "respond", "staff", **answer)
    act(client, world, referral["id"], "review", "supervisor", accept=True)

    def check(session):
        return followups.create_followup(
            session,
            kind=FollowUpKind.progress_check,
            title="进展跟踪",
            department_id=world.dept,
            referral_id=uuid.UUID(referral["id"]),
        ).id

    check_id = str(run(app, check))
    assert complete(client, world, {"id": check_id}, "other_staff", note="x").status_code == 404
    assert complete(client, world, {"id": check_id}, "cadre", note="x").status_code == 404
    r = complete(client, world, {"id": check_id}, "staff")
    assert r.status_code == 422 and "note" in r.json["errors"]
    later = (dt.datetime.now(SHANGHAI).date() + dt.timedelta(days=40)).isoformat()
    r = complete(client, world, {"id": check_id}, "staff", note="第一批已落实。", next_date=later)
    assert r.status_code == 200, r.json
    after = read(client, world, referral["id"]).json
    assert after["answer"]["next_date"] == later
    assert after["history"][-1]["event"] == "progress_reported"
    assert after["status"] == "closed"


def test_cancelling_a_referral_cancels_its_open_followups(app, client, world):
    referral = referral_in(client, world, "signed")

    def task(session):
        return followups.create_followup(
            session, kind=FollowUpKind.reminder, title="催办", referral_id=uuid.UUID(referral["id"])
        ).id

    task_id = run(app, task)
    act(client, world, referral["id"], "cancel", "supervisor", reason="重复交办。")
    with app.app_context():
        assert db.session().get(FollowUp, task_id).status == "cancelled"


# Follow-ups reach the cadre's phone --------------------------------------------------------------


def test_revisits_reach_the_cadre_through_the_sync_pull_and_come_back_from_it(app, client, world):
    phone = device(client, "cadre", PASSWORD)
    other_phone = device(client, "other_cadre", PASSWORD)
    phone.pull_all()
    other_phone.pull_all()
    referral = referral_in(client, world, "closed")
    revisit = referral["followups"][0]
    phone.pull_all()
    assert phone.ids("followup") == {revisit["id"]}
    data = phone.records[("followup", revisit["id"])]
    assert (data["kind"], data["kind_label"], data["assignee_id"]) == ("revisit", "回访", str(world.users["cadre"]))
    assert data["target_name"] and data["problem_description"] and data["referral_number"] == referral["number"]
    other_phone.pull_all()
    assert other_phone.ids("followup") == set()
    # Offline, the cadre records the revisit; the push applies it once.
    change = phone.change(
        "followup.complete", revisit["id"], {"satisfaction": "unsatisfied", "note": "仍未解决"}, base=data["version"]
    )
    r = phone.push([change])
    assert r.status_code == 200, r.json
    assert r.json["results"][0]["status"] == "applied", r.json
    assert phone.push([change]).json["results"][0]["replayed"] is True
    assert read(client, world, referral["id"]).json["status"] == "signed"
    phone.pull_all()
    assert phone.records[("followup", revisit["id"])]["status"] == "done"


def test_a_revisit_completed_on_a_stale_version_is_a_conflict(client, world):
    referral = referral_in(client, world, "closed")
    revisit = referral["followups"][0]
    phone = device(client, "cadre", PASSWORD)
    phone.pull_all()
    complete(client, world, revisit, satisfaction="satisfied")
    change = phone.change("followup.complete", revisit["id"], {"satisfaction": "unsatisfied", "note": "x"}, base=1)
    result = phone.push([change]).json["results"][0]
    assert (result["status"], result["code"]) == ("conflict", "version_conflict")
    assert read(client, world, referral["id"]).json["status"] == "closed"
    # Taking the phone's version is refused: the revisit is already done.
    url = f"/api/v1/sync/conflicts/{result['conflict_id']}/resolve"
    r = client.post(url, json={"resolution": "use_device"}, headers=world.headers("cadre"))
    assert (r.status_code, r.json["code"]) == (409, "followup_closed")
    r = client.post(url, json={"resolution": "keep_server"}, headers=world.headers("cadre"))
    assert r.status_code == 200, r.json


def test_a_reassigned_revisit_reaches_the_new_cadre(client, world):
    referral = referral_in(client, world, "closed")
    revisit = referral["followups"][0]
    other_phone = device(client, "other_cadre", PASSWORD)
    other_phone.pull_all()
    url = f"/api/v1/followups/{revisit['id']}/reassign"
    body = {"assignee_id": str(world.users["other_cadre"]), "version": 1}
    assert client.post(url, json=body, headers=world.headers("supervisor")).status_code == 200
    other_phone.pull_all()
    assert other_phone.ids("followup") == {revisit["id"]}
    assert read(client, world, referral["id"], "other_cadre").status_code == 200  # the revisit's referral


# Who reads which referral ---------------------------------------------------------------------


def test_department_row_rules(client, world):
    mine = referral_in(client, world, "issued")
    theirs = referral_in(client, world, "issued", lead_department_id=str(world.other_dept))
    shared = referral_in(client, world, "issued", co_department_ids=[str(world.other_dept)])
    assert read(client, world, theirs["id"], "staff").status_code == 404
    assert read(client, world, mine["id"], "other_staff").status_code == 404
    assert read(client, world, shared["id"], "other_staff").status_code == 200
    assert client.get(f"/api/v1/referrals/{theirs['id']}/sheet", headers=world.headers("staff")).status_code == 404

    def ids(who: str, query: str = "") -> set[str]:
        r = client.get(f"/api/v1/referrals{query}", headers=world.headers(who))
        assert r.status_code == 200, r.json
        return {x["id"] for x in r.json["items"]}

    assert ids("staff") == {mine["id"], shared["id"]}
    assert ids("other_staff") == {theirs["id"], shared["id"]}
    assert ids("supervisor") == ids("admin") == {mine["id"], theirs["id"], shared["id"]}
    assert ids("cadre") == {mine["id"], theirs["id"], shared["id"]}  # problems the cadre raised
    assert ids("other_cadre") == set()
    assert read(client, world, mine["id"], "other_cadre").status_code == 404


def test_list_filters_and_pages(app, client, world):
    a = referral_in(client, world, "issued")
    b = referral_in(client, world, "signed", lead_department_id=str(world.other_dept))
    c = referral_in(client, world, "cancelled", co_department_ids=[str(world.other_dept)])
    run(app, lambda s: s.execute(update(Referral).where(Referral.id == uuid.UUID(b["id"])).values(
        deadline=dt.datetime(2026, 1, 5, 15, 59, tzinfo=dt.UTC))))  # fmt: skip
    h = world.headers("supervisor")

    def ids(query: str) -> list[str]:
        r = client.get(f"/api/v1/referrals?{query}", headers=h)
        assert r.status_code == 200, r.json
        return [x["id"] for x in r.json["items"]]

    assert ids("") == [c["id"], b["id"], a["id"]]
    assert ids("status=signed") == [b["id"]]
    assert ids(f"department={world.other_dept}") == [c["id"], b["id"]]
    assert ids("overdue=true") == [b["id"]]
    assert ids("overdue=false") == [c["id"], a["id"]]
    year = a["year"]
    assert ids(f"year={year}") == [c["id"], b["id"], a["id"]] and ids(f"year={year + 1}") == []
    assert ids(f"problem={a['problems'][0]['id']}") == [a["id"]]
    assert ids(f"number=徐工信交[{year}]2号") == [b["id"]]
    overdue = client.get("/api/v1/referrals?overdue=true", headers=h).json["items"][0]
    assert overdue["overdue"] is True and overdue["overdue_workdays"] > 0
    first = client.get("/api/v1/referrals?limit=2", headers=h).json
    assert [x["id"] for x in first["items"]] == [c["id"], b["id"]]
    rest = client.get(f"/api/v1/referrals?limit=2&cursor={first['next_cursor']}", headers=h).json
    assert ([x["id"] for x in rest["items"]], rest["next_cursor"]) == ([a["id"]], None)
    for bad in ("status=sleeping", "year=99", "overdue=maybe", "number=abc", "limit=0", "department=x"):
        assert client.get(f"/api/v1/referrals?{bad}", headers=h).status_code == 422, bad
    assert client.get(f"/api/v1/referrals?number=徐工信交[2026]{10**20}号", headers=h).status_code == 422
    for cursor in ("garbage", "WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAsIDFd", "WzEuNSwgMl0"):
        assert client.get(f"/api/v1/referrals?cursor={cursor}", headers=h).status_code == 400, cursor


def test_the_sheet_is_one_printable_page_in_chinese(client, world):
    referral = referral_in(client, world, "closed", co_department_ids=[str(world.other_dept)])
    r = client.get(f"/api/v1/referrals/{referral['id']}/sheet", headers=world.headers("staff"))
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for text in (
        referral["number"],
        "问题交办单",
        "承办单位",
        "协办单位",
        "办理时限",
        "已解决",
        ANSWER["done"],
        "@page",
    ):
        assert text in html, text
    assert referral["problems"][0]["description"] in html
    # Nothing from elsewhere: no external stylesheet, script, font or image.
    assert "http://" not in html and "https://" not in html and "<link" not in html and "src=" not in html


def test_the_sheet_escapes_what_people_typed(client, world):
    r = issue(client, world, requirements="<script>alert(1)</script>")
    html = client.get(f"/api/v1/referrals/{r.json['id']}/sheet", headers=world.headers("supervisor")).get_data(
        as_text=True
    )
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


# The calendar ---------------------------------------------------------------------------------


def test_calendar_overrides_are_admins_to_write_and_everyones_to_read(app, client, world):
    h = world.headers("admin")
    body = {"day": "2026-10-10", "workday": True, "note": "国庆调休补班"}
    assert client.post("/api/v1/calendar/overrides", json=body, headers=world.headers("supervisor")).status_code == 403
    r = client.post("/api/v1/calendar/overrides", json=body, headers=h)
    assert r.status_code == 201, r.json
    r = client.post("/api/v1/calendar/overrides", json=body | {"workday": False}, headers=h)
    assert (r.status_code, r.json["workday"]) == (200, False)
    listed = client.get("/api/v1/calendar/overrides?year=2026", headers=world.headers("cadre")).json
    assert [(o["day"], o["workday"], o["note"]) for o in listed] == [("2026-10-10", False, "国庆调休补班")]
    assert client.get("/api/v1/calendar/overrides?year=2027", headers=h).json == []
    assert client.delete("/api/v1/calendar/overrides/2026-10-10", headers=h).status_code == 204
    assert client.delete("/api/v1/calendar/overrides/2026-10-10", headers=h).status_code == 404
    assert client.delete("/api/v1/calendar/overrides/not-a-day", headers=h).status_code == 404
    for bad in ({"day": "2026-02-30", "workday": True}, {"day": "1900-01-01", "workday": True}, {"day": "2026-01-01"}):
        assert client.post("/api/v1/calendar/overrides", json=bad, headers=h).status_code == 422, bad
    assert audit_count(app, "2026-10-10") == 3


# Junk never gives a 500 -----------------------------------------------------------------------

JUNK = [
    None,
    0,
    -1,
    10**30,
    1.5,
    "",
    "x" * 10_000,
    [],
    {},
    [None],
    {"a": {"b": []}},
    True,
    "\u0000",
    "😀",
    "\ud800",
    "9999-12-31",
]


def test_junk_in_any_field_of_issue_never_gives_500(client, world):
    ids = problem_ids(client, world)
    good = {"problem_ids": ids, "lead_department_id": str(world.dept), "requirements": "请办理", "workdays": 5}
    for field in [*good, "co_department_ids"]:
        for junk in JUNK:
            r = send_json(client, "/api/v1/referrals", good | {field: junk}, world.headers("supervisor"))
            assert r.status_code < 500, (field, junk, r.get_data(as_text=True))


@pytest.mark.parametrize("action", REFERRAL_ACTIONS)
def test_junk_in_any_field_of_an_action_never_gives_500(client, world, action):
    state = {"decide_return": "return_requested", "decide_extension": "extension_requested", "review": "responded"}
    referral = referral_in(client, world, state.get(action, "signed"))
    who = "supervisor" if RULES[ReferralAction(action)].actor is Role.supervisor else "staff"
    fields = {
        "request_return": ["grounds"],
        "decide_return": ["approve", "reassign_to", "co_department_ids", "reason"],
        "request_extension": ["until", "reason"],
        "decide_extension": ["approve", "until", "reason"],
        "respond": ["outcome", "done", "plan", "next_date", "reason"],
        "review": ["accept", "reason", "workdays"],
        "cancel": ["reason"],
    }.get(action, [])
    url = f"/api/v1/referrals/{referral['id']}/{action}"
    base = dict(BODIES[action]) | {"version": referral["version"]}
    if action == "decide_return":
        base = {"approve": True, "reassign_to": str(world.other_dept), "version": referral["version"]}
    for field in [*fields, "version"]:
        for junk in JUNK:
            r = send_json(client, url, base | {field: junk}, world.headers(who))
            assert r.status_code < 500, (field, junk, r.get_data(as_text=True))
            if r.status_code == 200:  # a junk value that happened to be valid moved it: start again
                referral = referral_in(client, world, state.get(action, "signed"))
                url = f"/api/v1/referrals/{referral['id']}/{action}"
                base["version"] = referral["version"]


def test_junk_in_a_followup_result_never_gives_500(client, world):
    revisit = referral_in(client, world, "closed")["followups"][0]
    url = f"/api/v1/followups/{revisit['id']}/complete"
    for field in ("satisfaction", "next_date", "version", "note"):
        for junk in JUNK:
            body = {"satisfaction": "satisfied", "version": 1} | {field: junk}
            r = send_json(client, url, body, world.headers("cadre"))
            assert r.status_code < 500, (field, junk, r.get_data(as_text=True))
            if r.status_code == 200:
                return


def test_outcome_labels_are_chinese(client, world):
    referral = referral_in(client, world, "closed")
    assert (referral["outcome"], referral["outcome_label"]) == ("solved", ProblemOutcome.solved.label)
    assert referral["answer"]["outcome_label"] == "已解决"
    assert [e["event_label"] for e in referral["history"]] == ["交办", "签收", "办理反馈", "审核通过并办结"]
