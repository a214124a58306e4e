"""Attachments: tus 1.0 uploads (core, creation, checksum, termination), storage by SHA-256, downloads.

In-process through the Flask test client, and against the real server (gunicorn) with the
`tuspy` client from PyPI, including a SIGKILL in the middle of an upload.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, update

from server import db
from server.db.models import Attachment, ChangeLogEntry, Upload
from server.services import attachments
from tests.factories import visit_note
from tests.servers import ServerProcess

UPLOADS = "/api/v1/uploads/"
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = 256 * 1024
STREAM = "application/offset+octet-stream"


def photo(size: int = 3 * CHUNK + 1234, seed: int = 0) -> bytes:
    """Bytes that look like nothing in particular, different per seed."""
    block = hashlib.sha256(f"photo-{seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(client, who_headers, data: bytes, *, declared: str | None = None, filetype: str = "image/jpeg", **extra):
    headers = (
        who_headers
        | TUS
        | {
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(sha256=declared or sha(data), filename="现场照片.jpg", filetype=filetype),
        }
        | extra
    )
    return client.post(UPLOADS, headers=headers)


def patch(client, who_headers, url: str, offset: int, chunk: bytes, checksum: str | None = "sha256", **extra):
    headers = who_headers | TUS | {"Upload-Offset": str(offset), "Content-Type": STREAM} | extra
    if checksum:
        digest = hashlib.new(checksum, chunk).digest()
        headers["Upload-Checksum"] = f"{checksum} {base64.b64encode(digest).decode()}"
    return client.patch(url, data=chunk, headers=headers)


def upload(client, who_headers, data: bytes, chunk: int = CHUNK) -> str:
    """The whole tus dance; returns the upload's URL."""
    r = create(client, who_headers, data)
    assert r.status_code == 201, r.json
    url = r.headers["Location"]
    offset = int(r.headers.get("Upload-Offset", 0))
    while offset < len(data):
        r = patch(client, who_headers, url, offset, data[offset : offset + chunk])
        assert r.status_code == 204, r.json
        offset = int(r.headers["Upload-Offset"])
    return url


def offset_of(client, who_headers, url: str) -> int:
    r = client.head(url, headers=who_headers | TUS)
    assert r.status_code == 200
    return int(r.headers["Upload-Offset"])


def storage(app) -> attachments.Storage:
    return attachments.Storage(app.instance_path)


def part_of(app, url: str) -> Path:
    return storage(app).part_path(url.rsplit("/", 1)[-1])


def count(app, model) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(model))


def assert_error(r, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    if r.request.path.startswith(UPLOADS):
        assert r.headers["Tus-Resumable"] == "1.0.0"
    if r.request.method == "HEAD":  # no body
        return {}
    body = r.json
    assert set(body) >= {"status", "code", "message"} and body["status"] == status
    if code:
        assert body["code"] == code, body
    return body


# --- the protocol ------------------------------------------------------------------------------


def test_options_tells_what_the_server_supports_without_a_token(client):
    r = client.options(UPLOADS)
    assert r.status_code == 204
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {"creation", "checksum", "termination"}
    assert int(r.headers["Tus-Max-Size"]) == 20 * 1024 * 1024
    assert set(r.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256", "md5"}


def test_creation_answers_201_with_a_location_and_head_shows_offset_zero(client, world):
    data = photo()
    r = create(client, world.headers("cadre"), data)
    assert r.status_code == 201
    assert r.headers["Tus-Resumable"] == "1.0.0"
    url = r.headers["Location"]
    assert url.startswith(UPLOADS) and "Upload-Offset" not in r.headers
    r = client.head(url, headers=world.headers("cadre") | TUS)
    assert r.status_code == 200
    assert r.headers["Upload-Offset"] == "0"
    assert r.headers["Upload-Length"] == str(len(data))
    assert r.headers["Cache-Control"] == "no-store"


def test_resumable_upload_survives_a_dropped_connection(app, client, world):
    h = world.headers("cadre")
    data = photo(5 * CHUNK + 77)
    url = create(client, h, data).headers["Location"]
    for offset in (0, CHUNK):  # two chunks, then the connection drops
        assert patch(client, h, url, offset, data[offset : offset + CHUNK]).status_code == 204
    # The third chunk reached the disk but its answer (and the offset's commit) never happened.
    with open(part_of(app, url), "ab") as f:
        f.write(data[2 * CHUNK : 2 * CHUNK + 1000])
    offset = offset_of(client, h, url)
    assert offset == 2 * CHUNK  # the server only counts what it committed
    while offset < len(data):
        r = patch(client, h, url, offset, data[offset : offset + CHUNK])
        assert r.status_code == 204
        offset = int(r.headers["Upload-Offset"])
    assert offset_of(client, h, url) == len(data)
    assert storage(app).blob_path(sha(data)).read_bytes() == data
    assert not part_of(app, url).exists()
    with app.app_context():
        blob = db.session().get(Attachment, sha(data))
        assert (blob.size, blob.content_type, blob.uploaded_by_id) == (len(data), "image/jpeg", world.users["cadre"])
        assert db.session().scalar(select(Upload.completed_at).where(Upload.id == url.rsplit("/", 1)[-1]))


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_every_checksum_algorithm_is_accepted(client, world, algorithm):
    h = world.headers("cadre")
    data = photo(1000)
    url = create(client, h, data).headers["Location"]
    assert patch(client, h, url, 0, data, checksum=algorithm).status_code == 204


def test_checksum_mismatch_is_460_and_nothing_is_written(app, client, world):
    h = world.headers("cadre")
    data = photo()
    url = create(client, h, data).headers["Location"]
    assert patch(client, h, url, 0, data[:CHUNK]).status_code == 204
    digest = base64.b64encode(hashlib.sha1(b"other bytes").digest()).decode()
    r = patch(client, h, url, CHUNK, data[CHUNK : 2 * CHUNK], checksum=None, **{"Upload-Checksum": f"sha1 {digest}"})
    body = assert_error(r, 460, "checksum_mismatch")
    assert r.status == "460 Checksum Mismatch"
    assert "nothing was written" in body["message"]
    assert offset_of(client, h, url) == CHUNK
    assert part_of(app, url).stat().st_size == CHUNK
    assert patch(client, h, url, CHUNK, data[CHUNK : 2 * CHUNK]).status_code == 204  # sent again, right


def test_a_chunk_at_the_wrong_offset_is_409(client, world):
    h = world.headers("cadre")
    data = photo()
    url = create(client, h, data).headers["Location"]
    assert patch(client, h, url, 0, data[:CHUNK]).status_code == 204
    for wrong in (0, CHUNK - 1, CHUNK + 1, 10**15):
        body = assert_error(patch(client, h, url, wrong, data[:CHUNK]), 409, "offset_mismatch")
        assert body["details"] == {"offset": CHUNK}
    assert offset_of(client, h, url) == CHUNK


def test_a_chunk_past_the_declared_length_is_413(client, world):
    h = world.headers("cadre")
    data = photo(1000)
    url = create(client, h, data).headers["Location"]
    assert_error(patch(client, h, url, 0, data + b"extra"), 413, "upload_length_exceeded")
    assert offset_of(client, h, url) == 0


def test_termination_forgets_the_upload_and_its_bytes(app, client, world):
    h = world.headers("cadre")
    data = photo()
    url = create(client, h, data).headers["Location"]
    assert patch(client, h, url, 0, data[:CHUNK]).status_code == 204
    assert part_of(app, url).exists()
    assert_error(client.delete(url, headers=world.headers("other_cadre") | TUS), 404)
    r = client.delete(url, headers=h | TUS)
    assert r.status_code == 204 and r.headers["Tus-Resumable"] == "1.0.0"
    assert not part_of(app, url).exists()
    assert client.head(url, headers=h | TUS).status_code == 404
    assert_error(patch(client, h, url, CHUNK, data[CHUNK:]), 404)
    assert count(app, Upload) == 0 and count(app, Attachment) == 0


def test_a_file_that_does_not_hash_to_its_declared_sha256_is_discarded(app, client, world):
    h = world.headers("cadre")
    data = photo()
    liar = sha(b"something else")
    r = create(client, h, data, declared=liar)
    url = r.headers["Location"]
    assert patch(client, h, url, 0, data[: 2 * CHUNK]).status_code == 204
    body = assert_error(patch(client, h, url, 2 * CHUNK, data[2 * CHUNK :]), 422, "sha256_mismatch")
    assert sha(data) in body["message"] and liar in body["message"] and "discarded" in body["message"]
    assert body["details"] == {"sha256": sha(data), "declared": liar}
    assert client.head(url, headers=h | TUS).status_code == 404
    assert not part_of(app, url).exists()
    assert not storage(app).blob_path(liar).exists() and not storage(app).blob_path(sha(data)).exists()
    assert count(app, Attachment) == 0 and count(app, Upload) == 0
    assert not list(storage(app).blob_path(liar).parent.glob("*"))  # no temporary file left behind


def test_too_large_is_413_and_wrong_type_is_415_before_a_byte_is_sent(app, client, world):
    app.config["ATTACHMENT_MAX_BYTES"] = 1000
    h = world.headers("cadre")
    body = assert_error(create(client, h, photo(1001)), 413, "file_too_large")
    assert "1001" in body["message"] and "1000" in body["message"]
    assert body["details"] == {"max_bytes": 1000}
    assert create(client, h, photo(1000)).status_code == 201
    body = assert_error(create(client, h, photo(10), filetype="text/html"), 415, "unsupported_file_type")
    assert "text/html" in body["message"] and "image/jpeg" in body["message"]
    assert "image/jpeg" in body["details"]["allowed"]
    r = client.post(UPLOADS, headers=h | TUS | {"Upload-Length": "10", "Upload-Metadata": metadata(sha256="a" * 64)})
    assert "filetype" in assert_error(r, 415, "unsupported_file_type")["message"]
    # The content type's case and parameters do not matter.
    assert create(client, h, photo(10), filetype="IMAGE/PNG; q=1").status_code == 201
    assert count(app, Upload) == 2


def test_allowed_types_come_from_the_configuration(app, client, world):
    app.config["ATTACHMENT_TYPES"] = "text/plain, application/pdf"
    h = world.headers("cadre")
    assert create(client, h, photo(10), filetype="text/plain").status_code == 201
    assert_error(create(client, h, photo(10), filetype="image/jpeg"), 415)


def test_a_file_the_server_has_is_complete_at_creation(app, client, world):
    data = photo()
    upload(client, world.headers("cadre"), data)
    h = world.headers("other_cadre")
    r = create(client, h, data)
    assert r.status_code == 201
    assert r.headers["Upload-Offset"] == str(len(data))
    url = r.headers["Location"]
    assert offset_of(client, h, url) == len(data)
    # A client that ignores that (tuspy) and sends from 0 is told it is complete; nothing is written.
    r = patch(client, h, url, 0, data[:CHUNK])
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
    assert not part_of(app, url).exists()
    # Same hash but another length is no duplicate: it is uploaded (and will be refused at the end).
    r = create(client, h, data[:100], declared=sha(data))
    assert r.status_code == 201 and "Upload-Offset" not in r.headers
    assert count(app, Attachment) == 1


def test_the_same_file_uploaded_twice_at_once_is_stored_once(app, client, world):
    data = photo(1000)
    first = create(client, world.headers("cadre"), data).headers["Location"]
    second = create(client, world.headers("other_cadre"), data).headers["Location"]
    assert patch(client, world.headers("cadre"), first, 0, data).status_code == 204
    assert patch(client, world.headers("other_cadre"), second, 0, data).status_code == 204
    assert count(app, Attachment) == 1
    assert storage(app).blob_path(sha(data)).read_bytes() == data


def test_an_empty_file_is_complete_at_creation(app, client, world):
    r = create(client, world.headers("cadre"), b"")
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "0"
    assert storage(app).blob_path(sha(b"")).read_bytes() == b""
    assert_error(create(client, world.headers("cadre"), b"", declared=sha(b"x")), 422, "sha256_mismatch")


def test_uploads_belong_to_their_user(client, world):
    data = photo()
    url = create(client, world.headers("cadre"), data).headers["Location"]
    for who in ("other_cadre", "supervisor"):
        h = world.headers(who)
        assert_error(client.head(url, headers=h | TUS), 404)
        assert_error(patch(client, h, url, 0, data[:CHUNK]), 404)
        assert_error(client.delete(url, headers=h | TUS), 404)
    for who in ("staff", "admin"):
        assert_error(create(client, world.headers(who), data), 403)
        assert_error(client.head(url, headers=world.headers(who) | TUS), 403)
    assert_error(create(client, {}, data), 401)
    assert_error(client.head(url, headers=TUS), 401)
    assert create(client, world.headers("supervisor"), data).status_code == 201
    assert offset_of(client, world.headers("cadre"), url) == 0


def test_an_unknown_or_malformed_upload_id_is_404(client, world):
    h = world.headers("cadre") | TUS
    for upload_id in ("0" * 32, "nope", "../../etc/passwd", "A" * 32):
        assert_error(client.head(UPLOADS + upload_id, headers=h), 404)
        assert_error(client.delete(UPLOADS + upload_id, headers=h), 404)


# --- junk in every header: a clear 4xx, never a 500 ----------------------------------------------


def _creation(**headers: str) -> dict[str, str]:
    good = {"Upload-Length": "10", "Upload-Metadata": metadata(sha256="a" * 64, filetype="image/png")}
    return {k: v for k, v in (good | headers).items() if v is not None}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (_creation(**{"Upload-Length": None}), 400),
        (_creation(**{"Upload-Length": None, "Upload-Defer-Length": "1"}), 400),
        (_creation(**{"Upload-Length": "-1"}), 400),
        (_creation(**{"Upload-Length": "ten"}), 400),
        (_creation(**{"Upload-Length": ""}), 400),
        (_creation(**{"Upload-Length": "1e3"}), 400),
        (_creation(**{"Upload-Length": "١٢٣"}), 400),  # Arabic-Indic digits: digits, but not ours
        (_creation(**{"Upload-Length": "9" * 21}), 400),
        (_creation(**{"Upload-Length": "9" * 20}), 413),
        (_creation(**{"Upload-Metadata": None}), 415),
        (_creation(**{"Upload-Metadata": "sha256 !!!not-base64!!!"}), 400),
        (_creation(**{"Upload-Metadata": "sha256 " + base64.b64encode(b"\xff\xfe").decode()}), 400),
        (_creation(**{"Upload-Metadata": metadata(filetype="image/png") + ",filetype aW1hZ2UvcG5n"}), 400),
        (_creation(**{"Upload-Metadata": "key\twith-tab dGV4dA=="}), 400),
        (_creation(**{"Upload-Metadata": metadata(filetype="image/png")}), 422),
        (_creation(**{"Upload-Metadata": metadata(filetype="image/png", sha256="not-a-hash")}), 422),
        (_creation(**{"Upload-Metadata": metadata(filetype="image/png", sha256="a" * 64 + "\x00")}), 422),
        (_creation(**{"Upload-Metadata": metadata(filetype="image/png\x00", sha256="a" * 64)}), 415),
        (_creation(**{"Upload-Metadata": ",,," + metadata(filetype="image/png", sha256="A" * 64) + ","}), 201),
        (_creation(**{"Upload-Metadata": metadata(filetype="image/png", sha256="a" * 64, filename="x" * 5000)}), 201),
        (_creation(**{"Upload-Metadata": metadata(filetype="image/png", sha256="a" * 64, filename="\x00/..\\")}), 201),
        (_creation(**{"Upload-Metadata": _creation()["Upload-Metadata"] + ",novalue"}), 201),
    ],
)
def test_junk_creation_headers_are_a_clear_4xx(client, world, headers, status):
    r = client.post(UPLOADS, headers=world.headers("cadre") | TUS | headers)
    if status == 201:
        assert r.status_code == 201
    else:
        assert_error(r, status)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Tus-Resumable": None}, 412),
        ({"Tus-Resumable": "0.2.2"}, 412),
        ({"Upload-Offset": None}, 400),
        ({"Upload-Offset": "-5"}, 400),
        ({"Upload-Offset": "zero"}, 400),
        ({"Content-Type": None}, 415),
        ({"Content-Type": "application/json"}, 415),
        ({"Content-Type": "multipart/form-data"}, 415),
        ({"Upload-Checksum": "crc32 AAAAAA=="}, 400),
        ({"Upload-Checksum": "sha1"}, 400),
        ({"Upload-Checksum": "sha1 ***"}, 400),
        ({"Upload-Checksum": "sha256 " + base64.b64encode(b"short").decode()}, 400),
        ({"Upload-Checksum": ""}, 400),
    ],
)
def test_junk_chunk_headers_are_a_clear_4xx_and_write_nothing(app, client, world, headers, status):
    h = world.headers("cadre")
    data = photo(1000)
    url = create(client, h, data).headers["Location"]
    sent = h | TUS | {"Upload-Offset": "0", "Content-Type": STREAM} | headers
    body = assert_error(client.patch(url, data=data, headers={k: v for k, v in sent.items() if v is not None}), status)
    if status == 412:
        assert "1.0.0" in body["message"]
    assert offset_of(client, h, url) == 0


def test_a_wrong_tus_version_is_412_with_the_version_we_speak(client, world):
    r = client.post(UPLOADS, headers=world.headers("cadre") | {"Tus-Resumable": "2.0.0"} | _creation())
    assert_error(r, 412, "unsupported_tus_version")
    assert r.headers["Tus-Version"] == "1.0.0"
    assert_error(client.delete(UPLOADS + "0" * 32, headers=world.headers("cadre")), 412)
    assert_error(client.head(UPLOADS + "0" * 32, headers=world.headers("cadre")), 412)


def test_an_app_too_old_is_told_to_update_and_other_tus_clients_may_upload(app, client, world):
    app.config["MIN_CLIENT_VERSION"] = "2.0.0"
    h = world.headers("cadre")
    old = {"X-Client-Protocol": "1", "X-Client-Version": "1.9.0"}
    assert_error(create(client, h, photo(), **old), 426, "client_too_old")
    new = {"X-Client-Protocol": "1", "X-Client-Version": "2.0.0"}
    assert create(client, h, photo(), **new).status_code == 201
    assert create(client, h, photo()).status_code == 201


def test_tus_resumable_is_on_every_answer_under_uploads(client, world):
    for r in (
        client.post(UPLOADS, headers=TUS),  # 401
        client.get(UPLOADS, headers=world.headers("cadre")),  # 405
        client.head(UPLOADS + "0" * 32, headers=world.headers("cadre") | TUS),  # 404
    ):
        assert r.status_code >= 400 and r.headers["Tus-Resumable"] == "1.0.0"


# --- which files the server lacks, and downloads -----------------------------------------------


def test_missing_lists_the_hashes_the_server_lacks_in_order_once(client, world):
    have, lack1, lack2 = photo(100, 1), photo(100, 2), photo(100, 3)
    upload(client, world.headers("cadre"), have)
    asked = [sha(lack2), sha(have), sha(lack1), sha(lack2)]
    r = client.post("/api/v1/attachments/missing", json={"sha256": asked}, headers=world.headers("other_cadre"))
    assert r.status_code == 200
    assert r.json == {"missing": [sha(lack2), sha(lack1)]}
    r = client.post("/api/v1/attachments/missing", json={"sha256": []}, headers=world.headers("supervisor"))
    assert r.json == {"missing": []}


def test_missing_checks_its_input(client, world):
    h = world.headers("cadre")
    url = "/api/v1/attachments/missing"
    assert_error(client.post(url, json={"sha256": ["ABC"]}, headers=h), 422)
    assert_error(client.post(url, json={"sha256": ["a" * 64] * 1001}, headers=h), 422)
    assert_error(client.post(url, json={}, headers=h), 422)
    assert_error(client.post(url, data="sha256", headers=h), 415)
    assert_error(client.post(url, json={"sha256": []}, headers=world.headers("staff")), 403)


def test_missing_covers_more_hashes_than_one_query_holds(app, client, world):
    blobs = [photo(10, seed) for seed in range(3)]
    with app.app_context():
        for data in blobs:
            attachments.store(db.session(), storage(app), data, "image/png")
        db.session().commit()
        asked = [f"{n:064x}" for n in range(999)] + [sha(b) for b in blobs]
        assert attachments.missing(db.session(), asked) == asked[:999]


def _visit_with(client, world, data: bytes, who: str = "cadre") -> dict[str, Any]:
    ref = {
        "id": str(uuid.uuid4()),
        "sha256": sha(data),
        "filename": "现场照片.jpg",
        "content_type": "image/jpeg",
        "size": len(data),
    }
    r = client.post("/api/v1/visits", json=visit_note(world, attachments=[ref]), headers=world.headers(who))
    assert r.status_code == 201, r.json
    return r.json


def test_a_visit_shows_its_photos_pending_until_they_arrive(app, client, world):
    data = photo()
    visit = _visit_with(client, world, data)
    assert [a["status"] for a in visit["attachments"]] == ["pending"]
    url = f"/api/v1/visits/{visit['id']}"
    assert client.get(url, headers=world.headers("supervisor")).json["attachments"][0]["status"] == "pending"
    with app.app_context():
        before = db.session().scalar(select(ChangeLogEntry.change_no).where(ChangeLogEntry.entity == "attachment"))
    # Half of it is not enough.
    tus_url = create(client, world.headers("cadre"), data).headers["Location"]
    assert patch(client, world.headers("cadre"), tus_url, 0, data[:CHUNK]).status_code == 204
    assert client.get(url, headers=world.headers("cadre")).json["attachments"][0]["status"] == "pending"
    offset = CHUNK
    while offset < len(data):
        offset = int(patch(client, world.headers("cadre"), tus_url, offset, data[offset : offset + CHUNK]).headers[
            "Upload-Offset"
        ])  # fmt: skip
    got = client.get(url, headers=world.headers("cadre")).json["attachments"][0]
    assert got["status"] == "available" and got["sha256"] == sha(data)
    # Devices pull the attachment again, now available.
    with app.app_context():
        after = db.session().scalar(select(ChangeLogEntry.change_no).where(ChangeLogEntry.entity == "attachment"))
    assert after > before


def test_download_gives_the_bytes_to_those_who_may_read_the_visit(client, world):
    data = photo()
    _visit_with(client, world, data)
    upload(client, world.headers("cadre"), data)
    url = f"/api/v1/attachments/{sha(data)}"
    for who in ("cadre", "supervisor", "admin"):
        with client.get(url, headers=world.headers(who)) as r:
            assert r.status_code == 200, who
            assert r.data == data
            assert r.mimetype == "image/jpeg"
            assert r.headers["ETag"] == f'"{sha(data)}"'
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert "private" in r.headers["Cache-Control"]
    for who in ("other_cadre", "staff", "other_staff"):
        assert_error(client.get(url, headers=world.headers(who)), 404, "not_found")
    assert_error(client.get(url), 401)
    with client.get(url, headers=world.headers("cadre") | {"If-None-Match": f'"{sha(data)}"'}) as r:
        assert r.status_code == 304


def test_download_of_a_file_no_visit_refers_to_or_not_yet_uploaded_is_404(client, world):
    orphan, pending = photo(100, 1), photo(100, 2)
    upload(client, world.headers("cadre"), orphan)
    _visit_with(client, world, pending)
    h = world.headers("cadre")
    assert_error(client.get(f"/api/v1/attachments/{sha(orphan)}", headers=h), 404, "not_found")
    body = assert_error(client.get(f"/api/v1/attachments/{sha(pending)}", headers=h), 404, "attachment_pending")
    assert "not been uploaded" in body["message"]
    for junk in ("A" * 64, "a" * 63, "..%2F..%2Fsecret_key"):
        assert_error(client.get(f"/api/v1/attachments/{junk}", headers=h), 404)


def test_attachments_missing_is_not_a_file_to_download(client, world):
    """/attachments/missing is the POST that asks which files are missing, not the download of a file
    named "missing": GET there is 405 and Allow names only its own methods (found by test_api_fuzz.py)."""
    r = client.get("/api/v1/attachments/missing", headers=world.headers("cadre"))
    assert_error(r, 405, "method_not_allowed")
    assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}


def test_download_reads_any_visit_that_refers_to_the_file(client, world):
    data = photo(100)
    _visit_with(client, world, data, who="other_cadre")
    _visit_with(client, world, data, who="cadre")
    upload(client, world.headers("other_cadre"), data)
    for who in ("cadre", "other_cadre"):
        with client.get(f"/api/v1/attachments/{sha(data)}", headers=world.headers(who)) as r:
            assert r.status_code == 200


# --- storage and housekeeping -----------------------------------------------------------------------


def test_blobs_are_stored_by_hash_in_two_levels_of_directories(app, client, world):
    data = photo(100)
    upload(client, world.headers("cadre"), data)
    digest = sha(data)
    path = Path(app.instance_path) / "attachments" / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == data


def test_cleanup_forgets_abandoned_uploads_and_stray_partial_files(app, client, world):
    h = world.headers("cadre")
    old, fresh, done = photo(1000, 1), photo(1000, 2), photo(1000, 3)
    old_url = create(client, h, old).headers["Location"]
    assert patch(client, h, old_url, 0, old[:500]).status_code == 204
    fresh_url = create(client, h, fresh).headers["Location"]
    assert patch(client, h, fresh_url, 0, fresh[:500]).status_code == 204
    done_url = upload(client, h, done)
    stray = storage(app).part_path("f" * 32)
    stray.write_bytes(b"left behind by a crash")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    os.utime(stray, (long_ago.timestamp(), long_ago.timestamp()))
    with app.app_context(), db.session_scope() as s:
        for url in (old_url, done_url):
            s.execute(update(Upload).where(Upload.id == url.rsplit("/", 1)[-1]).values(updated_at=long_ago))
    with app.app_context(), db.session_scope() as s:
        assert attachments.remove_abandoned_uploads(s, storage(app), older_than=dt.timedelta(hours=24)) == 2
    assert client.head(old_url, headers=h | TUS).status_code == 404
    assert client.head(done_url, headers=h | TUS).status_code == 404
    assert not part_of(app, old_url).exists() and not stray.exists()
    assert offset_of(client, h, fresh_url) == 500 and part_of(app, fresh_url).exists()
    assert storage(app).blob_path(sha(done)).exists()  # the stored file stays
    with app.app_context(), db.session_scope() as s:
        assert attachments.remove_abandoned_uploads(s, storage(app)) == 0


def test_lost_partial_bytes_discard_the_upload_with_410(app, client, world):
    h = world.headers("cadre")
    data = photo()
    url = create(client, h, data).headers["Location"]
    assert patch(client, h, url, 0, data[:CHUNK]).status_code == 204
    part_of(app, url).unlink()
    assert_error(patch(client, h, url, CHUNK, data[CHUNK : 2 * CHUNK]), 410, "upload_lost")
    assert client.head(url, headers=h | TUS).status_code == 404


def test_instance_path_setting_moves_the_files(tmp_path, monkeypatch):
    from server import config

    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "elsewhere"))
    loaded = config.load(str(tmp_path / "default"), {})
    assert loaded["INSTANCE_PATH"] == str(tmp_path / "elsewhere")
    assert loaded["DATABASE_URL"] == "sqlite:///" + str(tmp_path / "elsewhere" / "fieldvisit.db")
    assert (tmp_path / "elsewhere" / "secret_key").exists() and not (tmp_path / "default").exists()
    monkeypatch.setenv("ATTACHMENT_TYPES", " image/PNG , ,application/pdf")
    assert config.load(str(tmp_path / "default"), {})["ATTACHMENT_TYPES"] == ("image/png", "application/pdf")


def test_the_upload_endpoints_and_their_headers_are_in_the_openapi_document(client):
    paths = client.get("/api/openapi.json").json["paths"]
    assert {"options", "post"} <= set(paths["/api/v1/uploads/"])
    assert {"options", "head", "patch", "delete"} <= set(paths["/api/v1/uploads/{upload_id}"])
    assert "post" in paths["/api/v1/attachments/missing"]
    assert "get" in paths["/api/v1/attachments/{sha256}"]
    creation = paths["/api/v1/uploads/"]["post"]
    assert {"Tus-Resumable", "Upload-Length", "Upload-Metadata"} <= {p["name"] for p in creation["parameters"]}
    assert "Location" in creation["responses"]["201"]["headers"]
    chunk = paths["/api/v1/uploads/{upload_id}"]["patch"]
    assert {"Upload-Offset", "Upload-Checksum"} <= {p["name"] for p in chunk["parameters"]}
    assert {"409", "460"} <= set(chunk["responses"])


# --- the real server, a real tus client --------------------------------------------------------------


@pytest.fixture
def server(app, world, db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "server-files"))
    process = ServerProcess(db_url, tmp_path / "srv").start()
    yield process
    process.stop()


@pytest.mark.slow
def test_tuspy_uploads_to_the_real_server_and_resumes_after_a_sigkill(server, world, tmp_path):
    from tusclient.client import TusClient

    data = photo(6 * CHUNK + 4321, seed=7)
    h = world.headers("cadre")
    note = visit_note(
        world,
        attachments=[
            {"id": str(uuid.uuid4()), "sha256": sha(data), "filename": "a.jpg", "content_type": "image/jpeg",
             "size": len(data)}
        ],
    )  # fmt: skip
    assert requests.post(server.url + "/api/v1/visits", json=note, headers=h, timeout=10).status_code == 201
    missing = requests.post(
        server.url + "/api/v1/attachments/missing", json={"sha256": [sha(data)]}, headers=h, timeout=10
    )
    assert missing.json() == {"missing": [sha(data)]}

    tus = TusClient(server.url + UPLOADS, headers=h)
    meta = {"sha256": sha(data), "filename": "现场照片.jpg", "filetype": "image/jpeg"}
    uploader = tus.uploader(file_stream=io.BytesIO(data), chunk_size=CHUNK, metadata=meta, upload_checksum=True)
    uploader.upload(stop_at=3 * CHUNK)  # three chunks acknowledged, then the server dies
    assert uploader.offset == 3 * CHUNK
    server.kill()
    server.start()
    # A new uploader for the same URL asks HEAD for the offset and resumes there.
    resumed = tus.uploader(file_stream=io.BytesIO(data), url=uploader.url, chunk_size=CHUNK, upload_checksum=True)
    assert resumed.offset == 3 * CHUNK
    resumed.upload()
    assert resumed.offset == len(data)

    r = requests.get(f"{server.url}/api/v1/attachments/{sha(data)}", headers=h, timeout=10)
    assert r.status_code == 200 and r.content == data and r.headers["Content-Type"] == "image/jpeg"
    visit = requests.get(f"{server.url}/api/v1/visits/{note['id']}", headers=h, timeout=10).json()
    assert visit["attachments"][0]["status"] == "available"
    stored = tmp_path / "server-files" / "attachments" / sha(data)[:2] / sha(data)[2:4] / sha(data)
    assert stored.read_bytes() == data

    # The same file again: the creation answers complete, and tuspy (which sends from 0 anyway) is done.
    again = tus.uploader(file_stream=io.BytesIO(data), chunk_size=CHUNK, metadata=meta, upload_checksum=True)
    again.upload()
    assert again.offset == len(data)


@pytest.mark.slow
def test_tuspy_sees_the_servers_refusals(server, world):
    from tusclient.client import TusClient
    from tusclient.exceptions import TusCommunicationError

    tus = TusClient(server.url + UPLOADS, headers=world.headers("cadre"))
    page = b"<html>not a photo</html>"
    uploader = tus.uploader(
        file_stream=io.BytesIO(page), chunk_size=CHUNK, metadata={"sha256": sha(page), "filetype": "text/html"}
    )
    with pytest.raises(TusCommunicationError) as refused:
        uploader.upload()
    assert refused.value.status_code == 415
