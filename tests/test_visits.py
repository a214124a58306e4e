"""Visit notes: create (idempotent on the client id), read, edit with versions, withdraw."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from sqlalchemy import func, select

from server import db
from server.db.models import AuditEntry, Visit
from tests.factories import visit_note


def post(client, world, who="cadre", **kw):
    return client.post("/api/v1/visits", json=visit_note(world, **kw), headers=world.headers(who))


def test_create_keeps_client_ids_and_times_in_shanghai(client, world):
    note = visit_note(world, visited_at="2026-11-20T02:30:00Z")
    r = client.post("/api/v1/visits", json=note, headers=world.headers("cadre"))
    assert r.status_code == 201
    body = r.json
    assert body["id"] == note["id"]
    assert [p["id"] for p in body["problems"]] == [p["id"] for p in note["problems"]]
    assert body["visited_at"] == "2026-11-20T10:30:00+08:00"
    assert body["cadre_id"] == str(world.users["cadre"])
    assert body["target_kind"] == "firm"
    assert body["problems"][0]["status"] == "open"
    assert body["problems"][0]["outcome"] is None
    assert body["problems"][0]["raised_at"] == body["visited_at"]


def test_a_time_without_offset_is_beijing_time(client, world):
    r = post(client, world, visited_at="2026-11-20T09:00:00")
    assert r.json["visited_at"] == "2026-11-20T09:00:00+08:00"


def test_retry_of_the_same_note_is_not_stored_twice(app, client, world):
    note = visit_note(world)
    first = client.post("/api/v1/visits", json=note, headers=world.headers("cadre"))
    again = client.post("/api/v1/visits", json=note, headers=world.headers("cadre"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json == first.json
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(Visit)) == 1


def test_same_id_with_other_content_is_a_conflict(client, world):
    note = visit_note(world)
    client.post("/api/v1/visits", json=note, headers=world.headers("cadre"))
    r = client.post("/api/v1/visits", json=note | {"summary": "另一份记录"}, headers=world.headers("cadre"))
    assert r.status_code == 409
    assert r.json["code"] == "id_taken"
    # Another cadre cannot claim the id either.
    assert client.post("/api/v1/visits", json=note, headers=world.headers("other_cadre")).status_code == 409


def test_server_assigns_ids_when_the_client_sends_none(client, world):
    note = visit_note(world)
    del note["id"]
    for p in note["problems"]:
        del p["id"]
    body = client.post("/api/v1/visits", json=note, headers=world.headers("cadre")).json
    assert uuid.UUID(body["id"])
    assert all(uuid.UUID(p["id"]) for p in body["problems"])


def test_inactive_target_is_refused(client, world):
    h = world.headers("admin")
    client.patch(f"/api/v1/targets/{world.firm}", json={"active": False, "version": 1}, headers=h)
    r = post(client, world)
    assert r.status_code == 422
    assert "target_id" in r.json["errors"]


def test_edit_needs_the_current_version(client, world):
    visit = post(client, world).json
    url = f"/api/v1/visits/{visit['id']}"
    h = world.headers("cadre")
    r = client.patch(url, json={"visited_at": "2026-11-21T15:00:00+08:00", "version": 1}, headers=h)
    assert r.status_code == 200
    assert r.json["version"] == 2
    assert {p["raised_at"] for p in r.json["problems"]} == {"2026-11-21T15:00:00+08:00"}
    stale = client.patch(url, json={"summary": "旧版本上的修改", "version": 1}, headers=h)
    assert stale.status_code == 409
    assert stale.json["details"]["current_version"] == 2


def test_add_a_problem_later(client, world):
    visit = post(client, world).json
    r = client.post(
        f"/api/v1/visits/{visit['id']}/problems",
        json={"category": "land", "description": "二期用地指标未落实。"},
        headers=world.headers("cadre"),
    )
    assert r.status_code == 201
    again = client.get(f"/api/v1/visits/{visit['id']}", headers=world.headers("cadre")).json
    assert [p["category"] for p in again["problems"]] == ["financing", "labor", "land"]


def test_withdraw_and_its_audit_trail(app, client, world):
    visit = post(client, world).json
    assert client.delete(f"/api/v1/visits/{visit['id']}", headers=world.headers("cadre")).status_code == 204
    assert client.get(f"/api/v1/visits/{visit['id']}", headers=world.headers("cadre")).status_code == 404
    with app.app_context():
        actions = db.session().execute(select(AuditEntry.action, AuditEntry.entity).order_by(AuditEntry.id)).all()
    assert ("create", "visit") in actions
    assert ("delete", "visit") in actions


def test_list_filters(client, world):
    h = world.headers("cadre")
    post(client, world, visited_at="2026-10-01T10:00:00+08:00", service_categories=["publicity"])
    post(client, world, visited_at="2026-11-01T10:00:00+08:00", target_id=str(world.project))
    post(client, world, visited_at="2026-11-02T23:30:00+08:00", target_id=str(world.park))

    def ids(query: str) -> int:
        r = client.get(f"/api/v1/visits?{query}", headers=h)
        assert r.status_code == 200, r.json
        return len(r.json["items"])

    assert ids("") == 3
    assert ids("kind=project") == 1
    assert ids(f"park={world.park}") == 3  # the park itself, and the firm and project in it
    assert ids(f"target={world.firm}") == 1
    assert ids("category=publicity") == 1
    assert ids("category=research") == 2
    assert ids("from=2026-11-01") == 2
    assert ids("to=2026-11-01") == 2
    # 23:30 Beijing time on 2 November is 15:30 UTC: it belongs to the 2nd, not the 3rd.
    assert ids("from=2026-11-02&to=2026-11-02") == 1
    assert ids("from=2026-11-03") == 0
    assert ids(f"campaign={world.campaign}") == 3
    assert ids(f"cadre={world.users['other_cadre']}") == 0


def test_pages_are_stable_and_complete(client, world):
    h = world.headers("cadre")
    made = set()
    for day in range(1, 13):
        made.add(post(client, world, visited_at=f"2026-11-{day:02d}T10:00:00+08:00").json["id"])
    # Same visited_at for several notes: the id breaks the tie.
    for _ in range(5):
        made.add(post(client, world, visited_at="2026-11-05T10:00:00+08:00").json["id"])
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/visits?limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=h).json
        seen += [v["id"] for v in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == len(made)
    assert set(seen) == made
    times = [client.get(f"/api/v1/visits/{i}", headers=h).json["visited_at"] for i in seen]
    assert times == sorted(times, reverse=True)


def test_a_note_stored_by_another_request_after_the_screening_is_answered_as_before(app, client, world, monkeypatch):
    """A POST screens its note (ids free, target active) before it takes the write lock. Should
    another request store one of its ids in between, the INSERT fails, nothing of it is kept, and
    the note is taken again under the lock: a retry is answered 200, another note 409."""
    from server.services import visits

    note = visit_note(world)
    first = client.post("/api/v1/visits", json=note, headers=world.headers("cadre"))
    screen, blinded = visits.NewNotes.__init__, []

    def blind_first_screen(self, session, notes):
        screen(self, session, notes)
        if not blinded:
            self._taken = set()  # as if the other request stored the note just after this screening
        blinded.append(self)

    monkeypatch.setattr(visits.NewNotes, "__init__", blind_first_screen)
    again = client.post("/api/v1/visits", json=note, headers=world.headers("cadre"))
    assert len(blinded) == 2  # the screening, then create_visit's under the lock
    assert (first.status_code, again.status_code) == (201, 200) and again.json == first.json
    blinded.clear()
    other = visit_note(world)
    other["problems"][0]["id"] = note["problems"][0]["id"]
    r = client.post("/api/v1/visits", json=other, headers=world.headers("cadre"))
    assert (r.status_code, r.json["code"]) == (409, "id_taken")
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(Visit)) == 1
        created = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "create")
        assert db.session().scalar(created) == 1


def test_a_post_holds_the_sqlite_write_lock_only_to_store_the_note(app, client, world, db_kind):
    """The screening runs in a read transaction (BEGIN DEFERRED) before the write lock (BEGIN
    IMMEDIATE) is taken for the INSERTs and the commit alone."""
    if db_kind != "sqlite":
        pytest.skip("SQLite's write lock")
    note = visit_note(world)
    client.get("/api/v1/visits", headers=world.headers("cadre"))  # the token's first use is noted
    with _statements(app) as statements:
        r = client.post("/api/v1/visits", json=note, headers=world.headers("cadre"))
    assert r.status_code == 201
    begins = [i for i, s in enumerate(statements) if s.startswith("BEGIN")]
    locked = [i for i in begins if statements[i] == "BEGIN IMMEDIATE"]
    assert len(locked) == 1, statements
    inside = statements[locked[0] : next((i for i in begins if i > locked[0]), len(statements))]
    assert not [s for s in inside if s.startswith("SELECT") and "FROM visits" in s], inside  # no screening
    assert any(s.startswith("INSERT INTO visits") for s in inside)
    before = statements[begins[begins.index(locked[0]) - 1] : locked[0]]
    assert statements[begins[begins.index(locked[0]) - 1]] == "BEGIN DEFERRED" and any("visits" in s for s in before)
    # The answer is built from the rows written or, for a note with attachments, read back after
    # the commit: never under the lock.
    assert all(statements[i] == "BEGIN DEFERRED" for i in begins if i > locked[0])


def test_a_retry_or_a_taken_id_is_answered_without_the_sqlite_write_lock(app, client, world, db_kind):
    """A note sent again (its first answer lost on the way) and a different note with its id are
    answered from the screening's read transaction: no BEGIN IMMEDIATE, nothing written."""
    if db_kind != "sqlite":
        pytest.skip("SQLite's write lock")
    note = visit_note(world)
    first = client.post("/api/v1/visits", json=note, headers=world.headers("cadre"))
    for sent, status in ((note, 200), (note | {"summary": "另一份记录"}, 409)):
        with _statements(app) as statements:
            r = client.post("/api/v1/visits", json=sent, headers=world.headers("cadre"))
        assert r.status_code == status
        assert "BEGIN IMMEDIATE" not in statements, statements
        assert not [s for s in statements if s.split()[0] in ("INSERT", "UPDATE", "DELETE")], statements
    assert r.json["code"] == "id_taken"
    again = client.post("/api/v1/visits", json=note, headers=world.headers("cadre"))
    assert again.json == first.json


@contextlib.contextmanager
def _statements(app):
    """The SQL statements (BEGIN included) run on the app's engine in the block, whitespace folded."""
    from sqlalchemy import event

    statements: list[str] = []
    with app.app_context():
        engine = db.engine()

    def trace(_conn, _cursor, statement, *_args):
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", trace)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", trace)


def test_the_same_note_posted_at_once_by_several_requests_is_stored_once(app, world, monkeypatch):
    """Four requests with one note, all screened before any stores it (a barrier after the
    screening): one INSERT wins, the others fail on the key, take the careful path under the
    lock and answer 200 with the same note. A different note with a taken id gets 409."""
    import threading

    from server.services import visits

    n, screen, waited = 4, visits.NewNotes.__init__, threading.local()
    barrier = threading.Barrier(n)

    def screen_together(self, session, notes):
        screen(self, session, notes)
        if not getattr(waited, "done", False):  # the first screening of each request, not the careful path's
            waited.done = True
            barrier.wait(timeout=20)

    monkeypatch.setattr(visits.NewNotes, "__init__", screen_together)

    def post_all(notes):
        answers, errors = [None] * n, []

        def one(i):
            try:
                r = app.test_client().post("/api/v1/visits", json=notes[i], headers=world.headers("cadre"))
                answers[i] = (r.status_code, r.json)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                waited.done = False

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        return answers

    note = visit_note(world)
    answers = post_all([note] * n)
    assert sorted(status for status, _ in answers) == [200, 200, 200, 201]
    assert all(body == answers[0][1] for _, body in answers)
    rivals = []
    for _ in range(n):  # other notes, each reusing one problem id of the stored note
        rival = visit_note(world)
        rival["problems"][0]["id"] = note["problems"][0]["id"]
        rivals.append(rival)
    barrier.reset()
    assert [(status, body["code"]) for status, body in post_all(rivals)] == [(409, "id_taken")] * n
    with app.app_context():
        s = db.session()
        assert s.scalar(select(func.count()).select_from(Visit)) == 1
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "create")) == 1


def test_a_new_notes_answer_is_the_note_as_read_back(client, world):
    """A new note's answer is built from the rows just written (or, with attachments, read back
    after the commit): either way it is exactly what GET answers for the note."""
    photo = {"id": str(uuid.uuid4()), "sha256": "ab" * 32, "filename": "车间.jpg", "content_type": "image/jpeg",
             "size": 1234, "caption": "生产线"}  # fmt: skip
    notes = [
        ("cadre", visit_note(world)),
        ("cadre", visit_note(world, target_id=str(world.project), problems=[], latitude=34.2612, longitude=117.1855,
                             location_text="项目工地", visited_at="2026-11-20T23:59:59.123456+08:00")),
        ("supervisor", visit_note(world, problems=[{"category": "other", "description": "未填编号的问题"}])),
        ("cadre", visit_note(world, attachments=[photo])),
    ]  # fmt: skip
    for who, note in notes:
        posted = client.post("/api/v1/visits", json=note, headers=world.headers(who))
        assert posted.status_code == 201, posted.json
        read = client.get(f"/api/v1/visits/{note['id']}", headers=world.headers("supervisor"))
        assert posted.json == read.json
    assert posted.json["attachments"][0]["status"] == "pending"
