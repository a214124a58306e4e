"""Our tus 1.0 client against a tus endpoint on loopback: chunks, checksums, resume, termination."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from client_sync.errors import ApiError
from client_sync.tus import MAX_CHUNK, MIN_CHUNK, TusClient, encode_metadata
from tests.client.fakesync import TOKEN, FakeSync
from tests.client.loopback import LoopbackServer
from tests.client.test_transport import transport

KB = 1024


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(os.urandom(1300 * KB))
    return path


def _tus(server: LoopbackServer, sleeps: list[float], **kw) -> TusClient:
    t = transport(server.url, sleeps)
    t.token = TOKEN
    return TusClient(t, chunk_size=256 * KB, **kw)


def _meta(path) -> dict[str, str]:
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "filename": path.name, "filetype": "image/jpeg"}


@pytest.mark.parametrize("checksum", ["sha256", "sha1"])
def test_upload_in_checked_chunks(photo, checksum):
    app = FakeSync()
    with LoopbackServer(app) as server:
        done = _tus(server, [], checksum=checksum).upload(photo, length=photo.stat().st_size, metadata=_meta(photo))
    assert done.complete
    assert app.files[_meta(photo)["sha256"]] == photo.read_bytes()
    patches = [r for r in server.requests if r.method == "PATCH"]
    assert len(patches) == 6  # 1300 KB in 256 KB chunks
    assert all(r.headers["Upload-Checksum"].startswith(checksum + " ") for r in patches)
    assert all(r.headers["Tus-Resumable"] == "1.0.0" for r in server.requests)
    created = server.requests[0]
    assert created.headers["Upload-Length"] == str(1300 * KB)
    assert created.headers["Upload-Metadata"] == encode_metadata(_meta(photo))


def test_a_dropped_connection_resumes_at_the_servers_offset(photo):
    app = FakeSync()
    sleeps: list[float] = []
    with LoopbackServer(app) as server:
        tus = _tus(server, sleeps)
        app.drop_patch_after = 100 * KB  # the server keeps part of the chunk, then the line drops
        done = tus.upload(photo, length=photo.stat().st_size, metadata=_meta(photo))
    assert done.complete and app.files[_meta(photo)["sha256"]] == photo.read_bytes()
    methods = [r.method for r in server.requests]
    assert methods.count("POST") == 1  # never restarted from zero
    assert methods[:4] == ["POST", "PATCH", "HEAD", "PATCH"]
    assert server.requests[3].headers["Upload-Offset"] == str(100 * KB)  # resumed at that byte
    assert len(sleeps) == 1


def test_a_checksum_mismatch_sends_the_chunk_again(photo):
    app = FakeSync()
    with LoopbackServer(app) as server:
        app.corrupt_next_patch = True
        done = _tus(server, []).upload(photo, length=photo.stat().st_size, metadata=_meta(photo))
    assert done.complete and app.files[_meta(photo)["sha256"]] == photo.read_bytes()
    assert [r.method for r in server.requests][:4] == ["POST", "PATCH", "HEAD", "PATCH"]


def test_a_remembered_upload_url_resumes_after_the_process_stopped(photo):
    app = FakeSync()
    remembered: list[str] = []
    stop = threading.Event()
    with LoopbackServer(app) as server:
        tus = _tus(server, [])
        half = tus.upload(
            photo, length=photo.stat().st_size, metadata=_meta(photo), on_created=remembered.append,
            progress=lambda done, total: stop.set() if done >= 512 * KB else None, stop=stop,
        )  # fmt: skip
        assert not half.complete and half.offset == 512 * KB
        done = _tus(server, []).upload(photo, length=photo.stat().st_size, metadata=_meta(photo), url=remembered[0])
    assert done.complete and done.url == remembered[0]
    assert [r.method for r in server.requests].count("POST") == 1
    assert app.files[_meta(photo)["sha256"]] == photo.read_bytes()


def test_an_upload_the_server_forgot_starts_again(photo):
    app = FakeSync()
    with LoopbackServer(app) as server:
        done = _tus(server, []).upload(
            photo, length=photo.stat().st_size, metadata=_meta(photo), url=server.url + "/api/v1/uploads/gone"
        )
    assert done.complete and done.url != server.url + "/api/v1/uploads/gone"


def test_termination(photo):
    app = FakeSync()
    with LoopbackServer(app) as server:
        tus = _tus(server, [])
        url = tus.create(photo.stat().st_size, _meta(photo))
        tus.terminate(url)
        tus.terminate(url)  # gone already is fine
        with pytest.raises(ApiError) as caught:
            tus.offset(url)
    assert caught.value.status == 404 and app.uploads == {}


def test_chunk_size_is_bounded():
    for size in (MIN_CHUNK - 1, MAX_CHUNK + 1):
        with pytest.raises(ValueError):
            TusClient(transport("http://127.0.0.1:1"), chunk_size=size)
