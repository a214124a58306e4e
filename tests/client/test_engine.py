"""The sync engine against a protocol-speaking server on loopback (tests/client/fakesync.py).

The answers that are hard to provoke on the real server — a lost answer after commit, a server
restored from a backup (sequence gap), 413, 503 with Retry-After, a dropped upload — are made
here; the everyday flows run against the real server in test_end_to_end.py.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from client_sync import LoginRequired, Progress
from client_sync.engine import PIPELINE
from client_sync.store import loads
from tests.client.conftest import make_client, write_note
from tests.client.loopback import error


def pushes(server) -> list[list[int]]:
    return [[c["seq"] for c in r.json()["changes"]] for r in server.requests if r.path == "/api/v1/sync/push"]


def outbox(client) -> dict[int, dict]:
    return {r["seq"]: r for r in client.store.rows("SELECT * FROM outbox ORDER BY seq")}


def test_push_in_seq_order_in_batches_then_nothing(client, fake):
    app, server = fake
    for _ in range(450):
        write_note(client)
    seen: list[Progress] = []
    report = client.sync(progress=seen.append)
    assert report.done, report.as_dict()
    assert pushes(server) == [list(range(1, 201)), list(range(201, 401)), list(range(401, 451))]
    assert [c["seq"] for c in app.applied] == list(range(1, 451))
    assert [p.done for p in seen if p.lane == "push"] == [200, 400, 450]
    assert client.status()["counts"]["acknowledged"] == 450
    assert server.requests[-1].path != "/api/v1/sync/push"
    before = len(server.requests)
    again = client.sync()
    assert again.done
    assert [r.path for r in server.requests[before:]] == ["/api/v1/sync/pull"]  # the 2nd sync is a no-op


def test_queue_depth_is_reported(client, fake):
    _app, server = fake
    for _ in range(3):
        write_note(client)
    client.sync(batch_size=2)
    assert [r.json()["queue_depth"] for r in server.requests if r.path == "/api/v1/sync/push"] == [3, 1]


def test_a_refused_note_needs_attention_the_rest_go_on_and_it_can_be_fixed(client, fake):
    app, _server = fake
    app.reject = lambda c: (
        {"code": "validation_error", "message": "The change is invalid.", "errors": {"summary": ["Too vague."]}}
        if "随便" in c["payload"].get("summary", "")
        else None
    )
    good1 = write_note(client)
    bad = write_note(client, summary="随便看看")
    good2 = write_note(client)
    client.sync()
    by_id = {n["id"]: n for n in client.status()["notes"]}
    assert by_id[good1]["status"] == by_id[good2]["status"] == "acknowledged"
    assert by_id[bad]["status"] == "needs_attention"
    assert by_id[bad]["reason"] == {
        "code": "validation_error", "message": "The change is invalid.", "errors": {"summary": ["Too vague."]}
    }  # fmt: skip
    fixed = client.fix(bad[:6], summary="了解企业用工情况，企业反映招工难。")
    assert fixed["seq"] == 4 and fixed["fixed"] == 2
    assert client.note(bad)["status"] == "queued"
    client.sync()
    assert client.note(bad)["status"] == "acknowledged"
    assert outbox(client)[2]["resolution"] == "fixed by 4"
    assert [c["seq"] for c in app.applied] == [1, 3, 4]
    assert app.applied[-1]["payload"]["summary"] == "了解企业用工情况，企业反映招工难。"


def test_a_lost_answer_is_replayed_never_applied_twice(client, fake):
    app, server = fake
    for _ in range(3):
        write_note(client)
    app.lose_next_push_answer = True
    report = client.sync()
    assert report.done
    assert pushes(server) == [[1, 2, 3], [1, 2, 3]]
    assert [c["seq"] for c in app.applied] == [1, 2, 3]
    assert report.lanes[0].counts["replayed"] == 3
    assert client.status()["counts"]["acknowledged"] == 3


def test_a_sequence_gap_resends_from_the_expected_seq_never_renumbering(client, fake):
    app, server = fake
    for _ in range(3):
        write_note(client)
    client.sync()
    app.last_seq = 1  # the server was restored from a backup: it lost seqs 2 and 3
    app.stored = {1: app.stored[1]}
    write_note(client)
    report = client.sync()
    assert report.done
    assert pushes(server)[-2:] == [[4], [2, 3, 4]]
    assert [c["seq"] for c in app.applied] == [1, 2, 3, 2, 3, 4]
    assert {r["status"] for r in outbox(client).values()} == {"acknowledged"}


def test_a_batch_that_overtakes_the_one_before_it_is_sent_again_in_its_turn(client, fake):
    app, server = fake
    for _ in range(4):
        write_note(client)
    overtaken = threading.Event()
    # The first batch is held at the server until the second (sent behind it) has been answered.
    app.before_push = lambda body: body["changes"][0]["seq"] == 1 and overtaken.wait(5)
    app.after_push = lambda body: body["changes"][0]["seq"] == 3 and overtaken.set()
    report = client.sync(batch_size=2)
    assert report.done and overtaken.is_set()
    assert [c["seq"] for c in app.applied] == [1, 2, 3, 4]
    firsts = [r.json()["changes"][0]["seq"] for r in server.requests if r.path == "/api/v1/sync/push"]
    assert sorted(firsts) == [1, 3, 3]  # the overtaking batch went twice, and was applied once
    assert report.lanes[0].counts["acknowledged"] == 4


def test_an_edit_waits_for_the_answer_before_it(client, fake):
    """An edit is never sent while the batch before it is unanswered: that answer may re-base it."""
    app, _server = fake
    note = write_note(client)
    write_note(client)
    client.edit_note(note, summary="补充：企业已获得贷款。")
    in_flight: list[int] = []
    seen: list[list[int]] = []  # at each push's arrival, the pushes still unanswered

    def arrive(body):
        seen.append(list(in_flight))
        in_flight.append(body["changes"][0]["seq"])
        if body["changes"][0]["seq"] == 1:
            time.sleep(0.3)  # time enough for a batch sent behind it to arrive

    app.before_push = arrive
    app.after_push = lambda body: in_flight.remove(body["changes"][0]["seq"])
    assert client.sync(batch_size=2).done
    assert seen == [[], []]  # the edit's batch (seq 3) went out alone
    assert [c["kind"] for c in app.applied] == ["visit.create", "visit.create", "visit.update"]


def test_a_transient_failure_leaves_the_notes_queued(client, fake):
    app, _server = fake
    note = write_note(client)
    app.forced = [error(503, "unavailable", headers={"Retry-After": "2"})] * 5
    report = client.sync()
    assert not report.ok and report.lanes[0].error_code == "unavailable"
    assert len(report.lanes) == 1  # the other lanes would fail the same way
    shown = client.note(note)
    assert shown["status"] == "queued" and shown["reason"]["code"] == "network"
    assert outbox(client)[1]["attempts"] == 1
    assert client.sync().done
    assert client.note(note)["status"] == "acknowledged"


def test_413_halves_the_batch(client, fake):
    app, server = fake
    for _ in range(8):
        write_note(client)
    app.forced = [error(413, "payload_too_large")]
    assert client.sync().done
    assert pushes(server) == [list(range(1, 9)), [1, 2, 3, 4], [5, 6, 7, 8]]


def test_401_asks_for_a_login_once_keeps_the_queue_and_does_not_loop(client, fake):
    app, server = fake
    for _ in range(3):
        write_note(client)
    app.forced = [error(401, "invalid_token", "The token is invalid, expired or revoked; log in again.")]
    with pytest.raises(LoginRequired):
        client.sync()
    status = client.status()
    assert status["needs_login"] and not status["logged_in"]
    assert status["queue_depth"] == 3 and status["counts"]["queued"] == 3
    asked = len(server.requests)
    with pytest.raises(LoginRequired):
        client.sync()
    assert len(server.requests) == asked  # no request until the cadre logs in again
    client.login("cadre", "pw")
    assert client.sync().done
    assert [c["seq"] for c in app.applied] == [1, 2, 3]


def test_offline_edits_with_predicted_versions_sync_without_conflict(client, fake):
    app, server = fake
    note = write_note(client)
    client.edit_note(note, summary="第一次修改")
    client.add_problem(note, "用工", "招工难")
    client.edit_note(note, service_categories=["research", "金融支持"])
    assert [r["base_version"] for r in outbox(client).values()] == [None, 1, None, 2]
    report = client.sync()
    assert report.done and report.lanes[0].counts == {
        "acknowledged": 4,
        "needs_attention": 0,
        "conflict": 0,
        "replayed": 0,
    }
    assert app.versions[note] == 3
    assert pushes(server) == [[1, 2, 3], [4]]  # a second edit of one record waits for the first's answer
    assert client.note(note)["service_categories"] == ["research", "financial_support"]


def test_an_edit_on_a_changed_record_conflicts_and_later_edits_never_overwrite(client, fake):
    app, _server = fake
    note = write_note(client)
    client.sync()
    app.edit_on_server(note)  # someone else changed it: the server is at version 2
    client.edit_note(note, summary="本机修改一")
    client.edit_note(note, summary="本机修改二")  # predicted to base on 2, which the device never saw
    client.sync()
    changes = outbox(client)
    assert changes[2]["status"] == changes[3]["status"] == "conflict"
    assert changes[3]["base_version"] == 1  # re-based on what the device saw, not applied blindly
    assert [c["kind"] for c in app.applied] == ["visit.create"]
    shown = client.note(note)
    assert shown["status"] == "conflict" and shown["reason"]["code"] == "version_conflict"
    assert uuid.UUID(changes[2]["conflict_id"])


def test_a_refused_edit_re_bases_the_next_one(client, fake):
    app, _server = fake
    note = write_note(client)
    client.sync()
    app.reject = lambda c: {"code": "forbidden", "message": "No."} if c["payload"].get("summary") == "不行" else None
    client.edit_note(note, summary="不行")
    client.edit_note(note, summary="可以")
    client.sync()
    changes = outbox(client)
    assert changes[2]["status"] == "needs_attention"
    assert changes[3]["status"] == "acknowledged" and changes[3]["base_version"] == 1
    assert app.versions[note] == 2


def test_stop_after_n_batches_then_go_on(client, fake):
    app, _server = fake
    for _ in range(50):
        write_note(client)
    report = client.sync(batch_size=10, max_batches=2)
    assert report.lanes[0].steps == 2 and report.pending_changes == 30
    stop = threading.Event()
    stopped = client.sync(batch_size=10, stop=stop, progress=lambda p: stop.set())
    # No batch goes out after the stop; those already out (PIPELINE at most) are answered.
    assert stopped.pending_changes == 30 - 10 * PIPELINE
    assert client.sync(batch_size=10).done
    assert [c["seq"] for c in app.applied] == list(range(1, 51))


def test_pull_pages_store_the_cursor_and_fill_the_cache(client, fake):
    app, server = fake
    for n in range(1200):
        app.publish("target", {"id": str(uuid.uuid4()), "name": f"企业{n}", "kind": "firm", "active": True})
    report = client.sync()
    assert report.lanes[1].steps == 3 and report.lanes[1].counts["changes"] == 1200
    assert [r.json()["cursor"] for r in server.requests if r.path == "/api/v1/sync/pull"] == ["0", "500", "1000"]
    assert client.store.get("cursor") == "1200"
    assert len(client.targets()) == 1200
    gone = client.targets()[0]
    app.publish("target", gone, op="delete")
    client.sync()
    assert len(client.targets()) == 1199 and gone["id"] not in {t["id"] for t in client.targets()}


def test_an_expired_cursor_rebuilds_the_cache_and_keeps_the_outbox(client, fake):
    app, _server = fake
    firm = str(uuid.uuid4())
    app.publish("target", {"id": firm, "name": "企业甲"})
    client.sync()
    client.store.set(cursor="999")  # e.g. the server was restored from an older backup
    with client.store.transaction() as db:
        db.execute("""INSERT INTO cache VALUES ('target', 'stale', 1, NULL, NULL, '{"name": "旧"}')""")
    note = write_note(client, target_id=firm)
    report = client.sync(lanes=("pull",))
    assert report.ok and report.lanes[0].counts["rebuilt"] == 1
    assert [t["name"] for t in client.targets()] == ["企业甲"]
    assert client.note(note)["status"] == "queued"
    assert client.sync().done and client.note(note)["status"] == "acknowledged"


def test_files_upload_after_the_notes_and_only_once(client, fake, tmp_path):
    app, server = fake
    photo = tmp_path / "门口.jpg"
    photo.write_bytes(os.urandom(700_000))
    note = write_note(client, files=[photo])
    report = client.sync()
    assert report.done
    paths = [r.path for r in server.requests]
    assert paths.index("/api/v1/sync/push") < paths.index("/api/v1/attachments/missing")
    assert client.note(note)["attachments"] == {"total": 1, "uploaded": 1, "pending": 0, "refused": 0, "lost": 0}
    assert photo.read_bytes() in app.files.values()
    other = write_note(client, files=[photo])  # the same photo again: the server has it
    before = len(server.requests)
    client.sync()
    assert not [r for r in server.requests[before:] if r.path.startswith("/api/v1/uploads")]
    assert client.note(other)["attachments"]["uploaded"] == 1


def test_a_failing_upload_never_stops_the_notes(client, fake, tmp_path):
    app, _server = fake
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8" + os.urandom(1000))
    note = write_note(client, files=[photo])
    app.forced = [None, None] + [error(500, "internal_error")] * 5  # push, pull fine; /missing fails
    report = client.sync()
    assert [lane.ok for lane in report.lanes] == [True, True, False]
    assert client.note(note)["status"] == "acknowledged"
    assert client.note(note)["attachments"]["pending"] == 1


def test_a_file_refused_for_good_does_not_block_the_next(client, fake, tmp_path):
    app, _server = fake
    big, small = tmp_path / "big.mov", tmp_path / "small.jpg"
    big.write_bytes(os.urandom(300_000))
    small.write_bytes(os.urandom(3000))
    note = write_note(client, files=[big, small])
    original = app.tus
    app.tus = lambda request, upload_id: (  # type: ignore[method-assign]
        error(413, "payload_too_large", "Files may be at most 200 KB.")
        if request.method == "POST" and int(request.headers["Upload-Length"]) > 200_000
        else original(request, upload_id)
    )
    report = client.sync()
    assert report.lanes[2].counts == {"refused": 1, "uploaded": 1}
    assert client.note(note)["attachments"] == {"total": 2, "uploaded": 1, "pending": 0, "refused": 1, "lost": 0}
    reason = loads(client.store.scalar("SELECT reason FROM files WHERE status = 'refused'"))
    assert reason["code"] == "payload_too_large"


def test_an_upload_interrupted_resumes_from_the_remembered_url(client, fake, tmp_path, sleeps):
    app, server = fake
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(2 * 1024 * 1024))
    write_note(client, files=[photo])
    stop = threading.Event()
    client.sync(stop=stop, progress=lambda p: stop.set() if p.lane == "upload" else None)
    url = client.store.scalar("SELECT upload_url FROM files")
    assert url and client.store.scalar("SELECT status FROM files") == "pending"
    client.close()
    again = make_client(client.home, None, sleeps)  # a new process: only the database remembers
    assert again.sync().done
    assert [r.method for r in server.requests if r.path.startswith("/api/v1/uploads")].count("POST") == 1
    assert photo.read_bytes() in app.files.values()
    again.close()


def test_sync_until_done_rides_out_a_busy_server(client, fake):
    app, _server = fake
    write_note(client)
    app.forced = [error(503, "unavailable")] * 12
    report = client.sync_until_done(max_rounds=10)
    assert report.done and len(app.applied) == 1


def test_an_answer_for_another_change_with_the_same_seq_is_never_taken_as_acknowledged(client, fake):
    app, _server = fake
    app.last_seq = 1  # the server holds seq 1 of this device already: another note (a restored phone)
    app.stored = {1: {"seq": 1, "record_id": str(uuid.uuid4()), "status": "applied", "version": 1}}
    note = write_note(client)
    report = client.sync()
    assert not report.ok and report.lanes[0].error_code == "protocol"
    assert client.note(note)["status"] != "acknowledged" and client.store.get("next_seq") == 2
