"""Attachments: which files the server lacks, their bytes, and tus 1.0 resumable uploads.

tus 1.0 (https://tus.io/protocols/resumable-upload) with the creation, checksum and termination
extensions, at /api/v1/uploads/. The storage and its rules are in server/services/attachments.py;
this module speaks HTTP: the tus headers in and out, in the API's one error body.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Response, current_app, request, url_for
from flask.views import MethodView
from marshmallow import fields

from schemas.common import WireSchema
from schemas.sync import MissingAttachmentsSchema
from server import db
from server.api import ACCEPTS_NON_JSON, API_PREFIX
from server.api.blueprint import Blueprint
from server.api.security import current_actor
from server.api.sync import client_info
from server.errors import ApiError
from server.services import attachments
from server.services.visits import WRITERS

log = logging.getLogger(__name__)

PREFIX = ""
blp = Blueprint(
    "attachments", __name__, description="Attachments (附件): files by SHA-256, uploaded with tus 1.0 (resumable)"
)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,checksum,termination"
UPLOADS = API_PREFIX + "/uploads"
OFFSET_STREAM = "application/offset+octet-stream"
_NUMBER = re.compile(r"^[0-9]{1,20}$")
_DOWNLOAD_BLOCK = 256 * 1024


def _header(name: str, description: str, *, required: bool = True, **schema: Any) -> dict[str, Any]:
    return {"in": "header", "name": name, "required": required, "description": description, "schema": schema}


TUS_RESUMABLE = _header("Tus-Resumable", "The tus version: 1.0.0 (else 412)", enum=[TUS_VERSION], type="string")
TUS_RESPONSE = {"Tus-Resumable": {"description": "1.0.0, on every response", "schema": {"type": "string"}}}


class MissingAttachmentsResultSchema(WireSchema):
    missing = fields.List(fields.String(), required=True, metadata={"description": "SHA-256 of the files to upload"})


def _storage() -> attachments.Storage:
    return attachments.Storage(current_app.config.get("INSTANCE_PATH") or current_app.instance_path)


def _limits() -> attachments.Limits:
    types = current_app.config["ATTACHMENT_TYPES"]
    if isinstance(types, str):
        types = types.split(",")
    return attachments.Limits(
        max_bytes=int(current_app.config["ATTACHMENT_MAX_BYTES"]),
        types=tuple(t.strip().lower() for t in types if t.strip()),
    )


def _check_client() -> None:
    """Our app says which version it is (426 when too old); other tus clients send nothing and may upload."""
    if "X-Client-Protocol" in request.headers or "X-Client-Version" in request.headers:
        client_info(allow_too_old=False)


@blp.after_app_request
def _tus_response(response: Response) -> Response:
    if request.path.startswith(UPLOADS):
        response.headers["Tus-Resumable"] = TUS_VERSION
        if response.status_code == 460:
            response.status = "460 Checksum Mismatch"
    return response


@blp.route("/attachments/missing")
class MissingAttachments(MethodView):
    @blp.arguments(MissingAttachmentsSchema)
    @blp.response(200, MissingAttachmentsResultSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Which of these files (by SHA-256) the server lacks: upload only those (cadres, supervisors)."""
        current_actor().require(*WRITERS)
        _check_client()
        return {"missing": attachments.missing(db.session(), data["sha256"])}


def _chunks_of(path: Path) -> Iterator[bytes]:
    """The file's bytes, opened only once the answer is sent and closed when it is done or dropped.

    (send_file would hand over an open file that only the WSGI server closes; a 304 or a HEAD
    never opens it here.)
    """
    with open(path, "rb") as f:
        while block := f.read(_DOWNLOAD_BLOCK):
            yield block


@blp.route("/attachments/<string(length=64):sha256>")
class AttachmentBytes(MethodView):
    @blp.response(
        200,
        description="The file's bytes with its content type; 404 unless you may read a visit that refers to it",
        content_type="application/octet-stream",
        headers={"ETag": {"description": "The SHA-256", "schema": {"type": "string"}}},
    )
    def get(self, sha256: str) -> Response:
        """Download a photo or file of a visit you may read (its cadre, supervisors, admins)."""
        blob = attachments.readable(db.session(), current_actor(), sha256)
        path = _storage().blob_path(blob.sha256)
        if not path.is_file():
            log.error("attachment %s has a row but no file at %s", blob.sha256, path)
            raise ApiError(500, "The file is missing from the server's storage; the error was logged.")
        response = Response(_chunks_of(path), mimetype=blob.content_type, direct_passthrough=True)
        response.content_length = blob.size
        response.set_etag(blob.sha256)
        # Content-addressed, so it never changes; private because who may read it is checked.
        response.cache_control.private = True
        response.cache_control.max_age = 365 * 24 * 3600
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.make_conditional(request)
        return response


def _empty(status: int, headers: dict[str, str] | None = None) -> Response:
    """An answer that is all headers (tus): no body, so no Content-Type either."""
    response = Response(status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


def _tus_options() -> Response:
    return _empty(
        204,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(_limits().max_bytes),
            "Tus-Checksum-Algorithm": ",".join(attachments.CHECKSUMS),
        },
    )


OPTIONS_HEADERS = {
    "Tus-Version": {"description": TUS_VERSION, "schema": {"type": "string"}},
    "Tus-Extension": {"description": TUS_EXTENSIONS, "schema": {"type": "string"}},
    "Tus-Max-Size": {"description": "ATTACHMENT_MAX_BYTES", "schema": {"type": "integer"}},
    "Tus-Checksum-Algorithm": {"description": "sha1,sha256,md5", "schema": {"type": "string"}},
} | TUS_RESPONSE


def _require_tus() -> None:
    if request.headers.get("Tus-Resumable", "").strip() != TUS_VERSION:
        raise ApiError(
            412,
            f"This server speaks tus {TUS_VERSION}: send 'Tus-Resumable: {TUS_VERSION}'.",
            code="unsupported_tus_version",
            headers={"Tus-Version": TUS_VERSION},
        )


def _number(name: str) -> int:
    raw = request.headers.get(name)
    if raw is None:
        raise ApiError(400, f"Send the {name} header (a number of bytes).", code="missing_header")
    if not _NUMBER.match(raw.strip()):
        raise ApiError(400, f"{name} must be a whole number of bytes, not {raw[:40]!r}.", code="invalid_header")
    return int(raw.strip())


def parse_metadata(header: str) -> dict[str, str]:
    """Upload-Metadata: comma-separated pairs of a key and the base64 of its UTF-8 value (which may be absent)."""
    metadata: dict[str, str] = {}
    for pair in header.split(","):
        if not pair.strip():
            continue
        key, _, value = pair.strip().partition(" ")
        if not key.isascii() or not key.isprintable():
            raise ApiError(400, "Upload-Metadata: keys are ASCII without spaces or commas.", code="invalid_header")
        if key in metadata:
            raise ApiError(400, f"Upload-Metadata: the key {key!r} appears twice.", code="invalid_header")
        try:
            metadata[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ApiError(
                400, f"Upload-Metadata: the value of {key!r} is not base64 of UTF-8 text.", code="invalid_header"
            ) from None
    return metadata


def parse_checksum(header: str) -> tuple[str, bytes]:
    """Upload-Checksum: an algorithm and the base64 of the chunk's digest."""
    algorithm, _, encoded = header.strip().partition(" ")
    algorithm = algorithm.lower()
    hasher = attachments.CHECKSUMS.get(algorithm)
    if hasher is None:
        raise ApiError(
            400,
            f"Upload-Checksum: the algorithm {algorithm[:20]!r} is not supported; use one of"
            f" {', '.join(attachments.CHECKSUMS)}.",
            code="unsupported_checksum",
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "Upload-Checksum: the digest is not base64.", code="invalid_header") from None
    if len(digest) != hasher(b"").digest_size:
        raise ApiError(400, f"Upload-Checksum: that is not a {algorithm} digest.", code="invalid_header")
    return algorithm, digest


@blp.route("/uploads/")
class Uploads(MethodView):
    @blp.doc(security=[])
    @blp.response(204, description="What this tus server supports", headers=OPTIONS_HEADERS)
    def options(self) -> Response:
        """tus discovery: version, extensions, largest size, checksum algorithms (no token needed)."""
        return _tus_options()

    @blp.doc(
        parameters=[
            TUS_RESUMABLE,
            _header("Upload-Length", "The file's size in bytes (413 above ATTACHMENT_MAX_BYTES)", type="integer"),
            _header(
                "Upload-Metadata",
                "Comma-separated `key base64(value)`: sha256 (required, hex SHA-256 of the whole file),"
                " filetype (one of ATTACHMENT_TYPES, else 415), filename",
                type="string",
            ),
        ]
    )
    @blp.response(
        201,
        description="Created; send the bytes to Location. Upload-Offset is present when the server"
        " already holds the file (offset = length: nothing to send).",
        headers={
            "Location": {"description": "The upload's URL", "schema": {"type": "string"}},
            "Upload-Offset": {"description": "Only when already complete", "schema": {"type": "integer"}},
        }
        | TUS_RESPONSE,
    )
    @blp.alt_response(400, description="missing_header, invalid_header: Upload-Length or Upload-Metadata malformed")
    @blp.alt_response(412, description="Tus-Resumable missing or not 1.0.0")
    @blp.alt_response(413, description="file_too_large: Upload-Length above ATTACHMENT_MAX_BYTES")
    @blp.alt_response(415, description="unsupported_file_type: filetype not in ATTACHMENT_TYPES")
    @blp.alt_response(422, description="sha256 missing or malformed")
    def post(self) -> Response:
        """Create an upload (tus creation; cadres and supervisors)."""
        actor = current_actor()
        _require_tus()
        _check_client()
        if "Upload-Length" not in request.headers and "Upload-Defer-Length" in request.headers:
            raise ApiError(400, "Upload-Defer-Length is not supported: send Upload-Length.", code="missing_header")
        length = _number("Upload-Length")
        metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
        session = db.session()
        upload = attachments.create_upload(
            session, _storage(), actor, length=length, metadata=metadata, limits=_limits()
        )
        session.commit()
        headers = {"Location": url_for(".UploadById", upload_id=upload.id)}
        if upload.completed_at is not None:
            headers["Upload-Offset"] = str(upload.offset)
        return _empty(201, headers)


@blp.route("/uploads/<upload_id>")
class UploadById(MethodView):
    @blp.doc(security=[])
    @blp.response(204, description="What this tus server supports", headers=OPTIONS_HEADERS)
    def options(self, upload_id: str) -> Response:
        """tus discovery, as on /uploads/."""
        return _tus_options()

    @blp.doc(parameters=[TUS_RESUMABLE])
    @blp.response(
        200,
        description="The upload's state (no body)",
        headers={
            "Upload-Offset": {"description": "Bytes the server holds; resume here", "schema": {"type": "integer"}},
            "Upload-Length": {"description": "The file's size", "schema": {"type": "integer"}},
            "Cache-Control": {"description": "no-store", "schema": {"type": "string"}},
        }
        | TUS_RESPONSE,
    )
    @blp.alt_response(412, description="Tus-Resumable missing or not 1.0.0")
    def head(self, upload_id: str) -> Response:
        """How many bytes of your upload the server holds (after a dropped connection, resume there)."""
        actor = current_actor()
        _require_tus()
        upload = attachments.get_upload(db.session(), actor, upload_id)
        return _empty(
            200,
            {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length), "Cache-Control": "no-store"},
        )

    @blp.doc(
        parameters=[
            TUS_RESUMABLE,
            _header("Upload-Offset", "Where this chunk starts: the upload's offset (else 409)", type="integer"),
            _header(
                "Upload-Checksum",
                "`sha1|sha256|md5 base64(digest of the chunk)`; a mismatch is 460 and nothing is written",
                required=False,
                type="string",
            ),
        ],
        requestBody={
            "required": True,
            "content": {OFFSET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        },
    )
    @blp.response(
        204,
        description="Written (and fsynced). When the last byte arrives the file is checked against its sha256.",
        headers={"Upload-Offset": {"description": "The new offset", "schema": {"type": "integer"}}} | TUS_RESPONSE,
    )
    @blp.alt_response(400, description="invalid_header: Upload-Offset or Upload-Checksum is malformed")
    @blp.alt_response(412, description="Tus-Resumable missing or not 1.0.0")
    @blp.alt_response(409, description="offset_mismatch: Upload-Offset is not the upload's offset (details.offset)")
    @blp.alt_response(410, description="upload_lost: the server lost the partial file; create a new upload")
    @blp.alt_response(413, description="upload_length_exceeded, or payload_too_large above MAX_CONTENT_LENGTH")
    @blp.alt_response(415, description="Content-Type is not application/offset+octet-stream")
    @blp.alt_response(422, description="sha256_mismatch: the whole file's SHA-256 is not the declared one; discarded")
    @blp.alt_response(460, description="checksum_mismatch: the chunk does not match Upload-Checksum; nothing written")
    def patch(self, upload_id: str) -> Response:
        """Send a chunk of your upload at its offset (tus core + checksum)."""
        actor = current_actor()
        _require_tus()
        _check_client()
        if request.mimetype != OFFSET_STREAM:
            raise ApiError(415, f"Send the chunk as Content-Type: {OFFSET_STREAM}.")
        offset = _number("Upload-Offset")
        raw_checksum = request.headers.get("Upload-Checksum")
        checksum = parse_checksum(raw_checksum) if raw_checksum is not None else None
        # Read the whole chunk before the transaction: a slow phone never holds the write lock.
        data = request.get_data(cache=False)
        session = db.session()
        storage = _storage()
        try:
            upload = attachments.append(session, storage, actor, upload_id, offset=offset, data=data, checksum=checksum)
        except attachments.UploadDiscarded:
            session.commit()
            storage.remove_part(upload_id)
            raise
        session.commit()
        if upload.completed_at is not None:
            storage.remove_part(upload.id)
        return _empty(204, {"Upload-Offset": str(upload.offset)})

    @blp.doc(parameters=[TUS_RESUMABLE])
    @blp.response(204, description="The upload and its bytes are gone", headers=TUS_RESPONSE)
    @blp.alt_response(412, description="Tus-Resumable missing or not 1.0.0")
    def delete(self, upload_id: str) -> Response:
        """Abandon your upload (tus termination); a stored file stays."""
        actor = current_actor()
        _require_tus()
        session = db.session()
        attachments.terminate(session, actor, upload_id)
        session.commit()
        _storage().remove_part(upload_id)
        return _empty(204)


for _view in (Uploads, UploadById):
    setattr(_view, ACCEPTS_NON_JSON, True)
