"""Follow-ups on the phones when a supervisor reassigns them: the new assignee's pull carries the
follow-up, the previous assignee's a tombstone of it (docs/sync-protocol.md, "Records that leave a
user"), however many times it moves and whenever each phone pulls.
"""

from __future__ import annotations

import uuid
from typing import Any

from client_sync import cache
from client_sync.store import Store
from schemas.enums import Role
from server import db
from server.services import followups
from server.services.actors import Actor
from tests.factories import PASSWORD
from tests.referral_helpers import referral_in
from tests.sync_helpers import FakeDevice, device


def revisit_of_cadre(client: Any, world: Any) -> dict[str, Any]:
    """A revisit given to `cadre` (the firm's portfolio cadre) by a referral accepted as solved."""
    revisit = referral_in(client, world, "closed")["followups"][0]
    assert revisit["assignee_id"] == str(world.users["cadre"])
    return revisit


def reassign(client: Any, world: Any, followup_id: str, to: str) -> dict[str, Any]:
    url = f"/api/v1/followups/{followup_id}"
    version = client.get(url, headers=world.headers("supervisor")).json["version"]
    body = {"assignee_id": str(world.users[to]), "version": version}
    r = client.post(f"{url}/reassign", json=body, headers=world.headers("supervisor"))
    assert r.status_code == 200, r.json
    return r.json


def followup_changes(changes: list[dict[str, Any]], followup_id: str) -> list[tuple[str, str | None]]:
    """(op, assignee) of each pulled change of the follow-up, in the order pulled."""
    return [(c["op"], (c["data"] or {}).get("assignee_id")) for c in changes if c["id"] == followup_id]


def test_a_reassigned_followup_leaves_the_previous_assignees_phone_and_reaches_the_new_one(client, world):
    phone, other_phone = device(client, "cadre", PASSWORD), device(client, "other_cadre", PASSWORD)
    revisit = revisit_of_cadre(client, world)
    phone.pull_all()
    other_phone.pull_all()
    assert phone.ids("followup") == {revisit["id"]} and other_phone.ids("followup") == set()

    reassign(client, world, revisit["id"], "other_cadre")
    pulled = phone.pull_all()
    tombstone = next(c for c in pulled if c["id"] == revisit["id"])
    assert (tombstone["entity"], tombstone["op"], tombstone["data"]) == ("followup", "delete", None)
    assert phone.ids("followup") == set()
    pulled = other_phone.pull_all()
    assert followup_changes(pulled, revisit["id"]) == [("upsert", str(world.users["other_cadre"]))]
    assert other_phone.ids("followup") == {revisit["id"]}
    # Nothing more on the next pulls; a completion the old phone had queued is refused.
    assert phone.pull_all() == [] and other_phone.pull_all() == []
    change = phone.change("followup.complete", revisit["id"], {"satisfaction": "satisfied"}, base=1)
    result = phone.push([change]).json["results"][0]
    assert (result["status"], result["code"]) == ("rejected", "not_found")


def test_every_previous_assignee_gets_its_tombstone_whenever_it_pulls(client, world):
    phone, other_phone = device(client, "cadre", PASSWORD), device(client, "other_cadre", PASSWORD)
    boss = device(client, "supervisor", PASSWORD)
    revisit = revisit_of_cadre(client, world)
    phone.pull_all()
    other_phone.pull_all()
    boss.pull_all()
    # Two moves while neither cadre's phone pulls: each still learns it lost the follow-up.
    reassign(client, world, revisit["id"], "other_cadre")
    reassign(client, world, revisit["id"], "supervisor")
    assert followup_changes(phone.pull_all(), revisit["id"]) == [("delete", None)]
    assert followup_changes(other_phone.pull_all(), revisit["id"]) == [("delete", None)]
    assert followup_changes(boss.pull_all(), revisit["id"]) == [("upsert", str(world.users["supervisor"]))]
    assert phone.ids("followup") == other_phone.ids("followup") == set()
    assert boss.ids("followup") == {revisit["id"]}


def test_a_followup_given_back_arrives_after_its_tombstone(client, world):
    phone, other_phone = device(client, "cadre", PASSWORD), device(client, "other_cadre", PASSWORD)
    revisit = revisit_of_cadre(client, world)
    phone.pull_all()
    other_phone.pull_all()
    reassign(client, world, revisit["id"], "other_cadre")
    behind = FakeDevice(client, phone.token, phone.device_id, cursor=phone.cursor, targets=set(phone.targets))
    behind.records = dict(phone.records)
    phone.pull_all()
    assert phone.ids("followup") == set()
    reassign(client, world, revisit["id"], "cadre")
    # Pulled in between: lost, then back. Not pulled in between: the tombstone, then the follow-up.
    assert followup_changes(phone.pull_all(), revisit["id"]) == [("upsert", str(world.users["cadre"]))]
    assert followup_changes(behind.pull_all(), revisit["id"]) == [
        ("delete", None),
        ("upsert", str(world.users["cadre"])),
    ]
    assert followup_changes(other_phone.pull_all(), revisit["id"]) == [("delete", None)]
    fresh = device(client, "cadre", PASSWORD)  # a new phone pulls everything from 0
    fresh.pull_all()
    for p in (phone, behind, fresh):
        assert p.ids("followup") == {revisit["id"]}
    assert other_phone.ids("followup") == set()


def test_given_away_and_back_in_one_transaction_the_followup_stays(app, client, world):
    """The tombstone is numbered before the record's own row, even when the record changed earlier in the
    same transaction (its row noted first): given away and back, it stays on the phone."""
    phone, other_phone = device(client, "cadre", PASSWORD), device(client, "other_cadre", PASSWORD)
    revisit = revisit_of_cadre(client, world)
    phone.pull_all()
    other_phone.pull_all()
    boss = Actor(world.users["supervisor"], Role.supervisor)
    with app.app_context(), db.session_scope() as session:
        followup_id = uuid.UUID(revisit["id"])
        followup = followups.get_followup(session, boss, followup_id)
        followup.title += "（复核）"
        session.flush()
        followups.reassign_followup(
            session, boss, followup_id, {"assignee_id": world.users["other_cadre"], "version": 1}
        )
        followups.reassign_followup(session, boss, followup_id, {"assignee_id": world.users["cadre"], "version": 2})
    cadre = str(world.users["cadre"])
    assert followup_changes(phone.pull_all(), revisit["id"]) == [("delete", None), ("upsert", cadre)]
    assert followup_changes(other_phone.pull_all(), revisit["id"]) == [("delete", None)]
    assert phone.ids("followup") == {revisit["id"]} and other_phone.ids("followup") == set()


def test_the_device_library_drops_a_reassigned_followup_from_its_cache(client, world, tmp_path):
    """client_sync applies the pulled pages: the follow-up leaves the old assignee's cache."""
    revisit = revisit_of_cadre(client, world)
    phone = device(client, "cadre", PASSWORD)
    store = Store(tmp_path / "phone.db")

    def sync() -> list[str]:
        while True:
            r = phone.pull()
            assert r.status_code == 200, r.json
            cache.apply_page(store, r.json, str(world.users["cadre"]))
            phone.cursor = r.json["cursor"]
            phone.targets |= {str(t) for t in r.json["complete_targets"]}
            if not r.json["has_more"]:
                return [f["id"] for f in cache.entities(store, "followup")]

    assert sync() == [revisit["id"]]
    reassign(client, world, revisit["id"], "other_cadre")
    assert sync() == []
