"""Fixtures for the device side: a fake sync server on loopback and a logged-in Client."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client_sync import Client
from client_sync.transport import Backoff
from tests.client.fakesync import FakeSync
from tests.client.loopback import LoopbackServer


@pytest.fixture
def fake() -> Iterator[tuple[FakeSync, LoopbackServer]]:
    app = FakeSync()
    with LoopbackServer(app) as server:
        yield app, server


@pytest.fixture
def sleeps() -> list[float]:
    """Waits the client asked for (recorded, not slept, so tests stay fast)."""
    return []


def make_client(home: Path, url: str | None, sleeps: list[float], **kw: Any) -> Client:
    return Client(
        home,
        server_url=url,
        sleep=sleeps.append,
        backoff=Backoff(base=0.01, cap=0.1, rng=random.Random(7)),
        timeout=(2.0, 5.0),
        **kw,
    )


@pytest.fixture
def client(tmp_path: Path, fake: tuple[FakeSync, LoopbackServer], sleeps: list[float]) -> Iterator[Client]:
    _app, server = fake
    c = make_client(tmp_path / "home", server.url, sleeps)
    c.login("cadre", "pw")
    yield c
    c.close()


def write_note(client: Client, **kw: Any) -> str:
    """A valid note for made-up target and campaign ids (the device's cache is empty)."""
    fields: dict[str, Any] = {
        "target_id": str(uuid.uuid4()),
        "campaign_id": str(uuid.uuid4()),
        "summary": "走访企业，了解生产经营情况。",
        "service_categories": ["research"],
        "problems": ["融资:流动资金贷款利率偏高"],
    } | kw
    return str(client.add_note(**fields)["id"])
