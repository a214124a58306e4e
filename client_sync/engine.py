"""The sync engine: three lanes run in order — push the notes, pull what changed, upload the files.

Each lane stores its progress in the local database as it goes (a batch's answer, a page with
its cursor, an upload's URL), so a process killed at any point resumes where it stopped.
Notes never wait for files: the upload lane runs last and its failures never undo the others.
``stop`` (a threading.Event) and ``max_batches`` end a lane early between two steps, for tests
that interrupt a sync and for callers that keep a sync short (a push batch already sent when
``stop`` is set is still answered and recorded).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client_sync import cache, outbox
from client_sync.errors import (
    ApiError,
    CursorExpired,
    LoginRequired,
    ProtocolError,
    SequenceGap,
    ServerUnavailable,
    StoreError,
    TransportError,
)
from client_sync.store import UNSENT, Store, dumps, now_iso
from client_sync.transport import Transport
from client_sync.tus import TusClient
from schemas.sync import BATCH_MAX, PULL_LIMIT_DEFAULT, VERSIONED_KINDS, PushSchema

BATCH_SIZE = 200
BATCH_BYTES = 2 * 1024 * 1024  # well under the server's MAX_CONTENT_LENGTH (8 MB)
MISSING_MAX = 1000  # hashes per /attachments/missing request (the schema's limit)


@dataclass(frozen=True)
class Progress:
    """One step of a sync: ``lane`` is push, pull or upload; ``done`` of ``total`` (None if unknown)."""

    lane: str
    done: int
    total: int | None = None
    detail: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass
class LaneReport:
    lane: str
    ok: bool = True
    steps: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    error_code: str | None = None

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def _note_needs_login(store: Store) -> None:
    store.set(needs_login=True)


# Batches in flight at once: while the server stores one, the next is already read, sent and
# validated, so the device and the server's second worker are not idle meanwhile (a third of a
# sync's time on one device; docs/sync-protocol.md, "Pipelined pushes").
PIPELINE = 2


@dataclass
class _Sent:
    """A push request on its way: its changes, and whether an unanswered batch went before it."""

    batch: list[dict[str, Any]]
    seqs: list[int]
    answer: Future[dict[str, Any]]
    behind: bool


def _may_follow(batch: list[dict[str, Any]], start: int) -> bool:
    """Whether `batch` may go out before the batch ahead of it is answered: only queued new records.

    An edit waits, because the answer before it may re-base it (a refused or conflicting change
    of the same record; outbox.recompute_versions).
    """
    return (
        bool(batch)
        and batch[0]["seq"] == start
        and all(r["kind"] not in VERSIONED_KINDS and r["status"] in UNSENT for r in batch)
    )


def push(
    store: Store,
    transport: Transport,
    *,
    batch_size: int = BATCH_SIZE,
    max_bytes: int = BATCH_BYTES,
    max_batches: int | None = None,
    stop: threading.Event | None = None,
    progress: ProgressFn | None = None,
    pipeline: int = PIPELINE,
) -> LaneReport:
    """Push the outbox in seq order, in batches, until it is empty (or stopped).

    Up to `pipeline` batches are in flight: the server applies a batch only after the one before
    it (a batch that overtakes its predecessor is refused with sequence_gap and sent again), and
    answers are recorded in seq order. The local store is only touched from this thread.
    """
    report = LaneReport("push")
    device_id = store.device_id
    batch_size = max(1, min(batch_size, BATCH_MAX))
    resend_from: int | None = None  # after a sequence_gap: the seq the server asked for
    gaps = 0
    total = outbox.queue_depth(store)
    done = 0
    inflight: deque[_Sent] = deque()

    def send(start: int, behind: bool) -> bool:
        batch = outbox.next_batch(store, start=start, limit=batch_size, max_bytes=max_bytes)
        if behind and not _may_follow(batch, start):
            return False
        if not batch or batch[0]["seq"] != start:
            raise ProtocolError(f"The server asks for seq {start}, which this device no longer holds.")
        seqs = [row["seq"] for row in batch]
        body = {
            "device_id": device_id,
            # What waits to be acknowledged, this batch included and those still out before it not.
            "queue_depth": outbox.queue_depth(store) - sum(len(x.seqs) for x in inflight),
            "changes": [outbox.wire(r) for r in batch],
        }
        errors = PushSchema().validate(body)
        if errors:
            raise StoreError(f"Outbox changes {seqs[0]}–{seqs[-1]} do not pass the push schema: {errors}")
        outbox.mark_sent(store, seqs)
        inflight.append(_Sent(batch, seqs, pool.submit(transport.post_json, "/api/v1/sync/push", body), behind))
        return True

    def record(sent: _Sent, answer: dict[str, Any]) -> None:
        nonlocal resend_from, done
        counts = outbox.apply_results(store, sent.batch, answer)
        for key, n in counts.items():
            report.add(key, n)
        report.steps += 1
        seqs = sent.seqs
        if resend_from is not None:
            after = outbox.first_unsent(store)
            resend_from = seqs[-1] + 1
            if after is None or resend_from >= after:
                resend_from = None
        elif not any(isinstance(r, dict) and r.get("seq") == seqs[0] for r in answer["results"]):
            raise ProtocolError(f"The server answered nothing for seq {seqs[0]}: {str(answer)[:200]}")
        done += sum(counts[k] for k in ("acknowledged", "needs_attention", "conflict"))
        if progress:
            progress(Progress("push", min(done, total) if total else done, max(total, done), f"seq {seqs[-1]}"))

    def fail(sent: _Sent, error: ApiError | TransportError) -> None:
        reason = error.as_reason() if isinstance(error, ApiError) else {"code": "network", "message": str(error)}
        outbox.mark_unsent(store, sent.seqs, reason)

    def drain(*, quietly: bool) -> None:
        """Wait for every request still out and record its answer, or put its changes back."""
        while inflight:
            later = inflight.popleft()
            try:
                record(later, later.answer.result())
            except (ApiError, TransportError) as e:
                fail(later, e)
            except (ProtocolError, StoreError):
                if not quietly:
                    raise

    with ThreadPoolExecutor(max_workers=max(1, pipeline), thread_name_prefix="push") as pool:
        try:
            while True:
                while len(inflight) < max(1, pipeline) and not (stop is not None and stop.is_set()):
                    if max_batches is not None and report.steps + len(inflight) >= max_batches:
                        break
                    if inflight:
                        if resend_from is not None or not send(inflight[-1].seqs[-1] + 1, behind=True):
                            break
                        continue
                    start = resend_from if resend_from is not None else outbox.first_unsent(store)
                    if start is None:
                        break
                    send(start, behind=False)
                if not inflight:
                    break
                sent = inflight.popleft()
                try:
                    answer = sent.answer.result()
                except (ApiError, TransportError) as error:
                    fail(sent, error)
                    # What was sent behind it is answered first (it may have been stored: the
                    # error may have lost only the answer), then the error is dealt with.
                    drain(quietly=False)
                    if isinstance(error, SequenceGap):
                        if sent.behind:
                            continue  # it overtook the batch before it: sent again, in its turn
                        gaps += 1
                        if gaps > 3 or error.expected_seq < 1 or error.expected_seq == sent.seqs[0]:
                            raise ProtocolError(f"The server keeps asking for seq {error.expected_seq}.") from error
                        resend_from = error.expected_seq
                        continue
                    if isinstance(error, ApiError):
                        if error.status == 413 and batch_size > 1:
                            batch_size = max(1, len(sent.batch) // 2)
                            continue
                        if isinstance(error, LoginRequired):
                            _note_needs_login(store)
                    raise error from None
                record(sent, answer)
        finally:
            # Leaving on an error with requests still out: each is waited for, and its answer kept
            # where it can be (what is not stays 'sent', and goes again next time: the server
            # answers a change it already applied with the stored result).
            drain(quietly=True)
    return report


def pull(
    store: Store,
    transport: Transport,
    *,
    limit: int = PULL_LIMIT_DEFAULT,
    max_pages: int | None = None,
    stop: threading.Event | None = None,
    progress: ProgressFn | None = None,
) -> LaneReport:
    """Pull pages until has_more is false; a 410 rebuilds the cache from cursor 0 (once)."""
    report = LaneReport("pull")
    user_id = (store.get("user") or {}).get("id")
    rebuilt = False
    while not (stop is not None and stop.is_set()) and (max_pages is None or report.steps < max_pages):
        body = {
            "cursor": str(store.get("cursor", "0")),
            "limit": limit,
            "targets": cache.complete_targets(store),
            "backfill": store.get("backfill"),
        }
        try:
            page = transport.post_json("/api/v1/sync/pull", body)
        except CursorExpired as e:
            if rebuilt:
                raise ProtocolError("The server refused cursor 0 as expired.") from e
            cache.reset(store)
            rebuilt = True
            report.add("rebuilt")
            continue
        except LoginRequired:
            _note_needs_login(store)
            raise
        report.add("changes", cache.apply_page(store, page, user_id))
        report.steps += 1
        if progress:
            progress(Progress("pull", report.counts["changes"], None, f"page {report.steps}"))
        if not page["has_more"]:
            break
    return report


def _missing(transport: Transport, hashes: list[str]) -> set[str]:
    """Which of these files the server lacks."""
    lacking: set[str] = set()
    for i in range(0, len(hashes), MISSING_MAX):
        answer = transport.post_json("/api/v1/attachments/missing", {"sha256": hashes[i : i + MISSING_MAX]})
        listed = answer.get("missing", answer.get("sha256"))
        if not isinstance(listed, list):
            raise ProtocolError(f"/attachments/missing answered {str(answer)[:200]}")
        lacking.update(str(h) for h in listed)
    return lacking


def _file_state(store: Store, sha256: str, **values: Any) -> None:
    sets = ", ".join(f"{k} = ?" for k in values)
    with store.transaction() as db:
        db.execute(f"UPDATE files SET {sets}, updated_at = ? WHERE sha256 = ?", [*values.values(), now_iso(), sha256])


def upload(
    store: Store,
    transport: Transport,
    tus: TusClient,
    *,
    stop: threading.Event | None = None,
    progress: ProgressFn | None = None,
) -> LaneReport:
    """Upload the files the server lacks, one by one; a refused file never stops the others."""
    report = LaneReport("upload")
    pending = store.rows("SELECT * FROM files WHERE status = 'pending' ORDER BY created_at, sha256")
    if not pending:
        return report
    try:
        lacking = _missing(transport, [f["sha256"] for f in pending])
    except LoginRequired:
        _note_needs_login(store)
        raise
    for n, f in enumerate(pending, start=1):
        if stop is not None and stop.is_set():
            break
        if f["sha256"] not in lacking:
            _file_state(store, f["sha256"], status="uploaded", reason=None)
            report.add("present")
            continue
        path = Path(f["path"])
        if not path.is_file():
            _file_state(store, f["sha256"], status="lost", reason=dumps({"code": "file_lost"}))
            report.add("lost")
            continue

        def created(url: str, sha256: str = f["sha256"]) -> None:
            _file_state(store, sha256, upload_url=url)

        def moved(offset: int, length: int, name: str = f["filename"], n: int = n) -> None:
            if progress:
                progress(Progress("upload", offset, length, f"{n}/{len(pending)} {name}"))

        try:
            result = tus.upload(
                path,
                length=int(f["size"]),
                metadata={"sha256": f["sha256"], "filename": f["filename"], "filetype": f["content_type"]},
                url=f["upload_url"],
                on_created=created,
                progress=moved,
                stop=stop,
            )
        except LoginRequired:
            _note_needs_login(store)
            raise
        except TransportError as e:
            _file_state(
                store,
                f["sha256"],
                attempts=int(f["attempts"]) + 1,
                reason=dumps({"code": "network", "message": str(e)}),
            )
            raise
        except ApiError as e:
            # Refused for good (too large, wrong type …): keep the reason, go on with the next file.
            status = "refused" if e.status in (413, 415, 422) else "pending"
            _file_state(store, f["sha256"], status=status, attempts=int(f["attempts"]) + 1, reason=dumps(e.as_reason()))
            report.add("refused")
            report.ok = False
            report.error, report.error_code = e.message, e.code
            continue
        if result.complete:
            _file_state(store, f["sha256"], status="uploaded", upload_url=None, reason=None)
            report.add("uploaded")
        report.steps += 1
    return report


@dataclass
class SyncReport:
    """What one sync did, lane by lane, and what is left."""

    lanes: list[LaneReport] = field(default_factory=list)
    pending_changes: int = 0
    pending_files: int = 0

    @property
    def ok(self) -> bool:
        return all(lane.ok for lane in self.lanes)

    @property
    def done(self) -> bool:
        """Nothing left to send and every lane finished."""
        return self.ok and self.pending_changes == 0 and self.pending_files == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "done": self.done,
            "pending_changes": self.pending_changes,
            "pending_files": self.pending_files,
            "lanes": [
                {
                    "lane": x.lane,
                    "ok": x.ok,
                    "steps": x.steps,
                    "counts": x.counts,
                    "error": x.error,
                    "error_code": x.error_code,
                }
                for x in self.lanes
            ],
        }


def _error_code(error: Exception) -> str:
    if isinstance(error, ServerUnavailable):
        return "unavailable"
    return "network" if isinstance(error, TransportError) else "protocol"


def pending_files(store: Store) -> int:
    return int(store.scalar("SELECT count(*) FROM files WHERE status = 'pending'"))


def sync(
    store: Store,
    transport: Transport,
    tus: TusClient,
    *,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
    stop: threading.Event | None = None,
    progress: ProgressFn | None = None,
    lanes: tuple[str, ...] = ("push", "pull", "upload"),
) -> SyncReport:
    """Push, then pull, then upload. A lane that fails is reported and, if the network is the
    cause, the later lanes are skipped (they would fail the same way). LoginRequired is raised:
    nothing can go on until the cadre logs in again."""
    if store.get("needs_login"):
        raise LoginRequired("The server refused this device's token; log in again.", code="needs_login")
    if not transport.token:
        raise LoginRequired("Not logged in on this device.", code="not_logged_in")
    report = SyncReport()
    runners: dict[str, Callable[[], LaneReport]] = {
        "push": lambda: push(
            store, transport, batch_size=batch_size, max_batches=max_batches, stop=stop, progress=progress
        ),
        "pull": lambda: pull(store, transport, stop=stop, progress=progress),
        "upload": lambda: upload(store, transport, tus, stop=stop, progress=progress),
    }
    for name in lanes:
        try:
            report.lanes.append(runners[name]())
        except LoginRequired:
            raise
        except (TransportError, ApiError, ProtocolError) as e:
            code = e.code if isinstance(e, ApiError) else _error_code(e)
            report.lanes.append(LaneReport(name, ok=False, error=str(e), error_code=code))
            if isinstance(e, ApiError) and e.status == 426:
                store.set(upgrade_required=True)
            if isinstance(e, TransportError):
                break
    store.set(last_sync_at=now_iso())
    report.pending_changes = outbox.queue_depth(store)
    report.pending_files = pending_files(store)
    return report
