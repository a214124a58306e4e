"""A write the server acknowledged survives the server being killed (SIGKILL) right after."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.factories import visit_note
from tests.servers import ServerProcess

pytestmark = pytest.mark.slow


def test_acknowledged_visits_survive_sigkill(app, world, db_url, tmp_path):
    server = ServerProcess(db_url, tmp_path / "srv").start()
    headers = world.headers("cadre")
    acknowledged: list[str] = []
    try:
        for round_ in range(5):
            for _ in range(4):
                note = visit_note(world, summary=f"第{round_}轮走访记录 {uuid.uuid4()}")
                r = requests.post(server.url + "/api/v1/visits", json=note, headers=headers, timeout=10)
                assert r.status_code == 201
                acknowledged.append(note["id"])
            server.kill()
            server.start()
        for visit_id in acknowledged:
            r = requests.get(f"{server.url}/api/v1/visits/{visit_id}", headers=headers, timeout=10)
            assert r.status_code == 200, visit_id
            assert len(r.json()["problems"]) == 2
        listed = requests.get(server.url + "/api/v1/visits?limit=100", headers=headers, timeout=10).json()
        assert len(listed["items"]) == len(acknowledged)
    finally:
        server.stop()


def test_healthz_is_503_when_the_database_is_unreachable(tmp_path):
    from server import create_app

    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    app = create_app({"DATABASE_URL": unreachable, "SECRET_KEY": "x"})
    r = app.test_client().get("/healthz")
    assert r.status_code == 503
    assert r.json == {"status": "unavailable", "database": False}
