"""Change numbers follow commit order: with concurrent writers, a puller never skips a change.

Each writer holds its transaction open for a random while *after* taking its change numbers,
which is exactly when a sequence- or timestamp-based cursor would let a reader jump past it.
"""

from __future__ import annotations

import random
import threading
import time
import uuid

from schemas.enums import ProblemCategory, Role, ServiceCategory
from server import db
from server.db.types import utcnow
from server.services import changes, sync, visits
from server.services.actors import Actor

WRITERS = 6
NOTES_EACH = 15


def test_concurrent_writers_never_let_a_puller_skip_a_change(app, world):
    cadre = Actor(world.users["cadre"], Role.cadre, device_id=world.devices["cadre"])
    written: list[uuid.UUID] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def write(n: int) -> None:
        rnd = random.Random(n)
        try:
            for _ in range(NOTES_EACH):
                with app.app_context(), db.session_scope(app) as session:
                    session.info[changes.AFTER_NUMBERING] = lambda _s: time.sleep(rnd.uniform(0, 0.02))
                    visit, _ = visits.create_visit(
                        session,
                        cadre,
                        {
                            "id": uuid.uuid4(),
                            "campaign_id": world.campaign,
                            "target_id": world.firm,
                            "visited_at": utcnow(),
                            "service_categories": [ServiceCategory.research],
                            "summary": f"并发写入 {n}",
                            "problems": [{"category": ProblemCategory.labor, "description": "用工"}],
                        },
                    )
                    written.append(visit.id)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)

    seen: set[str] = set()
    cursor = "0"

    def pull_once() -> None:
        nonlocal cursor
        with app.app_context(), db.read_session(app) as session:
            page = sync.pull(session, cadre, {"cursor": cursor, "limit": 7, "targets": [world.firm]})
        seen.update(str(c["id"]) for c in page["changes"] if c["entity"] == "visit")
        cursor = page["cursor"]

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        pull_once()
    for t in threads:
        t.join()
    done.set()
    for _ in range(1000):  # catch up with what is left
        before = cursor
        pull_once()
        if cursor == before:
            break
    assert not errors, errors
    assert len(written) == WRITERS * NOTES_EACH
    assert seen == {str(v) for v in written}
