"""Just enough of the sync server (docs/sync-protocol.md) to drive the device's engine into every
corner: a last applied seq with stored results, rejections, conflicts, gaps, paged pulls, 410,
and a tus endpoint. Tests of the real server's behaviour run against the real server
(test_end_to_end.py); this fake is for the answers that are hard to provoke there.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

from tests.client.loopback import DROP, Answer, Request, error, reply

TOKEN = "fake-token"
USER = {"id": str(uuid.uuid4()), "username": "cadre", "display_name": "干部甲", "role": "cadre"}


class FakeSync:
    def __init__(self) -> None:
        self.last_seq = 0
        self.stored: dict[int, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.applied: list[dict[str, Any]] = []  # every change applied, in order
        self.forced: list[Any] = []  # answers to give before handling the next requests (None: handle it)
        self.reject: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda change: None
        self.log: list[dict[str, Any]] = []  # the change log that pulls read
        self.min_cursor = 0
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.drop_patch_after: int | None = None  # store this many bytes of the next PATCH, then drop
        self.corrupt_next_patch = False
        self.lose_next_push_answer = False  # commit the push, then drop the connection
        self.resolved: list[tuple[str, str]] = []
        self.conflicts: dict[str, str] = {}
        # Pushes arrive on threads of their own (the engine keeps two in flight): one at a time here,
        # with hooks around each to order them as a test needs.
        self.lock = threading.Lock()
        self.before_push: Callable[[dict[str, Any]], None] = lambda body: None
        self.after_push: Callable[[dict[str, Any]], None] = lambda body: None

    # Plumbing -----------------------------------------------------------------------------

    def __call__(self, request: Request) -> Any:
        if self.forced:
            answer = self.forced.pop(0)
            if answer is not None:
                return answer
        path = request.path.split("?")[0]
        if path == "/api/v1/auth/login":
            return reply(
                200, {"token": TOKEN, "token_type": "Bearer", "device_id": request.json()["device_id"], "user": USER}
            )
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return error(401, "invalid_token", "The token is invalid, expired or revoked; log in again.")
        if path == "/api/v1/sync/push":
            body = request.json()
            self.before_push(body)
            with self.lock:
                answer = self.push(body)
            self.after_push(body)
            if self.lose_next_push_answer:
                self.lose_next_push_answer = False
                return DROP
            return answer
        if path == "/api/v1/sync/pull":
            return self.pull(request.json())
        if path == "/api/v1/attachments/missing":
            return reply(200, {"missing": [h for h in request.json()["sha256"] if h not in self.files]})
        if path.startswith("/api/v1/sync/conflicts/") and path.endswith("/resolve"):
            conflict_id, resolution = path.split("/")[-2], request.json()["resolution"]
            self.resolved.append((conflict_id, resolution))
            if resolution == "use_device":  # the device's edit applies on top: a new version, pulled later
                record_id = self.conflicts[conflict_id]
                self.versions[record_id] += 1
                self.publish("visit", {"id": record_id, "version": self.versions[record_id]})
            return reply(
                200, {"id": path.split("/")[-2], "status": "resolved", "resolution": request.json()["resolution"]}
            )
        if path.startswith("/api/v1/uploads/"):
            return self.tus(request, path.removeprefix("/api/v1/uploads/"))
        return error(404, "not_found")

    # Push ---------------------------------------------------------------------------------

    def push(self, body: dict[str, Any]) -> Answer:
        changes = body["changes"]
        expected = self.last_seq + 1
        new = [c for c in changes if c["seq"] >= expected]
        if new and new[0]["seq"] != expected:
            return error(409, "sequence_gap", details={"expected_seq": expected})
        results = [self.stored.get(c["seq"], {"seq": c["seq"], "status": "applied"}) | {"replayed": True}
                   for c in changes if c["seq"] < expected]  # fmt: skip
        for c in new:
            result = {"seq": c["seq"], "record_id": c["record_id"], **self.apply(c)}
            self.stored[c["seq"]] = result
            self.last_seq = c["seq"]
            results.append(result)
        return reply(200, {"last_seq": self.last_seq, "results": results, "upgrade_required": False})

    def apply(self, c: dict[str, Any]) -> dict[str, Any]:
        refused = self.reject(c)
        if refused:
            return {"status": "rejected", **refused}
        kind, rid = c["kind"], c["record_id"]
        if kind in ("visit.create", "problem.create"):
            if kind == "problem.create" and c["payload"]["visit_id"] not in self.versions:
                return {"status": "rejected", "code": "not_found", "message": "Visit not found."}
            self.versions.setdefault(rid, 1)
            for p in c["payload"].get("problems", []):
                self.versions.setdefault(p["id"], 1)
            self.applied.append(c)
            return {"status": "applied", "version": self.versions[rid]}
        if kind == "attachment.add":
            self.applied.append(c)
            return {"status": "applied"}
        if rid not in self.versions:
            return {"status": "rejected", "code": "not_found", "message": "Not found."}
        if c["base_version"] != self.versions[rid]:
            conflict_id = str(uuid.uuid4())
            self.conflicts[conflict_id] = rid
            return {
                "status": "conflict",
                "conflict_id": conflict_id,
                "server_version": self.versions[rid],
                "code": "version_conflict",
                "message": "The record changed on the server; both versions are kept.",
            }
        self.applied.append(c)
        if kind == "visit.delete":
            del self.versions[rid]
            return {"status": "applied"}
        self.versions[rid] += 1
        return {"status": "applied", "version": self.versions[rid]}

    def edit_on_server(self, record_id: str) -> None:
        """Someone else changed the record: its version moves on."""
        self.versions[record_id] += 1

    # Pull ---------------------------------------------------------------------------------

    def publish(self, entity: str, data: dict[str, Any], op: str = "upsert") -> None:
        self.log.append({"entity": entity, "id": data["id"], "op": op, "change_no": len(self.log) + 1,
                         "data": None if op == "delete" else data})  # fmt: skip

    def pull(self, body: dict[str, Any]) -> Answer:
        cursor, limit = int(body["cursor"]), int(body["limit"])
        if cursor > len(self.log) or (cursor and cursor < self.min_cursor):
            return error(410, "cursor_expired", "Pull from 0.")
        page = [c for c in self.log if c["change_no"] > cursor][:limit]
        more = bool(page) and page[-1]["change_no"] < len(self.log)
        return reply(200, {"changes": page, "cursor": str(page[-1]["change_no"] if page else cursor), "has_more": more,
                           "complete_targets": [], "removed_targets": [], "backfill": None})  # fmt: skip

    # tus ----------------------------------------------------------------------------------

    def tus(self, request: Request, upload_id: str) -> Any:
        if request.headers.get("Tus-Resumable") != "1.0.0":
            return error(412, "precondition_failed")
        if request.method == "POST" and not upload_id:
            new = uuid.uuid4().hex
            meta = dict(item.split(" ") for item in request.headers["Upload-Metadata"].split(","))
            meta = {k: base64.b64decode(v).decode() for k, v in meta.items()}
            self.uploads[new] = {"length": int(request.headers["Upload-Length"]), "data": b"", "meta": meta}
            return 201, {"Location": f"/api/v1/uploads/{new}", "Tus-Resumable": "1.0.0"}, b""
        upload = self.uploads.get(upload_id)
        if upload is None:
            return error(404, "not_found")
        offset = {"Upload-Offset": str(len(upload["data"])), "Tus-Resumable": "1.0.0"}
        if request.method == "HEAD":
            return 200, offset | {"Upload-Length": str(upload["length"])}, b""
        if request.method == "DELETE":
            del self.uploads[upload_id]
            return 204, {"Tus-Resumable": "1.0.0"}, b""
        if int(request.headers["Upload-Offset"]) != len(upload["data"]):
            return error(409, "offset_mismatch", headers=offset)
        algorithm, digest = request.headers["Upload-Checksum"].split(" ")
        if self.corrupt_next_patch:
            self.corrupt_next_patch = False
            return error(460, "checksum_mismatch")
        if base64.b64decode(digest) != hashlib.new(algorithm, request.body).digest():
            return error(460, "checksum_mismatch")
        if self.drop_patch_after is not None:
            upload["data"] += request.body[: self.drop_patch_after]
            self.drop_patch_after = None
            return DROP
        upload["data"] += request.body
        if len(upload["data"]) == upload["length"]:
            self.files[hashlib.sha256(upload["data"]).hexdigest()] = upload["data"]
        return 204, {"Upload-Offset": str(len(upload["data"])), "Tus-Resumable": "1.0.0"}, b""
