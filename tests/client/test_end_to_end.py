"""End to end: client_sync against the real server (gunicorn on loopback, a fresh database per test).

The cadre logs in, goes "offline" simply by not syncing, writes notes, and syncs. Each test skips
with one line while the server does not serve the endpoints it needs (read from its OpenAPI).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from client_sync import Client, LoginRequired
from client_sync.cli import main
from tests.factories import PASSWORD, World
from tests.servers import ServerProcess

pytestmark = pytest.mark.slow

SYNC = ("/api/v1/sync/push", "/api/v1/sync/pull")
UPLOADS = ("/api/v1/attachments/missing", "/api/v1/uploads/")


def _served(app: Any, paths: tuple[str, ...]) -> None:
    served = set(app.test_client().get("/api/openapi.json").json["paths"])
    missing = [p for p in paths if p not in served]
    if missing:
        pytest.skip(f"the server does not serve {', '.join(missing)} yet")


@pytest.fixture
def live(app, world, db_url, tmp_path, monkeypatch) -> Iterator[ServerProcess]:
    _served(app, SYNC)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "srv"))  # the server's files stay in the test's tmp
    server = ServerProcess(db_url, tmp_path / "srv").start()
    yield server
    server.stop()


@pytest.fixture
def phone(live, tmp_path) -> Iterator[Client]:
    client = Client(tmp_path / "phone", server_url=live.url)
    client.login("cadre", PASSWORD)
    yield client
    client.close()


class Api:
    """The REST API as another user sees it (the supervisor, an admin, the cadre on a laptop)."""

    def __init__(self, server: ServerProcess, world: World) -> None:
        self.server, self.world = server, world

    def __call__(self, who: str, method: str, path: str, **kw: Any) -> Any:
        r = requests.request(method, self.server.url + path, headers=self.world.headers(who), timeout=10, **kw)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json() if r.content else None

    def device(self, device_id: str) -> dict[str, Any]:
        """The supervisors' view of one device."""
        return next(d for d in self("supervisor", "GET", "/api/v1/sync/devices") if d["id"] == device_id)

    def visits(self) -> list[dict[str, Any]]:
        return list(self("supervisor", "GET", "/api/v1/visits?limit=500")["items"])


@pytest.fixture
def api(live, world) -> Api:
    return Api(live, world)


def note(phone: Client, world: World, target: uuid.UUID | None = None, **kw: Any) -> str:
    fields: dict[str, Any] = {
        "target_id": str(target or world.firm),
        "campaign_id": str(world.campaign),
        "summary": "走访企业，了解生产经营情况。企业反映融资难融资贵，招工难。",
        "service_categories": ["research", "financial_support"],
        "problems": ["融资:流动资金贷款利率偏高，融资难融资贵。", "用工:招工难，用工成本增加。"],
    } | kw
    return str(phone.add_note(**fields)["id"])


def test_a_cadres_day(phone, world, api):
    first = phone.sync()
    assert first.done, first.as_dict()
    assert [t["id"] for t in phone.targets(portfolio_only=True)] == [str(world.firm)]
    written = [note(phone, world, summary=f"第{n}次走访：企业反映融资难融资贵。") for n in range(3)]  # offline
    assert phone.status()["counts"]["queued"] == 3 and api.visits() == []
    report = phone.sync()
    assert report.done and report.lanes[0].counts["acknowledged"] == 3
    on_server = api.visits()
    assert sorted(v["id"] for v in on_server) == sorted(written)  # each once
    assert all(len(v["problems"]) == 2 for v in on_server)
    assert phone.status()["counts"] == {"queued": 0, "sent": 0, "acknowledged": 3, "needs_attention": 0, "conflict": 0}
    assert api.device(phone.device_id)["last_seq"] == 3 and api.device(phone.device_id)["queue_depth"] == 3
    again = phone.sync()  # the 2nd sync is a no-op
    assert again.done and again.lanes[0].steps == 0 and again.lanes[1].counts.get("changes", 0) == 0
    assert len(api.visits()) == 3
    assert api.device(phone.device_id)["last_seq"] == 3


def test_a_refused_note_needs_attention_never_blocks_and_is_fixed(phone, world, api):
    phone.sync()
    project = api("admin", "GET", f"/api/v1/targets/{world.project}")
    api("admin", "PATCH", f"/api/v1/targets/{world.project}", json={"active": False, "version": project["version"]})
    refused = note(phone, world, target=world.project)  # the phone has not heard yet
    good = note(phone, world)
    phone.sync()
    shown = phone.note(refused)
    assert shown["status"] == "needs_attention"
    assert shown["reason"]["code"] == "validation_error" and "target_id" in shown["reason"]["errors"]
    assert phone.note(good)["status"] == "acknowledged"
    rejections = api("supervisor", "GET", "/api/v1/sync/rejections")
    assert [(r["seq"], r["record_id"]) for r in rejections] == [(1, refused)]
    fixed = phone.fix(refused[:8], target_id=str(world.firm), summary="改为走访企业：企业反映用工成本增加。")
    assert fixed["seq"] == 3
    assert phone.sync().done
    assert phone.note(refused)["status"] == "acknowledged"
    stored = {v["id"]: v for v in api.visits()}
    assert sorted(stored) == sorted([refused, good])
    assert stored[refused]["target_id"] == str(world.firm) and stored[refused]["summary"].startswith("改为")


def test_a_conflict_shows_keeps_both_versions_and_can_be_resolved(phone, world, api):
    written = note(phone, world)
    phone.sync()
    api("cadre", "PATCH", f"/api/v1/visits/{written}", json={"summary": "在电脑上改过的走访情况", "version": 1})
    phone.edit_note(written, summary="手机上离线改的走访情况")  # based on version 1: the phone never saw 2
    phone.sync()
    shown = phone.note(written)
    assert shown["status"] == "conflict" and shown["reason"]["code"] == "version_conflict"
    conflicts = api("cadre", "GET", "/api/v1/sync/conflicts")
    assert [c["device_payload"]["summary"] for c in conflicts] == ["手机上离线改的走访情况"]
    assert conflicts[0]["id"] == shown["reason"]["conflict_id"]
    assert api("cadre", "GET", f"/api/v1/visits/{written}")["summary"] == "在电脑上改过的走访情况"  # not overwritten
    phone.resolve_conflict(written[:8], "use_device")
    phone.sync()
    assert api("cadre", "GET", f"/api/v1/visits/{written}")["summary"] == "手机上离线改的走访情况"
    shown = phone.note(written)
    assert shown["status"] == "acknowledged" and shown["summary"] == "手机上离线改的走访情况"
    phone.edit_note(written, location_text="徐州经济技术开发区")  # the next edit bases on the pulled version
    assert phone.sync().done and phone.note(written)["status"] == "acknowledged"


def test_offline_edits_with_predicted_versions_sync_without_conflict(phone, world, api):
    written = note(phone, world)
    phone.edit_note(written, summary="第一次修改：企业反映融资难。")
    phone.add_problem(written, "人才住房", "引进人才住房保障不足。")
    phone.edit_note(written, service_categories=["research", "burden_reduction"])
    report = phone.sync()
    assert report.done and report.lanes[0].counts["conflict"] == 0
    stored = api("cadre", "GET", f"/api/v1/visits/{written}")
    assert stored["version"] == 3 and stored["service_categories"] == ["research", "burden_reduction"]
    assert [p["category"] for p in stored["problems"]] == ["financing", "labor", "talent_housing"]


def test_a_revoked_token_asks_for_a_login_once_and_keeps_the_queue(phone, world, api, live):
    phone.sync()
    written = [note(phone, world) for _ in range(2)]
    revoked = requests.post(
        live.url + "/api/v1/auth/logout", headers={"Authorization": f"Bearer {phone.transport.token}"}, timeout=10
    )
    assert revoked.status_code == 204
    with pytest.raises(LoginRequired):
        phone.sync()
    status = phone.status()
    assert status["needs_login"] and status["queue_depth"] == 2
    with pytest.raises(LoginRequired):
        phone.sync()  # asks again without calling the server: no loop
    phone.login("cadre", PASSWORD)
    assert phone.sync().done
    assert sorted(v["id"] for v in api.visits()) == sorted(written)


def test_an_unknown_cursor_rebuilds_the_cache_and_keeps_the_outbox(phone, world, api):
    phone.sync()
    written = note(phone, world)
    phone.store.set(cursor="99999999")  # e.g. the server was restored from an older backup
    report = phone.sync()
    assert report.done and report.lanes[1].counts["rebuilt"] == 1
    assert {t["id"] for t in phone.targets()} == {str(world.firm), str(world.park), str(world.project)}
    assert [v["id"] for v in api.visits()] == [written]


def test_a_target_gained_is_back_filled_and_a_target_lost_is_dropped(phone, world, api):
    theirs = api(
        "other_cadre", "POST", "/api/v1/visits",
        json={"id": str(uuid.uuid4()), "campaign_id": str(world.campaign), "target_id": str(world.project),
              "visited_at": "2026-11-20T10:30:00+08:00", "service_categories": ["project_progress"],
              "summary": "项目推进情况：用地指标不足。", "problems": []},
    )  # fmt: skip
    phone.sync()
    cached = lambda: {r["id"] for r in phone.store.rows("SELECT id FROM cache WHERE entity = 'visit'")}  # noqa: E731
    assert theirs["id"] not in cached()
    users = str(world.users["cadre"])
    api("admin", "PUT", f"/api/v1/users/{users}/portfolio", json={"target_ids": [str(world.firm), str(world.project)]})
    mine = note(phone, world, target=world.project)
    assert phone.sync().done
    assert {theirs["id"], mine} <= cached()
    api("admin", "PUT", f"/api/v1/users/{users}/portfolio", json={"target_ids": [str(world.firm)]})
    phone.sync()
    assert theirs["id"] not in cached() and mine in cached()  # its own notes stay


def test_photos_upload_resumably_after_the_notes(phone, world, api, app, tmp_path):
    _served(app, UPLOADS)
    photo = tmp_path / "车间.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + uuid.uuid4().bytes * 80_000)  # about 1.3 MB: several chunks
    written = note(phone, world, files=[photo])
    report = phone.sync()
    assert report.done, report.as_dict()
    assert phone.note(written)["attachments"] == {"total": 1, "uploaded": 1, "pending": 0, "refused": 0, "lost": 0}
    stored = api("cadre", "GET", f"/api/v1/visits/{written}")["attachments"]
    assert [(a["filename"], a["status"]) for a in stored] == [("车间.jpg", "available")]
    again = phone.sync()
    assert again.done and again.lanes[2].counts == {}  # nothing pending: not even a question


def test_the_cli_against_the_real_server(live, world, tmp_path, capsys):
    home = tmp_path / "cli-phone"

    def run(*args: str) -> dict[str, Any]:
        code = main(["--home", str(home), *args, "--json"])
        out = capsys.readouterr().out
        assert code == 0, out
        return dict(json.loads(out))

    run("login", "--server", live.url, "--username", "cadre", "--password", PASSWORD)
    run("sync")
    added = run(
        "add", "--target", str(world.firm), "--campaign", str(world.campaign), "--summary", "走访企业，了解经营情况。",
        "--category", "走访调研", "--problem", "融资:贷款利率偏高",
    )  # fmt: skip
    assert run("status")["counts"]["queued"] == 1
    assert run("sync")["done"]
    assert run("status", added["id"][:8])["note"]["status"] == "acknowledged"
    assert Path(home / "client.db").exists()
