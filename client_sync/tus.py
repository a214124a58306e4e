"""A small tus 1.0 client (https://tus.io/protocols/resumable-upload): core, creation, checksum, termination.

An upload is created with its length and metadata, then sent in chunks of 256 KB–1 MB, each
with ``Upload-Checksum`` (sha256 or sha1 of the chunk). When a chunk fails — a dropped
connection, an offset the server does not expect (409), a checksum mismatch (460) — the client
asks ``HEAD`` for the server's offset and resumes at that byte. The upload URL is handed to
``on_created`` as soon as it exists, so a process killed mid-upload resumes instead of restarting.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from client_sync.errors import ApiError, ProtocolError, TransportError, UsageError
from client_sync.transport import Transport

TUS_VERSION = "1.0.0"
MIN_CHUNK = 256 * 1024
MAX_CHUNK = 1024 * 1024
CHECKSUMS = ("sha256", "sha1")


def encode_metadata(metadata: dict[str, str]) -> str:
    """Upload-Metadata: comma-separated ``key base64(value)`` pairs."""
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items())


@dataclass
class Upload:
    url: str
    offset: int
    length: int

    @property
    def complete(self) -> bool:
        return self.offset >= self.length


class TusClient:
    """Uploads files to a tus 1.0 endpoint through the client's Transport (auth, timeouts, headers)."""

    def __init__(
        self,
        transport: Transport,
        endpoint: str = "/api/v1/uploads/",
        *,
        chunk_size: int = 512 * 1024,
        checksum: str = "sha256",
        max_failures: int = 8,
    ) -> None:
        if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be between {MIN_CHUNK} and {MAX_CHUNK} bytes")
        if checksum not in CHECKSUMS:
            raise ValueError(f"checksum must be one of {CHECKSUMS}")
        self.transport = transport
        self.endpoint = endpoint
        self.chunk_size = chunk_size
        self.checksum = checksum
        self.max_failures = max_failures

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Tus-Resumable": TUS_VERSION, **extra}

    def create(self, length: int, metadata: dict[str, str]) -> str:
        """POST the upload's length and metadata; the server answers 201 with its URL."""
        response = self.transport.request(
            "POST",
            self.endpoint,
            headers=self._headers(**{"Upload-Length": str(length), "Upload-Metadata": encode_metadata(metadata)}),
        )
        location = response.headers.get("Location")
        if not location:
            raise ProtocolError("The tus server created an upload without a Location.")
        return urljoin(response.url, location)

    def offset(self, url: str) -> int:
        """HEAD: how many bytes of the upload the server holds."""
        response = self.transport.request("HEAD", url, headers=self._headers())
        value = response.headers.get("Upload-Offset", "")
        if not value.isdigit():
            raise ProtocolError(f"HEAD {url} answered without Upload-Offset.")
        return int(value)

    def terminate(self, url: str) -> None:
        """DELETE an upload that will not be finished (termination extension); gone already is fine."""
        try:
            self.transport.request("DELETE", url, headers=self._headers())
        except ApiError as e:
            if e.status not in (404, 410):
                raise

    def send_chunk(self, url: str, offset: int, chunk: bytes) -> int:
        """PATCH one chunk at `offset` with its checksum; returns the server's new offset."""
        digest = base64.b64encode(hashlib.new(self.checksum, chunk).digest()).decode()
        response = self.transport.request(
            "PATCH",
            url,
            data=chunk,
            headers=self._headers(
                **{
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                    "Upload-Checksum": f"{self.checksum} {digest}",
                }
            ),
            retry=False,  # after a failure the offset is asked for again, never assumed
        )
        value = response.headers.get("Upload-Offset", "")
        if not value.isdigit() or int(value) <= offset:
            raise ProtocolError(f"PATCH {url} answered without a new Upload-Offset ({value!r}).")
        return int(value)

    def upload(
        self,
        path: str | Path,
        *,
        length: int,
        metadata: dict[str, str],
        url: str | None = None,
        on_created: Callable[[str], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Upload:
        """Send the file, resuming `url` if given; stops early (incomplete) when `stop` is set."""
        offset = 0
        if url is not None:
            try:
                offset = self.offset(url)
            except ApiError as e:
                if e.status not in (404, 410):
                    raise
                url = None  # expired or finished and forgotten: start again
        if url is None:
            url = self.create(length, metadata)
            if on_created:
                on_created(url)
        failures = 0
        with open(path, "rb") as f:
            while offset < length:
                if stop is not None and stop.is_set():
                    break
                f.seek(offset)
                chunk = f.read(min(self.chunk_size, length - offset))
                if not chunk:
                    raise UsageError(f"{path} is shorter than {length} bytes.", zh=f"文件已被改动：{path}")
                try:
                    offset = self.send_chunk(url, offset, chunk)
                    failures = 0
                    if progress:
                        progress(offset, length)
                    continue
                except TransportError as e:
                    error: Exception = e
                except ApiError as e:
                    if e.status in (404, 410):  # the server dropped the upload: start a new one
                        url, offset = self.create(length, metadata), 0
                        if on_created:
                            on_created(url)
                    elif e.status not in (409, 460):  # 409: offset mismatch, 460: checksum mismatch
                        raise
                    error = e
                failures += 1
                if failures > self.max_failures:
                    raise error
                self.transport.sleep(self.transport.backoff.delay(failures - 1))
                offset = self.offset(url)
        return Upload(url, offset, length)
