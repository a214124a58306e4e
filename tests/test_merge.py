"""Merging duplicate problems: who may, which problems, what it does to lists, reports, audit and sync."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from server import db
from server.db.models import AuditEntry, ChangeLogEntry
from tests.factories import PASSWORD
from tests.referral_helpers import issue, problem_ids, referral_in
from tests.sync_helpers import device
from tests.test_errors import JUNK, assert_error, send_json


def get(client, world, pid, who="supervisor"):
    return client.get(f"/api/v1/problems/{pid}", headers=world.headers(who))


def merge(client, world, pid, into, who="supervisor", **body):
    if "version" not in body:
        body["version"] = get(client, world, pid).json["version"]
    return client.post(f"/api/v1/problems/{pid}/merge", json={"into": str(into)} | body, headers=world.headers(who))


def unmerge(client, world, pid, who="supervisor", **body):
    if "version" not in body:
        body["version"] = get(client, world, pid).json["version"]
    return client.post(f"/api/v1/problems/{pid}/unmerge", json=body, headers=world.headers(who))


def listed(client, world, query="", who="supervisor"):
    r = client.get(f"/api/v1/problems?{query}", headers=world.headers(who))
    assert r.status_code == 200, r.json
    return {p["id"] for p in r.json["items"]}


@pytest.fixture
def pair(client, world):
    """Two problems of the world's firm, as two cadres wrote them after a joint visit: (survivor, duplicate)."""
    (survivor,) = problem_ids(client, world, 1, who="cadre")
    (duplicate,) = problem_ids(client, world, 1, who="other_cadre")
    return survivor, duplicate


def test_merge_closes_the_duplicate_and_points_at_the_survivor(client, world, pair):
    survivor, duplicate = pair
    r = merge(client, world, duplicate, survivor)
    assert r.status_code == 200, r.json
    body = r.json
    assert body["duplicate_of_id"] == survivor
    assert body["status"] == "closed" and body["closed_at"] and body["merged_at"]
    assert body["merged_by_id"] == str(world.users["supervisor"])
    assert body["outcome"] is None  # untouched
    assert body["version"] == 2
    # Still readable, by the supervisor and by the cadre who wrote it.
    assert get(client, world, duplicate, who="other_cadre").json["duplicate_of_id"] == survivor
    # The survivor is unchanged.
    assert get(client, world, survivor).json["version"] == 1


def test_default_lists_hide_duplicates_and_a_filter_shows_them(client, world, pair):
    survivor, duplicate = pair
    merge(client, world, duplicate, survivor)
    assert duplicate not in listed(client, world)
    assert survivor in listed(client, world)
    assert {survivor, duplicate} <= listed(client, world, "duplicates=include")
    assert listed(client, world, "duplicates=only") == {duplicate}
    assert listed(client, world, f"duplicate_of={survivor}") == {duplicate}
    assert listed(client, world, "status=closed") == set()
    assert listed(client, world, "q=融资难") == {survivor}
    # The cadre who wrote the duplicate finds it with the filter, too.
    assert listed(client, world, "duplicates=only", who="other_cadre") == {duplicate}
    assert_error(client.get("/api/v1/problems?duplicates=all", headers=world.headers("supervisor")), 422)


def test_reports_count_a_merged_problem_once(client, world, pair):
    survivor, duplicate = pair
    h = world.headers("supervisor")
    before = client.get("/api/v1/reports/summary", headers=h).json
    assert before["problems"]["collected"] == 2
    merge(client, world, duplicate, survivor)
    after = client.get("/api/v1/reports/summary", headers=h).json
    assert after["problems"] == {"collected": 1, "solved": 0, "coordinating": 0, "deferred": 0, "open": 1}
    assert [c["collected"] for c in after["by_category"]] == [1]
    assert sum(d["collected"] for d in after["by_department"]) == 1
    assert after["sentence"].startswith("共梳理问题1个")
    unmerge(client, world, duplicate)
    assert client.get("/api/v1/reports/summary", headers=h).json["problems"]["collected"] == 2


def test_dashboard_figures_exclude_duplicates(app, client, world, pair):
    from schemas.enums import Role
    from server.services import dashboard
    from server.services.actors import Actor

    survivor, duplicate = pair
    merge(client, world, duplicate, survivor)
    with app.app_context():
        who = Actor(world.users["supervisor"], Role.supervisor)
        figures = dashboard.dashboard(db.session(), who, None, None, None)
    assert figures["summary"]["problems"]["collected"] == 1


def test_unmerge_restores_the_problem(client, world, pair):
    survivor, duplicate = pair
    merge(client, world, duplicate, survivor)
    r = unmerge(client, world, duplicate)
    assert r.status_code == 200, r.json
    assert (r.json["duplicate_of_id"], r.json["merged_at"], r.json["merged_by_id"]) == (None, None, None)
    assert (r.json["status"], r.json["closed_at"]) == ("open", None)
    assert duplicate in listed(client, world)
    assert_error(unmerge(client, world, duplicate), 409, "not_merged")


def test_a_solved_duplicate_keeps_its_outcome_and_closing_time(client, world, pair):
    survivor, duplicate = pair
    solved = client.patch(
        f"/api/v1/problems/{duplicate}",
        json={"outcome": "solved", "version": 1},
        headers=world.headers("supervisor"),
    ).json
    merged = merge(client, world, duplicate, survivor).json
    assert (merged["outcome"], merged["closed_at"]) == ("solved", solved["closed_at"])
    back = unmerge(client, world, duplicate).json
    assert (back["status"], back["outcome"], back["closed_at"]) == ("closed", "solved", solved["closed_at"])


def test_only_supervisors_merge(client, world, pair):
    survivor, duplicate = pair
    for who in ("cadre", "other_cadre", "staff", "admin"):
        assert_error(merge(client, world, duplicate, survivor, who=who), 403, "forbidden")
    assert_error(client.post(f"/api/v1/problems/{duplicate}/merge", json={"into": survivor, "version": 1}), 401)
    assert get(client, world, duplicate).json["duplicate_of_id"] is None


def test_unknown_problem_is_404_and_bad_survivors_are_422(client, world, pair):
    survivor, duplicate = pair
    assert_error(merge(client, world, str(uuid.uuid4()), survivor, version=1), 404)
    body = assert_error(merge(client, world, duplicate, uuid.uuid4()), 422)
    assert body["errors"] == {"into": ["No such problem."]}
    body = assert_error(merge(client, world, duplicate, duplicate), 422)
    assert "into" in body["errors"]
    (elsewhere,) = problem_ids(client, world, 1, target=world.project)
    body = assert_error(merge(client, world, duplicate, elsewhere), 422)
    assert body["errors"] == {"into": ["The problems belong to different targets."]}
    assert get(client, world, duplicate).json["version"] == 1


def test_stale_version_is_409(client, world, pair):
    survivor, duplicate = pair
    body = assert_error(merge(client, world, duplicate, survivor, version=7), 409, "version_conflict")
    assert body["details"] == {"current_version": 1}


def test_no_merging_into_a_duplicate_or_twice(client, world, pair):
    survivor, duplicate = pair
    (third,) = problem_ids(client, world, 1)
    merge(client, world, duplicate, survivor)
    body = assert_error(merge(client, world, third, duplicate), 409, "survivor_merged")
    assert body["details"] == {"survivor_id": survivor}
    body = assert_error(merge(client, world, duplicate, third), 409, "already_merged")
    assert body["details"] == {"survivor_id": survivor}


def test_a_survivor_merged_later_takes_its_duplicates_along(client, world, pair):
    survivor, duplicate = pair
    (third,) = problem_ids(client, world, 1)
    merge(client, world, duplicate, survivor)
    assert merge(client, world, survivor, third).status_code == 200
    moved = get(client, world, duplicate).json
    assert (moved["duplicate_of_id"], moved["version"]) == (third, 3)
    assert listed(client, world, f"duplicate_of={third}") == {survivor, duplicate}
    assert listed(client, world) == {third}


def test_a_problem_in_an_open_referral_cannot_be_merged_away(client, world, pair):
    survivor, duplicate = pair
    referral = issue(client, world, [duplicate]).json
    body = assert_error(merge(client, world, duplicate, survivor), 409, "open_referral")
    assert body["details"] == {"referrals": [referral["number"]]}
    # The other way round is the way: the referred problem survives.
    assert merge(client, world, survivor, duplicate).status_code == 200


def test_a_closed_referral_does_not_stop_a_merge(client, world, pair):
    survivor, duplicate = pair
    referral_in(client, world, "closed", problems=[duplicate])
    r = merge(client, world, duplicate, survivor)
    assert r.status_code == 200, r.json


def test_a_merged_duplicate_stays_closed_when_its_old_referral_reopens(client, world, pair):
    survivor, duplicate = pair
    referral = referral_in(client, world, "closed", problems=[duplicate])
    merge(client, world, duplicate, survivor)
    revisit = referral["followups"][0]
    version = client.get(f"/api/v1/followups/{revisit['id']}", headers=world.headers("supervisor")).json["version"]
    r = client.post(
        f"/api/v1/followups/{revisit['id']}/complete",
        json={"satisfaction": "unsatisfied", "note": "贷款仍未到位。", "version": version},
        headers=world.headers(revisit_owner(world, revisit)),
    )
    assert r.status_code == 200, r.json
    after = get(client, world, duplicate).json
    assert (after["status"], after["outcome"], after["duplicate_of_id"]) == ("closed", "solved", survivor)


def revisit_owner(world, revisit):
    return next(who for who, uid in world.users.items() if str(uid) == revisit["assignee_id"])


def test_a_duplicate_is_read_only_and_cannot_be_referred(client, world, pair):
    survivor, duplicate = pair
    merge(client, world, duplicate, survivor)
    r = client.patch(
        f"/api/v1/problems/{duplicate}",
        json={"department_id": str(world.dept), "version": 2},
        headers=world.headers("supervisor"),
    )
    body = assert_error(r, 409, "problem_merged")
    assert body["details"] == {"survivor_id": survivor}
    body = assert_error(issue(client, world, [duplicate]), 422)
    assert "problem_ids" in body["errors"]


def test_merging_is_audited_and_synced(app, client, world, pair):
    survivor, duplicate = pair
    merge(client, world, duplicate, survivor)
    unmerge(client, world, duplicate)
    with app.app_context():
        s = db.session()
        entries = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity == "problem", AuditEntry.entity_id == duplicate)
            .order_by(AuditEntry.id)
        ).all()
        change = s.scalars(select(ChangeLogEntry).where(ChangeLogEntry.record_id == uuid.UUID(duplicate))).one()
    merged, unmerged = [e for e in entries if e.action in ("merge", "unmerge")]
    assert merged.action == "merge" and merged.actor_id == world.users["supervisor"]
    assert merged.changes["duplicate_of_id"] == [None, survivor]
    assert merged.changes["status"] == ["open", "closed"]
    assert unmerged.action == "unmerge" and unmerged.changes["duplicate_of_id"] == [survivor, None]
    assert (change.entity, change.op) == ("problem", "upsert")


def test_the_writers_device_pulls_the_merge(client, world, pair):
    survivor, duplicate = pair
    phone = device(client, "other_cadre", PASSWORD)
    phone.pull_all()
    assert phone.records[("problem", duplicate)]["duplicate_of_id"] is None
    merge(client, world, duplicate, survivor)
    changes = [c for c in phone.pull_all() if c["entity"] == "problem"]
    assert [c["id"] for c in changes] == [duplicate]
    assert phone.records[("problem", duplicate)]["duplicate_of_id"] == survivor
    assert phone.records[("problem", duplicate)]["status"] == "closed"


def test_a_phone_rewording_a_merged_duplicate_is_rejected(client, world, pair):
    survivor, duplicate = pair
    phone = device(client, "other_cadre", PASSWORD)
    merge(client, world, duplicate, survivor)
    change = phone.change("problem.update", duplicate, {"description": "融资难，利率高。"}, base=2)
    r = phone.push([change])
    assert r.status_code == 200, r.json
    assert (r.json["results"][0]["status"], r.json["results"][0]["code"]) == ("rejected", "problem_merged")
    assert get(client, world, duplicate).json["version"] == 2


def test_junk_in_any_field_never_gives_500(client, world, pair):
    survivor, duplicate = pair
    for url in (f"/api/v1/problems/{duplicate}/merge", f"/api/v1/problems/{duplicate}/unmerge"):
        for field in ("into", "version", "other"):
            for junk in JUNK:
                body = {"into": survivor, "version": 1} if url.endswith("/merge") else {"version": 1}
                body[field] = junk
                r = send_json(client, url, body, world.headers("supervisor"))
                assert r.status_code < 500, (url, field, junk, r.get_data(as_text=True))
                if r.status_code >= 400:
                    assert set(r.json) >= {"status", "code", "message"}
        for raw in ("[]", "null", '"x"', "{", ""):
            r = client.post(url, data=raw, content_type="application/json", headers=world.headers("supervisor"))
            assert 400 <= r.status_code < 500, (url, raw)


def test_merge_routes_are_in_the_openapi_document(client):
    paths = client.get("/api/openapi.json").json["paths"]
    assert "post" in paths["/api/v1/problems/{problem_id}/merge"]
    assert "post" in paths["/api/v1/problems/{problem_id}/unmerge"]
