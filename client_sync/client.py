"""The public face of the device side: one Client per install (its home directory) and server."""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

import requests

from client_sync import cache, engine, fix, local, notes, outbox
from client_sync.engine import BATCH_SIZE, ProgressFn, SyncReport
from client_sync.errors import ApiError, LoginRequired, NoteInvalid, UsageError
from client_sync.store import Store, loads
from client_sync.transport import Backoff, Transport
from client_sync.tus import TusClient
from client_sync.version import __version__


class Client:
    """A device: its local store under `home` and the server it syncs with.

    Everything but ``login``, ``sync`` (and its lanes) and ``resolve_conflict`` works offline.
    Note ids may be given as a unique prefix of at least 4 characters.
    """

    def __init__(
        self,
        home: str | Path,
        *,
        server_url: str | None = None,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        retries: int = 4,
        backoff: Backoff | None = None,
        chunk_size: int = 512 * 1024,
        checksum: str = "sha256",
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.home = Path(home)
        self.store = Store(self.home / "client.db")
        self.files_dir = self.home / "files"
        if server_url and server_url != self.store.get("server_url"):
            self.store.set(server_url=server_url)
        self.transport = Transport(
            self.store.get("server_url"),
            token=self.store.get("token"),
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            session=session,
            sleep=sleep,
        )
        self.tus = TusClient(self.transport, chunk_size=chunk_size, checksum=checksum)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def device_id(self) -> str:
        return self.store.device_id

    # Online: login -------------------------------------------------------------------------

    def login(
        self, username: str, password: str, *, server_url: str | None = None, device_name: str | None = None
    ) -> dict[str, Any]:
        """Log in; the token is bound to this install's device id and kept. Returns the user."""
        if server_url:
            self.transport.base_url = server_url
        previous = self.store.get("user") or {}
        if previous and previous.get("username") != username and outbox.queue_depth(self.store):
            raise UsageError(
                f"This device still holds unsent changes of {previous.get('username')};"
                " sync them before another user logs in.",
                zh=f"本机还有 {previous.get('username')} 未上传的记录，请先同步，再换用户登录。",
            )
        answer = self.transport.post_json(
            "/api/v1/auth/login",
            {
                "username": username,
                "password": password,
                "device_id": self.device_id,
                "device_name": device_name or platform.node()[:120] or None,
                "app_version": __version__,
            },
            auth=False,
        )
        user = answer.get("user") or {}
        with self.store.transaction() as db:
            if previous and previous.get("id") != user.get("id"):
                db.execute("DELETE FROM cache")
                db.execute("DELETE FROM known_targets")
                self.store.put(db, cursor="0", backfill=None)
            self.store.put(
                db,
                token=answer["token"],
                token_expires_at=answer.get("expires_at"),
                user=user,
                server_url=self.transport.base_url,
                needs_login=False,
            )
        self.transport.token = answer["token"]
        return dict(user)

    # Offline: notes ------------------------------------------------------------------------

    def find_note(self, note_id: str) -> str:
        """The full id of a note from its id or a unique prefix."""
        return local.find_note_id(self.store, note_id)

    def add_note(
        self,
        *,
        target_id: str,
        summary: str,
        service_categories: Iterable[str],
        campaign_id: str | None = None,
        visited_at: str | None = None,
        problems: Iterable[dict[str, Any] | str] = (),
        files: Iterable[str | Path] = (),
        location_text: str | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
    ) -> dict[str, Any]:
        """Write a note (with problems and photos) into the outbox. Returns ``{"id", "seq", "note"}``.

        ``problems``: ``{"category", "description"}`` dicts or ``"融资:…"`` strings. ``files`` are
        copied into the device's store and referenced by their SHA-256.
        """
        campaign_id = campaign_id or self.default_campaign()
        self._check_refs(target_id, campaign_id)
        items = _problems(problems)
        kept = [local.keep_file(self.files_dir, f) for f in files]
        payload = notes.new_note(
            target_id=target_id,
            campaign_id=campaign_id,
            summary=summary,
            service_categories=list(service_categories),
            visited_at=visited_at,
            problems=items,
            attachments=[local.attachment_ref(f) for f in kept],
            location_text=location_text,
            latitude=latitude,
            longitude=longitude,
        )
        seq = local.add_note(self.store, payload, kept)
        return {"id": payload["id"], "seq": seq, "note": payload}

    def edit_note(self, note_id: str, **fields: Any) -> dict[str, Any]:
        """Queue an edit of a note's fields (summary, service_categories, visited_at, location …)."""
        note_id = self.find_note(note_id)
        return {"id": note_id, "seq": local.edit_note(self.store, note_id, fields)}

    def add_problem(self, note_id: str, category: str, description: str) -> dict[str, Any]:
        note_id = self.find_note(note_id)
        problem_id, seq = local.add_problem(self.store, note_id, category, description)
        return {"id": note_id, "problem_id": problem_id, "seq": seq}

    def attach(
        self, note_id: str, path: str | Path, *, caption: str | None = None, content_type: str | None = None
    ) -> dict[str, Any]:
        """Keep a photo or file on the device and queue its reference on the note."""
        note_id = self.find_note(note_id)
        kept = local.keep_file(self.files_dir, path, content_type)
        ref, seq = local.attach(self.store, note_id, kept, caption)
        return {"id": note_id, "attachment": ref, "seq": seq}

    def delete_note(self, note_id: str) -> dict[str, Any]:
        note_id = self.find_note(note_id)
        return {"id": note_id, "seq": local.delete_note(self.store, note_id)}

    def fix(
        self,
        note_id: str,
        *,
        seq: int | None = None,
        problems: Iterable[dict[str, Any] | str] | None = None,
        payload: dict[str, Any] | None = None,
        **edits: Any,
    ) -> dict[str, Any]:
        """Correct a change the server refused and queue it again as a new change (a new seq).

        ``edits``: note fields (summary, service_categories, target_id, campaign_id, visited_at,
        location_text …); ``problems`` replaces the note's problems; ``payload`` replaces the
        refused change's payload whole (as JSON edited by hand).
        """
        note_id = self.find_note(note_id)
        items = None if problems is None else _problems(problems)
        if "target_id" in edits or "campaign_id" in edits:
            self._check_refs(edits.get("target_id"), edits.get("campaign_id"))
        return {"id": note_id, **fix.fix(self.store, note_id, seq=seq, edits=edits, problems=items, payload=payload)}

    def refused_payload(self, note_id: str, seq: int | None = None) -> dict[str, Any]:
        """The payload to correct by hand for the note's first refused change (or `seq`)."""
        note_id = self.find_note(note_id)
        changes = [c for c in fix.refused(self.store, note_id) if seq is None or c["seq"] == seq]
        if not changes:
            raise UsageError(f"Nothing to fix on note {note_id}.", zh="这条记录没有需要处理的问题。")
        if changes[0]["kind"] == "visit.create":
            return dict(loads(self.store.rows("SELECT data FROM notes WHERE id = ?", [note_id])[0]["data"]))
        return dict(loads(changes[0]["payload"]))

    # Online: conflicts ---------------------------------------------------------------------

    def resolve_conflict(self, note_id: str, resolution: str) -> dict[str, Any]:
        """Settle the note's open conflicts on the server, oldest first: ``keep_server`` or ``use_device``."""
        note_id = self.find_note(note_id)
        rows = self.store.rows(
            "SELECT conflict_id FROM outbox WHERE note_id = ? AND status = 'conflict' AND resolution IS NULL"
            " ORDER BY seq",
            [note_id],
        )
        if not rows:
            raise UsageError(f"Note {note_id} has no open conflict.", zh="这条记录没有待处理的冲突。")
        settled = []
        for row in rows:
            conflict_id = row["conflict_id"]
            try:
                path = f"/api/v1/sync/conflicts/{conflict_id}/resolve"
                answer = self.transport.post_json(path, {"resolution": resolution})
            except LoginRequired:
                self.store.set(needs_login=True)
                raise
            except ApiError as e:
                if e.code != "already_resolved":
                    raise
                answer = {"resolution": "already resolved"}
            fix.close_conflict(self.store, conflict_id, str(answer.get("resolution") or resolution))
            settled.append(conflict_id)
        return {"id": note_id, "conflicts": settled, "resolution": resolution}

    # Reading -----------------------------------------------------------------------------

    def targets(self, *, portfolio_only: bool = False, query: str | None = None) -> list[dict[str, Any]]:
        """Targets pulled to the device (``in_portfolio`` marks the cadre's own 包挂 targets)."""
        user_id = (self.store.get("user") or {}).get("id")
        mine = {
            e.get("target_id") for e in cache.entities(self.store, "portfolio_entry") if e.get("user_id") == user_id
        }
        out = []
        for t in cache.entities(self.store, "target"):
            t = {**t, "in_portfolio": t.get("id") in mine}
            if portfolio_only and not t["in_portfolio"]:
                continue
            if query and query not in str(t.get("name", "")) and not str(t.get("id", "")).startswith(query):
                continue
            out.append(t)
        return sorted(out, key=lambda t: (not t["in_portfolio"], str(t.get("name", ""))))

    def find_target(self, text: str) -> str:
        """A target id from its id, a unique id prefix, or its exact (or unique partial) name."""
        found = self.targets(query=text)
        exact = [t for t in found if t.get("name") == text or t.get("id") == text]
        mine = [t for t in found if t["in_portfolio"]]
        for candidates in (exact, found, mine):  # the cadre's own targets win a tie
            if len(candidates) == 1:
                return str(candidates[0]["id"])
        if not found and len(text) == 36:
            return text  # an id the device has not pulled: the schema and the server decide
        raise UsageError(
            f"{len(found)} targets match {text!r}.", zh=f"有 {len(found)} 个走访对象与“{text}”相符，请写得更具体。"
        )

    def campaigns(self) -> list[dict[str, Any]]:
        return cache.entities(self.store, "campaign")

    def default_campaign(self) -> str:
        """The one campaign running today, if exactly one is."""
        today = date.today().isoformat()
        running = [
            c
            for c in self.campaigns()
            if str(c.get("starts_on") or "") <= today and (not c.get("ends_on") or today <= str(c["ends_on"]))
        ]
        if len(running) != 1:
            raise UsageError(
                f"{len(running)} campaigns run today; say which one (campaign_id).",
                zh=f"今天有 {len(running)} 个活动在进行，请用 --campaign 指明是哪一个。",
            )
        return str(running[0]["id"])

    def _check_refs(self, target_id: str | None, campaign_id: str | None) -> None:
        """Refuse a target or campaign the device knows to be wrong; unknown ones go to the server."""
        known = {t["id"]: t for t in cache.entities(self.store, "target")}
        if target_id and known and target_id in known and known[target_id].get("active") is False:
            raise NoteInvalid("The target is no longer active.", {"target_id": ["The target is no longer active."]})
        if target_id and known and target_id not in known:
            raise NoteInvalid("No such target on this device.", {"target_id": ["No such target."]})
        campaigns = {c["id"] for c in self.campaigns()}
        if campaign_id and campaigns and campaign_id not in campaigns:
            raise NoteInvalid("No such campaign on this device.", {"campaign_id": ["No such campaign."]})

    def note(self, note_id: str) -> dict[str, Any]:
        """One note as the device holds it, with its status, changes and files."""
        note_id = self.find_note(note_id)
        found = [n for n in self._notes(note_id) if n["id"] == note_id]
        if not found:
            raise UsageError(f"Note {note_id} was not written on this device.", zh="这条记录不是在本机写的。")
        return found[0]

    def _notes(self, note_id: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE id = ?", [note_id]) if note_id else ("", [])
        rows = self.store.rows(f"SELECT * FROM notes {where} ORDER BY created_at, id", params)
        changes: dict[str, list[dict[str, Any]]] = {}
        for c in self.store.rows(
            "SELECT seq, note_id, kind, status, reason, attempts, resolution, conflict_id FROM outbox"
            + (" WHERE note_id = ?" if note_id else "")
            + " ORDER BY seq",
            params,
        ):
            changes.setdefault(c["note_id"], []).append(c | {"reason": loads(c["reason"])})
        files = {f["sha256"]: f for f in self.store.rows("SELECT sha256, status, reason FROM files")}
        names = {t["id"]: t.get("name") for t in cache.entities(self.store, "target")}
        out = []
        for row in rows:
            data = loads(row["data"])
            mine = changes.get(row["id"], [])
            status, behind = outbox.note_status(mine)
            attached = [files.get(a["sha256"], {"status": "pending"}) for a in data.get("attachments", [])]
            out.append(
                {
                    "id": row["id"],
                    "target_id": data.get("target_id"),
                    "target_name": names.get(data.get("target_id")),
                    "visited_at": data.get("visited_at"),
                    "summary": data.get("summary"),
                    "service_categories": data.get("service_categories", []),
                    "problems": data.get("problems", []),
                    "deleted": bool(row["deleted"]),
                    "status": status,
                    "reason": behind["reason"] if behind and status != "acknowledged" else None,
                    "seq": behind["seq"] if behind else None,
                    "kind": behind["kind"] if behind else None,
                    "conflict_id": behind["conflict_id"] if behind else None,
                    "changes": [
                        {k: c[k] for k in ("seq", "kind", "status", "reason", "attempts", "resolution")} for c in mine
                    ],
                    "attachments": {
                        "total": len(attached),
                        **{
                            s: sum(1 for f in attached if f["status"] == s)
                            for s in ("uploaded", "pending", "refused", "lost")
                        },
                    },
                }
            )
        return out

    def notes(self) -> list[dict[str, Any]]:
        return self._notes()

    def status(self) -> dict[str, Any]:
        """The device, the queue and every note written here with its status and reason."""
        listed = self._notes()
        counts = dict.fromkeys(outbox.STATUSES, 0)
        for n in listed:
            counts[n["status"]] += 1
        get = self.store.get
        return {
            "device_id": self.device_id,
            "server_url": get("server_url"),
            "user": get("user"),
            "logged_in": bool(get("token")) and not get("needs_login"),
            "needs_login": bool(get("needs_login")),
            "upgrade_required": bool(get("upgrade_required")),
            "cursor": get("cursor"),
            "last_sync_at": get("last_sync_at"),
            "last_push_at": get("last_push_at"),
            "last_pull_at": get("last_pull_at"),
            "queue_depth": outbox.queue_depth(self.store),
            "files_pending": engine.pending_files(self.store),
            "counts": counts,
            "notes": listed,
        }

    # Online: sync ------------------------------------------------------------------------

    def sync(
        self,
        *,
        progress: ProgressFn | None = None,
        stop: threading.Event | None = None,
        max_batches: int | None = None,
        batch_size: int = BATCH_SIZE,
        lanes: tuple[str, ...] = ("push", "pull", "upload"),
    ) -> SyncReport:
        """One sync: push the notes, pull, upload the files. Raises LoginRequired (the queue is kept)."""
        return engine.sync(
            self.store,
            self.transport,
            self.tus,
            batch_size=batch_size,
            max_batches=max_batches,
            stop=stop,
            progress=progress,
            lanes=lanes,
        )

    def sync_until_done(
        self,
        *,
        max_rounds: int = 50,
        progress: ProgressFn | None = None,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> SyncReport:
        """Sync again and again (backing off between rounds) until nothing is left or `max_rounds`.

        Rounds that fail for the network or a busy server are retried; a round that fails for a
        reason the server gave (other than the network) ends the loop, as does LoginRequired.
        """
        wait = backoff or Backoff(base=0.5, cap=10.0)
        report = SyncReport()
        for attempt in range(max_rounds):
            report = self.sync(progress=progress, stop=stop, batch_size=batch_size)
            if report.done or (stop is not None and stop.is_set()):
                return report
            if not all(_transient(lane.error_code) for lane in report.lanes):
                return report
            self.transport.sleep(wait.delay(attempt))
        return report


def _transient(code: str | None) -> bool:
    """A lane that succeeded, or failed only for the network or a busy server (worth another round)."""
    return code in (None, "network", "unavailable", "rate_limited", "internal_error") or str(code).startswith("http_5")


def _problems(problems: Iterable[dict[str, Any] | str]) -> list[dict[str, Any]]:
    """Problems given as dicts or as "融资:…" strings, each with a new client-made id."""
    return [
        notes.parse_problem(p) if isinstance(p, str) else notes.problem(p["category"], p["description"])
        for p in problems
    ]
