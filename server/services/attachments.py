"""Attachments: files stored once by the SHA-256 of their bytes, and the tus uploads that bring them.

Bytes live under the instance directory (attachments/ab/cd/<sha256>, uploads/<id>.part); the
database says what is there. A file is on disk (fsynced, renamed into place) before the row that
vouches for it commits, and an upload's offset commits only after its bytes are fsynced, so what
the server acknowledged survives a crash; a crash leaves at worst bytes no row refers to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
import re
import secrets
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from server.db.models import Attachment, Upload, VisitAttachment
from server.db.types import utcnow
from server.errors import ApiError, not_found
from server.services import visits
from server.services.actors import Actor

log = logging.getLogger(__name__)

# Upload-Checksum algorithms (tus checksum extension), by their tus names.
CHECKSUMS: dict[str, Callable[[bytes], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
FILENAME_MAX = 200  # uploads.filename
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_BLOCK = 1024 * 1024
_ID_IN_BATCH = 500  # bind parameters per IN (...)


@dataclass(frozen=True)
class Limits:
    """What an upload may be: at most `max_bytes`, of one of `types` (ATTACHMENT_MAX_BYTES, ATTACHMENT_TYPES)."""

    max_bytes: int
    types: tuple[str, ...]


class Storage:
    """Where the bytes are: the blob store and the partial files of uploads under one root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def blob_path(self, sha256: str) -> Path:
        return self.root / "attachments" / sha256[:2] / sha256[2:4] / sha256

    def part_path(self, upload_id: str) -> Path:
        return self.root / "uploads" / f"{upload_id}.part"

    def remove_part(self, upload_id: str) -> None:
        with suppress(FileNotFoundError):
            self.part_path(upload_id).unlink()


class UploadDiscarded(ApiError):
    """The upload was deleted (in the session) and cannot go on; commit, then drop its partial file."""


def is_sha256(value: str) -> bool:
    return bool(_SHA256.match(value))


def missing(session: Session, hashes: Iterable[str]) -> list[str]:
    """Which of `hashes` the server lacks the bytes of, in the order given, each once."""
    wanted = list(dict.fromkeys(hashes))
    have: set[str] = set()
    for i in range(0, len(wanted), _ID_IN_BATCH):
        batch = wanted[i : i + _ID_IN_BATCH]
        have.update(session.scalars(select(Attachment.sha256).where(Attachment.sha256.in_(batch))))
    return [h for h in wanted if h not in have]


def readable(session: Session, actor: Actor, sha256: str) -> Attachment:
    """The stored file `sha256`, if `actor` may read a visit that refers to it (else 404, as if absent)."""
    if is_sha256(sha256):
        refs = session.scalars(select(VisitAttachment.visit_id).where(VisitAttachment.sha256 == sha256).distinct())
        for visit_id in refs:
            try:
                visits.get_visit(session, actor, visit_id)
            except ApiError:  # not theirs to read (404) or not their role's (403): look at the next visit
                continue
            blob = session.get(Attachment, sha256)
            if blob is None:
                raise ApiError(404, "The file's bytes have not been uploaded yet (pending).", code="attachment_pending")
            return blob
    raise not_found("Attachment")


def store(
    session: Session, storage: Storage, data: bytes, content_type: str, uploaded_by: Actor | None = None
) -> Attachment:
    """Store `data` (e.g. a file that did not come through tus) and return its attachment row."""
    sha256 = hashlib.sha256(data).hexdigest()
    _install(storage, sha256, io.BytesIO(data), len(data))
    _record(session, sha256, len(data), content_type, uploaded_by.user_id if uploaded_by else None)
    blob = session.get(Attachment, sha256)
    assert blob is not None
    return blob


# --- tus uploads ---------------------------------------------------------------------------------


def create_upload(
    session: Session, storage: Storage, actor: Actor, *, length: int, metadata: dict[str, str], limits: Limits
) -> Upload:
    """A new upload of `length` bytes declared by its tus metadata (sha256, filename, filetype).

    Refused before a byte is sent when too large (413) or of a type not allowed (415). When the
    server holds these bytes already, the upload is complete at once: offset = length.
    """
    actor.require(*visits.WRITERS)
    if length > limits.max_bytes:
        raise ApiError(
            413,
            f"The file is {length} bytes; attachments may be at most {limits.max_bytes} bytes"
            f" ({limits.max_bytes / 1024 / 1024:g} MB).",
            code="file_too_large",
            details={"max_bytes": limits.max_bytes},
        )
    content_type = metadata.get("filetype", "").split(";")[0].strip().lower()
    if content_type not in limits.types:
        declared = f"'{content_type}'" if content_type else "no filetype"
        raise ApiError(
            415,
            f"Files of type {declared} are not accepted; declare filetype in Upload-Metadata,"
            f" one of: {', '.join(limits.types)}.",
            code="unsupported_file_type",
            details={"allowed": list(limits.types)},
        )
    sha256 = metadata.get("sha256", "").strip().lower()
    if not is_sha256(sha256):
        raise ApiError(
            422,
            "Upload-Metadata must declare sha256: the SHA-256 of the whole file, 64 hex digits.",
            errors={"sha256": ["A lowercase hex SHA-256 of the file is required."]},
        )
    if length == 0 and sha256 != EMPTY_SHA256:
        raise _mismatch(EMPTY_SHA256, sha256)
    now = utcnow()
    upload = Upload(
        id=secrets.token_hex(16),
        sha256=sha256,
        length=length,
        offset=0,
        filename=_filename(metadata.get("filename")),
        content_type=content_type,
        user_id=actor.user_id,
        device_id=actor.device_id,
        created_at=now,
        updated_at=now,
    )
    blob = session.get(Attachment, sha256)
    if blob is not None and blob.size == length:
        upload.offset, upload.completed_at = length, now  # nothing to send
    elif length == 0:
        _finish(session, storage, upload)
    session.add(upload)
    session.flush()
    return upload


def get_upload(session: Session, actor: Actor, upload_id: str, *, lock: bool = False) -> Upload:
    """The caller's own upload (another user's is not found); `lock` holds its row until commit."""
    actor.require(*visits.WRITERS)
    upload = None
    if _UPLOAD_ID.match(upload_id):
        query = select(Upload).where(Upload.id == upload_id)
        # Serialises PATCHes of one upload on PostgreSQL; SQLite writers hold the database lock anyway.
        upload = session.scalar(query.with_for_update() if lock else query)
    if upload is None or upload.user_id != actor.user_id:
        raise not_found("Upload")
    return upload


def append(
    session: Session,
    storage: Storage,
    actor: Actor,
    upload_id: str,
    *,
    offset: int,
    data: bytes,
    checksum: tuple[str, bytes] | None = None,
) -> Upload:
    """Write a chunk at `offset` (it must be the upload's offset: 409); finish the file when it is whole.

    A chunk whose Upload-Checksum does not match is refused (460) and nothing is written. The
    bytes are fsynced before the new offset is set, so the offset never runs ahead of the disk.
    After a commit, call `storage.remove_part` for a completed upload; on UploadDiscarded, commit
    (the upload is deleted) and remove the part too.
    """
    upload = get_upload(session, actor, upload_id, lock=True)
    if upload.completed_at is not None:
        # Nothing more to write. Clients that ignore a creation answering offset = length (tuspy
        # does) send the file from 0; they are told it is complete instead of getting a 409.
        return upload
    if offset != upload.offset:
        raise ApiError(
            409,
            f"The upload is at byte {upload.offset}, not {offset}: ask HEAD for the offset and send from there.",
            code="offset_mismatch",
            details={"offset": upload.offset},
        )
    if offset + len(data) > upload.length:
        raise ApiError(
            413,
            f"The chunk would end at byte {offset + len(data)}, past the upload's length of {upload.length}.",
            code="upload_length_exceeded",
        )
    if checksum is not None:
        algorithm, expected = checksum
        if CHECKSUMS[algorithm](data).digest() != expected:
            raise ApiError(
                460,
                f"Checksum Mismatch: the chunk's {algorithm} differs from Upload-Checksum; nothing was written,"
                " send the chunk again.",
                code="checksum_mismatch",
            )
    if data:
        part = storage.part_path(upload.id)
        if not _write_at(part, offset, data):
            session.delete(upload)
            raise UploadDiscarded(
                410,
                "The server lost this upload's bytes; it was discarded. Create a new upload.",
                code="upload_lost",
            )
    upload.offset = offset + len(data)
    upload.updated_at = utcnow()
    if upload.offset == upload.length:
        _finish(session, storage, upload)
    return upload


def terminate(session: Session, actor: Actor, upload_id: str) -> None:
    """Forget an upload (tus termination); after the commit, remove its partial file."""
    session.delete(get_upload(session, actor, upload_id, lock=True))


def remove_abandoned_uploads(
    session: Session, storage: Storage, *, older_than: dt.timedelta = dt.timedelta(hours=24)
) -> int:
    """Forget uploads nobody touched for `older_than`, finished or not, with their partial files.

    Also removes partial files that no upload refers to any more (a crash between a commit and
    the file's removal) once they are as old. Returns how many uploads were forgotten. If the
    caller's commit fails, an upload whose file is gone answers 410 and the device starts anew.
    """
    cutoff = utcnow() - older_than
    removed = list(session.scalars(delete(Upload).where(Upload.updated_at < cutoff).returning(Upload.id)))
    for upload_id in removed:
        storage.remove_part(upload_id)
    parts = storage.root / "uploads"
    if parts.is_dir():
        stray = {p.stem: p for p in parts.glob("*.part")}
        known: set[str] = set()
        names = list(stray)
        for i in range(0, len(names), _ID_IN_BATCH):
            known.update(session.scalars(select(Upload.id).where(Upload.id.in_(names[i : i + _ID_IN_BATCH]))))
        for upload_id, path in stray.items():
            with suppress(FileNotFoundError):
                if upload_id not in known and path.stat().st_mtime < cutoff.timestamp():
                    path.unlink()
    if removed:
        log.info("removed %d abandoned uploads", len(removed))
    return len(removed)


# --- on disk ---------------------------------------------------------------------------------------


def _finish(session: Session, storage: Storage, upload: Upload) -> None:
    """Check the whole file against its declared SHA-256, store it, and mark the upload complete."""
    assert upload.sha256 is not None
    part = storage.part_path(upload.id)
    if upload.length and part.exists():
        with open(part, "rb") as source:
            actual = _install(storage, upload.sha256, source, upload.length)
    else:  # the empty file, or bytes lost: then the digest cannot match
        actual = _install(storage, upload.sha256, io.BytesIO(), upload.length)
    if actual != upload.sha256:
        if upload in session:
            session.delete(upload)
        raise _mismatch(actual, upload.sha256)
    _record(session, upload.sha256, upload.length, upload.content_type or "application/octet-stream", upload.user_id)
    upload.completed_at = utcnow()


def _mismatch(actual: str, declared: str) -> UploadDiscarded:
    return UploadDiscarded(
        422,
        f"The uploaded file's SHA-256 is {actual}, not the declared {declared}; the upload was discarded."
        " Check the file and upload it again.",
        code="sha256_mismatch",
        details={"sha256": actual, "declared": declared},
    )


def _record(session: Session, sha256: str, size: int, content_type: str, user_id: Any) -> None:
    """The attachment row (once, however many uploads of the same bytes finish at the same time)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {"sha256": sha256, "size": size, "content_type": content_type, "stored_at": utcnow()}
    session.execute(
        insert(Attachment).values(**values, uploaded_by_id=user_id).on_conflict_do_nothing(index_elements=["sha256"])
    )
    # The notes that refer to these bytes turn from pending to available: devices pull them again.
    for ref in session.scalars(select(VisitAttachment).where(VisitAttachment.sha256 == sha256)):
        flag_modified(ref, "sha256")


def _install(storage: Storage, sha256: str, source: BinaryIO, length: int) -> str:
    """Copy `length` bytes of `source` into the blob store as `sha256`, unless they hash otherwise.

    Returns the bytes' actual SHA-256. The copy goes to a temporary file in the blob's directory,
    is fsynced and renamed into place (then the directory is fsynced), so the blob is whole or
    absent. An existing blob is replaced by the same bytes, which repairs a damaged one.
    """
    final = storage.blob_path(sha256)
    _ensure_dir(final.parent)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{sha256[:16]}.", suffix=".tmp")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            remaining = length
            while remaining:
                block = source.read(min(_BLOCK, remaining))
                if not block:
                    break
                digest.update(block)
                out.write(block)
                remaining -= len(block)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != sha256:
            os.unlink(tmp)
            return actual
        os.replace(tmp, final)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(final.parent)
    return actual


def _write_at(path: Path, offset: int, data: bytes) -> bool:
    """Write `data` at `offset` of a partial file and fsync it; False if bytes before `offset` are gone.

    Bytes past `offset` are of a chunk whose offset never committed (a crash, a lost answer):
    they are cut off before the chunk is written again.
    """
    _ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size < offset:
            return False
        if size > offset:
            os.ftruncate(fd, offset)
        view, position = memoryview(data), offset
        while view:
            written = os.pwrite(fd, view, position)
            view, position = view[written:], position + written
        os.fsync(fd)
    finally:
        os.close(fd)
    if offset == 0:
        _fsync_dir(path.parent)  # the new file's name, too, must survive a crash
    return True


def _ensure_dir(path: Path) -> None:
    if path.is_dir():
        return
    new = []
    probe = path
    while not probe.exists():
        new.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    for directory in reversed(new):
        _fsync_dir(directory.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _filename(value: str | None) -> str | None:
    """A display name: no path, no control characters, at most FILENAME_MAX characters."""
    if not value:
        return None
    name = value.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:FILENAME_MAX] or None
