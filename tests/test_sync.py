"""The sync protocol's server side: exactly-once push, never blocked, conflicts kept, pull in order."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from server import db
from server.db.models import AuditEntry, Problem, SyncChange, Visit
from server.services import visits
from tests.factories import PASSWORD, visit_note
from tests.sync_helpers import CLIENT, device, note_payload


@pytest.fixture
def phone(client, world):
    return device(client, "cadre", PASSWORD)


def count(app, model) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(model))


def test_push_applies_in_order_and_acknowledges(app, phone, world):
    a_id, a = note_payload(world)
    b_id, b = note_payload(world, summary="第二条记录")
    r = phone.push([phone.change("visit.create", a_id, a), phone.change("visit.create", b_id, b)], queue_depth=0)
    assert r.status_code == 200, r.json
    assert r.json["last_seq"] == 2
    assert [x["status"] for x in r.json["results"]] == ["applied", "applied"]
    assert r.json["upgrade_required"] is False
    assert count(app, Visit) == 2 and count(app, Problem) == 4


def test_replaying_a_push_never_applies_twice(app, phone, world):
    changes = [phone.change("visit.create", *note_payload(world)) for _ in range(3)]
    first = phone.push(changes).json
    again = phone.push(changes).json
    assert again["last_seq"] == 3
    assert all(r["replayed"] for r in again["results"])
    assert [r["status"] for r in again["results"]] == [r["status"] for r in first["results"]]
    # A batch that overlaps what was applied: the old part is replayed, the new part applied.
    more = [phone.change("visit.create", *note_payload(world))]
    mixed = phone.push(changes[1:] + more).json
    assert [r.get("replayed", False) for r in mixed["results"]] == [True, True, False]
    assert count(app, Visit) == 4


def test_a_gap_is_refused_with_the_expected_seq(app, phone, world):
    phone.push([phone.change("visit.create", *note_payload(world))])
    phone.seq += 2  # the device lost changes 2 and 3?
    r = phone.push([phone.change("visit.create", *note_payload(world))])
    assert r.status_code == 409
    assert r.json["code"] == "sequence_gap"
    assert r.json["details"] == {"expected_seq": 2}
    assert count(app, Visit) == 1


def test_a_batch_must_be_contiguous(phone, world):
    c1 = phone.change("visit.create", *note_payload(world))
    phone.seq += 1
    c3 = phone.change("visit.create", *note_payload(world))
    r = phone.push([c1, c3])
    assert r.status_code == 422


def test_a_bad_note_never_blocks_the_good_ones(app, phone, world):
    bad_id, bad = note_payload(world, summary="")
    missing_target_id, missing_target = note_payload(world, target_id=str(uuid.uuid4()))
    changes = [
        phone.change("visit.create", *note_payload(world)),
        phone.change("visit.create", bad_id, bad),
        phone.change("visit.create", missing_target_id, missing_target),
        phone.change("visit.create", *note_payload(world)),
    ]
    r = phone.push(changes).json
    assert [x["status"] for x in r["results"]] == ["applied", "rejected", "rejected", "applied"]
    assert r["results"][1]["code"] == "validation_error" and "summary" in r["results"][1]["errors"]
    assert r["results"][2]["errors"] == {"target_id": ["No such target."]}
    assert r["last_seq"] == 4
    assert count(app, Visit) == 2
    # The rejection is kept server-side, with its payload, for supervisors.
    with app.app_context():
        stored = db.session().scalars(select(SyncChange).where(SyncChange.status == "rejected")).all()
    assert {s.seq for s in stored} == {2, 3}
    assert stored[0].payload is not None


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_text_no_database_stores_rejects_its_note_alone(app, client, phone, world, bad):
    """NUL, or an unpaired surrogate (a JSON \\ud800 escape): refused with the note, never a 500,
    never the whole batch; the refused payload is kept with the character replaced."""
    bad_id, note = note_payload(world, summary=f"走访{bad}企业")
    note["problems"][0][f"备注{bad}"] = "?"
    changes = [
        phone.change("visit.create", *note_payload(world)),
        phone.change("visit.create", bad_id, note),
        phone.change("visit.create", *note_payload(world)),
    ]
    body = json.dumps({"device_id": phone.device_id, "changes": changes})  # \u escapes, as a phone sends them
    r = client.post("/api/v1/sync/push", data=body, headers=phone.headers | {"Content-Type": "application/json"})
    assert r.status_code == 200, r.json
    assert [x["status"] for x in r.json["results"]] == ["applied", "rejected", "applied"]
    assert "summary" in r.json["results"][1]["errors"]
    assert count(app, Visit) == 2
    rejected = client.get("/api/v1/sync/rejections", headers=world.headers("supervisor")).json
    assert [x["payload"]["summary"] for x in rejected] == ["走访\ufffd企业"]
    # The same text POSTed on its own: a 422 in the one error shape.
    _, alone = note_payload(world, summary=f"走访{bad}企业")
    r = client.post(
        "/api/v1/visits", data=json.dumps(alone), headers=world.headers("cadre") | {"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json["code"] == "validation_error" and "summary" in r.json["errors"]


def test_a_note_with_more_ids_than_a_statement_takes_is_rejected_alone(app, phone, world, monkeypatch):
    """A payload may carry any number of ids before it is validated: the screening reads only valid
    notes, and asks for their ids in chunks, so neither a huge list nor a big batch is a 500."""
    huge_id, huge = note_payload(world)
    huge["problems"] = [{"id": str(uuid.uuid4())} for _ in range(70_000)]  # over PostgreSQL's 65,535
    monkeypatch.setattr(visits, "IN_CHUNK", 3)  # a batch's ids over several statements
    changes = [phone.change("visit.create", *note_payload(world)) for _ in range(2)]
    changes.append(phone.change("visit.create", huge_id, huge))
    r = phone.push(changes)
    assert r.status_code == 200, r.json
    assert [x["status"] for x in r.json["results"]] == ["applied", "applied", "rejected"]
    assert r.json["results"][2]["code"] == "validation_error"
    assert count(app, Visit) == 2 and count(app, Problem) == 4


def test_a_rejected_note_can_be_fixed_and_resent(app, phone, world):
    note_id, note = note_payload(world, summary="")
    assert phone.push([phone.change("visit.create", note_id, note)]).json["results"][0]["status"] == "rejected"
    note["summary"] = "补写了摘要"
    r = phone.push([phone.change("visit.create", note_id, note)]).json
    assert r["results"][0]["status"] == "applied"
    assert count(app, Visit) == 1


def test_a_failing_write_rolls_back_alone(app, client, phone, world):
    """The second note reuses a problem id: its savepoint rolls back, the others stay."""
    first_id, first = note_payload(world)
    dup_id, dup = note_payload(world)
    dup["problems"][0]["id"] = first["problems"][0]["id"]
    r = phone.push(
        [
            phone.change("visit.create", first_id, first),
            phone.change("visit.create", dup_id, dup),
            phone.change("visit.create", *note_payload(world)),
        ]
    ).json
    assert [x["status"] for x in r["results"]] == ["applied", "rejected", "applied"]
    assert count(app, Visit) == 2
    assert count(app, Problem) == 4


def test_notes_stored_in_bulk_are_stored_as_one_posted_note(app, client, phone, world):
    """A push stores its new notes together (one INSERT per table); what is stored is the same as
    for a note POSTed on its own: the visit, its problems, search entries, audit and change log."""
    h = world.headers("cadre")
    pushed_id, pushed = note_payload(world)
    posted = visit_note(world)
    assert phone.push([phone.change("visit.create", pushed_id, pushed)]).json["results"][0]["status"] == "applied"
    assert client.post("/api/v1/visits", json=posted, headers=h).status_code == 201

    def shape(visit_id):
        body = client.get(f"/api/v1/visits/{visit_id}", headers=h).json
        for key in ("id", "created_at", "updated_at"):
            body.pop(key)
        for p in body["problems"]:
            for key in ("id", "visit_id", "created_at", "updated_at"):
                p.pop(key)
        return body

    assert shape(pushed_id) == shape(posted["id"])
    with app.app_context():
        audits = {
            e.entity_id: e
            for e in db.session().scalars(
                select(AuditEntry).where(AuditEntry.entity == "visit", AuditEntry.action == "create")
            )
        }
    assert audits[pushed_id].changes.keys() == audits[posted["id"]].changes.keys()
    assert audits[pushed_id].changes["problems"] == [p["id"] for p in pushed["problems"]]
    assert audits[pushed_id].device_id == uuid.UUID(phone.device_id)
    found = client.get("/api/v1/problems", query_string={"q": "融资"}, headers=world.headers("supervisor")).json
    assert {p["visit_id"] for p in found["items"]} == {pushed_id, posted["id"]}
    phone.pull_all()
    assert {pushed_id, posted["id"]} <= phone.ids("visit")
    assert {p["id"] for p in pushed["problems"]} <= phone.ids("problem")


def test_a_mixed_batch_is_applied_in_seq_order(app, phone, world):
    """Runs of new notes go in bulk; a retry, a taken id, an edit or a bad note between them is
    applied on its own, in its place."""
    a_id, a = note_payload(world)
    _, taken = note_payload(world, summary="另一条记录")
    shared_id, shared = note_payload(world)
    shared["problems"][1]["id"] = a["problems"][0]["id"]
    bad_id, bad = note_payload(world, service_categories=[])
    changes = [
        phone.change("visit.create", a_id, a),
        phone.change("visit.update", a_id, {"summary": "当场补充"}, base=1),
        phone.change("visit.create", a_id, a),  # the same note again: a retry of the first
        phone.change("visit.create", a_id, taken),  # another note under a taken id
        phone.change("visit.create", *note_payload(world)),
        phone.change("visit.create", shared_id, shared),  # a problem id of the first note
        phone.change("visit.create", bad_id, bad),
        phone.change("visit.create", *note_payload(world)),
        phone.change("visit.create", *note_payload(world)),
    ]
    r = phone.push(changes).json
    statuses = [(x["status"], x.get("code")) for x in r["results"]]
    assert statuses == [
        ("applied", None), ("applied", None), ("rejected", "id_taken"), ("rejected", "id_taken"),
        ("applied", None), ("rejected", "id_taken"), ("rejected", "validation_error"),
        ("applied", None), ("applied", None),
    ]  # fmt: skip
    # The retry came after the edit, so it is another note under the first one's id.
    assert r["results"][1]["version"] == 2
    assert count(app, Visit) == 4 and count(app, Problem) == 8
    with app.app_context():
        stored = db.session().scalars(select(SyncChange).order_by(SyncChange.seq)).all()
    assert [s.status for s in stored] == [x[0] for x in statuses]
    assert [s.payload is None for s in stored] == [x[0] == "applied" for x in statuses]


def test_a_bulk_run_that_fails_is_applied_one_change_at_a_time(app, phone, world, monkeypatch):
    """Another device may take an id between the screening and the INSERT: the run's savepoint
    rolls back and each of its notes is applied alone, so only the one that clashes is rejected
    and no change number is given to a row that was rolled back."""
    first_id, first = note_payload(world)
    clash_id, clash = note_payload(world)
    clash["problems"][0]["id"] = first["problems"][0]["id"]
    phone.push([phone.change("visit.create", first_id, first)])
    screens = []
    screen = visits.NewNotes.__init__

    def blind_first_screen(self, session, notes):
        screen(self, session, notes)
        if not screens:
            self._taken = set()  # the push's screening misses the clash; later ones (one by one) see it
        screens.append(self)

    monkeypatch.setattr(visits.NewNotes, "__init__", blind_first_screen)
    r = phone.push(
        [
            phone.change("visit.create", *note_payload(world)),
            phone.change("visit.create", clash_id, clash),
            phone.change("visit.create", *note_payload(world)),
        ]
    ).json
    assert [(x["status"], x.get("code")) for x in r["results"]] == [
        ("applied", None), ("rejected", "id_taken"), ("applied", None),
    ]  # fmt: skip
    assert len(screens) == 4  # the batch's, then one per note as the run was applied again one by one
    assert count(app, Visit) == 3 and count(app, Problem) == 6
    phone.pull_all()
    assert clash_id not in phone.ids("visit")
    assert len(phone.ids("visit")) == 3 and len(phone.ids("problem")) == 6


def test_offline_edits_with_predicted_versions_sync_without_conflict(app, phone, world):
    note_id, note = note_payload(world)
    r = phone.push(
        [
            phone.change("visit.create", note_id, note),
            phone.change("visit.update", note_id, {"summary": "改了一次"}, base=1),
            phone.change("visit.update", note_id, {"summary": "改了两次"}, base=2),
        ]
    ).json
    assert [x["status"] for x in r["results"]] == ["applied"] * 3
    assert r["results"][-1]["version"] == 3


def test_an_edit_on_a_changed_record_is_a_conflict_and_both_versions_are_kept(app, client, phone, world):
    note_id, note = note_payload(world)
    phone.push([phone.change("visit.create", note_id, note)])
    # Meanwhile the same note is edited from another device of the cadre (version 2).
    h = world.headers("cadre")
    client.patch(f"/api/v1/visits/{note_id}", json={"summary": "在电脑上改的", "version": 1}, headers=h)
    r = phone.push([phone.change("visit.update", note_id, {"summary": "在手机上改的"}, base=1)]).json
    result = r["results"][0]
    assert result["status"] == "conflict"
    assert result["server_version"] == 2
    assert client.get(f"/api/v1/visits/{note_id}", headers=h).json["summary"] == "在电脑上改的"
    conflicts = client.get("/api/v1/sync/conflicts", headers=world.headers("supervisor")).json
    assert len(conflicts) == 1
    assert conflicts[0]["device_payload"] == {"summary": "在手机上改的"}
    assert conflicts[0]["server_snapshot"]["summary"] == "在电脑上改的"
    # The cadre sees it too, and resolves it by taking the phone's version.
    mine = client.get("/api/v1/sync/conflicts", headers=phone.headers).json
    assert [c["id"] for c in mine] == [result["conflict_id"]]
    resolved = client.post(
        f"/api/v1/sync/conflicts/{result['conflict_id']}/resolve", json={"resolution": "use_device"}, headers=h
    )
    assert resolved.status_code == 200 and resolved.json["status"] == "resolved"
    assert client.get(f"/api/v1/visits/{note_id}", headers=h).json["summary"] == "在手机上改的"
    again = client.post(
        f"/api/v1/sync/conflicts/{result['conflict_id']}/resolve", json={"resolution": "keep_server"}, headers=h
    )
    assert again.status_code == 409


def test_push_from_another_device_id_is_refused(phone, world):
    r = phone.client.post(
        "/api/v1/sync/push",
        json={"device_id": str(uuid.uuid4()), "changes": []},
        headers=phone.headers,
    )
    assert r.status_code == 409 and r.json["code"] == "device_mismatch"


def test_client_version_headers(app, phone, world):
    h = {"Authorization": phone.headers["Authorization"]}
    body = {"device_id": phone.device_id, "changes": []}
    r = phone.client.post("/api/v1/sync/push", json=body, headers=h)
    assert r.status_code == 400 and r.json["code"] == "missing_client_version"
    r = phone.client.post("/api/v1/sync/push", json=body, headers=h | {**CLIENT, "X-Client-Protocol": "99"})
    assert r.status_code == 426 and r.json["code"] == "unsupported_protocol"
    app.config["MIN_CLIENT_VERSION"] = "1.0.0"
    old = h | CLIENT  # 0.3.0
    r = phone.client.post("/api/v1/sync/pull", json={"cursor": "0"}, headers=old)
    assert r.status_code == 426 and r.json["code"] == "client_too_old"
    # ... but its queued notes are still accepted.
    r = phone.client.post(
        "/api/v1/sync/push",
        json={"device_id": phone.device_id, "changes": [phone.change("visit.create", *note_payload(world))]},
        headers=old,
    )
    assert r.status_code == 200
    assert r.json["upgrade_required"] is True
    assert r.json["results"][0]["status"] == "applied"


def test_pull_streams_everything_in_scope_then_nothing(app, client, phone, world):
    phone.push([phone.change("visit.create", *note_payload(world)) for _ in range(3)])
    seen = phone.pull_all(limit=4)
    assert len(phone.ids("visit")) == 3
    assert len(phone.ids("problem")) == 6
    assert str(world.firm) in phone.ids("target")
    assert str(world.campaign) in phone.ids("campaign")
    numbers = [c["change_no"] for c in seen]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert phone.pull_all() == []


def test_pull_sends_tombstones(client, phone, world):
    note_id, note = note_payload(world)
    phone.push([phone.change("visit.create", note_id, note)])
    phone.pull_all()
    phone.push([phone.change("visit.delete", note_id, base=1)])
    changes = phone.pull_all()
    assert {(c["entity"], c["op"]) for c in changes} == {("visit", "delete"), ("problem", "delete")}
    assert note_id not in phone.ids("visit")


def test_pull_scope_is_own_notes_and_portfolio_targets(client, world):
    mine = device(client, "cadre", PASSWORD)
    other = device(client, "other_cadre", PASSWORD)
    # other_cadre visits the firm, which is in cadre's portfolio, and the project, which is not.
    other.push(
        [
            other.change("visit.create", *note_payload(world)),
            other.change("visit.create", *note_payload(world, target_id=str(world.project))),
        ]
    )
    mine.pull_all()
    assert len(mine.ids("visit")) == 1
    other.pull_all()
    assert len(other.ids("visit")) == 2


def test_gaining_a_target_back_fills_its_history(client, world):
    mine = device(client, "cadre", PASSWORD)
    other = device(client, "other_cadre", PASSWORD)
    other.push([other.change("visit.create", *note_payload(world, target_id=str(world.project))) for _ in range(3)])
    mine.pull_all()
    assert mine.ids("visit") == set()
    # The project joins cadre's portfolio: its whole history arrives, though it is older than the cursor.
    client.put(
        f"/api/v1/users/{world.users['cadre']}/portfolio",
        json={"target_ids": [str(world.firm), str(world.project)]},
        headers=world.headers("admin"),
    )
    mine.pull_all(limit=2)
    assert len(mine.ids("visit")) == 3
    assert str(world.project) in mine.targets
    # And it goes again when the target leaves the portfolio.
    client.put(
        f"/api/v1/users/{world.users['cadre']}/portfolio",
        json={"target_ids": [str(world.firm)]},
        headers=world.headers("admin"),
    )
    r = mine.pull().json
    assert r["removed_targets"] == [str(world.project)]


def test_unknown_cursor_is_410(phone):
    r = phone.client.post("/api/v1/sync/pull", json={"cursor": "999999999"}, headers=phone.headers)
    assert r.status_code == 410 and r.json["code"] == "cursor_expired"
    r = phone.client.post("/api/v1/sync/pull", json={"cursor": "abc"}, headers=phone.headers)
    assert r.status_code == 422


def test_conflicts_are_listed_open_or_resolved_and_nothing_else(client, world):
    """A status the list does not know is 422, not an empty list (found by test_api_fuzz.py)."""
    h = world.headers("cadre")
    for status in ("open", "resolved"):
        assert client.get(f"/api/v1/sync/conflicts?status={status}", headers=h).status_code == 200
    r = client.get("/api/v1/sync/conflicts?status=closed", headers=h)
    assert r.status_code == 422 and "status" in r.json["errors"], r.json


def test_supervisors_see_devices_rejections_and_conflicts(client, phone, world):
    bad_id, bad = note_payload(world, summary="")
    phone.push(
        [phone.change("visit.create", *note_payload(world)), phone.change("visit.create", bad_id, bad)], queue_depth=7
    )
    devices = {d["id"]: d for d in client.get("/api/v1/sync/devices", headers=world.headers("supervisor")).json}
    mine = devices[phone.device_id]
    assert (mine["last_seq"], mine["queue_depth"], mine["rejected"], mine["open_conflicts"]) == (2, 7, 1, 0)
    assert mine["last_push_at"] and mine["app_version"] == "0.3.0"
    rejections = client.get("/api/v1/sync/rejections", headers=world.headers("supervisor")).json
    assert [(r["seq"], r["code"]) for r in rejections] == [(2, "validation_error")]
    # A cadre sees only their own devices.
    others = client.get("/api/v1/sync/devices", headers=world.headers("other_cadre")).json
    assert phone.device_id not in {d["id"] for d in others}


def test_department_staff_cannot_sync(client, world):
    staff = device(client, "staff", PASSWORD)
    assert staff.push([]).status_code == 403
    assert staff.pull().status_code == 403
