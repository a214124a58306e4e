"""Building blocks for sync tests: a device that speaks the protocol over the Flask test client."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from schemas.protocol import PROTOCOL_VERSION
from tests.factories import visit_note

CLIENT = {"X-Client-Protocol": str(PROTOCOL_VERSION), "X-Client-Version": "0.3.0"}


@dataclass
class FakeDevice:
    """Just enough of a device to drive the protocol: a seq counter, a cursor, known targets."""

    client: Any
    token: str
    device_id: str
    seq: int = 0
    cursor: str = "0"
    targets: set[str] = field(default_factory=set)
    records: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **CLIENT}

    def change(self, kind: str, record_id: str, payload: dict[str, Any] | None = None, base: int | None = None):
        self.seq += 1
        change = {"seq": self.seq, "kind": kind, "record_id": record_id, "payload": payload or {}}
        if base is not None:
            change["base_version"] = base
        return change

    def push(self, changes: list[dict[str, Any]], **kw: Any):
        body = {"device_id": self.device_id, "changes": changes, **kw}
        return self.client.post("/api/v1/sync/push", json=body, headers=self.headers)

    def pull(self, limit: int = 500, **kw: Any):
        body = {"cursor": self.cursor, "limit": limit, "targets": sorted(self.targets), **kw}
        return self.client.post("/api/v1/sync/pull", json=body, headers=self.headers)

    def pull_all(self, limit: int = 500) -> list[dict[str, Any]]:
        """Pull until nothing is left, applying pages like a device; returns every change seen."""
        seen: list[dict[str, Any]] = []
        backfill = None
        for _ in range(10_000):
            r = self.pull(limit, backfill=backfill)
            assert r.status_code == 200, r.get_json()
            page = r.json
            for c in page["changes"]:
                seen.append(c)
                key = (c["entity"], c["id"])
                if c["op"] == "delete":
                    self.records.pop(key, None)
                else:
                    self.records[key] = c["data"]
            self.cursor = page["cursor"]
            self.targets |= set(page["complete_targets"])
            self.targets -= set(page["removed_targets"])
            backfill = page["backfill"]
            if not page["has_more"]:
                return seen
        raise AssertionError("pull never finished")

    def ids(self, entity: str) -> set[str]:
        return {i for (e, i) in self.records if e == entity}


def device(client: Any, username: str, password: str) -> FakeDevice:
    device_id = str(uuid.uuid4())
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password, "device_id": device_id})
    assert r.status_code == 200, r.json
    return FakeDevice(client, r.json["token"], device_id)


def note_payload(world: Any, **kw: Any) -> tuple[str, dict[str, Any]]:
    note = visit_note(world, **kw)
    return note.pop("id"), note
