"""Problems: triage by supervisors, outcome and status kept apart, deferred needs a reason."""

from __future__ import annotations

import pytest

from tests.factories import visit_note


@pytest.fixture
def problem(client, world):
    visit = client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre")).json
    return visit["problems"][0]


def patch(client, world, problem, who="supervisor", **body):
    current = client.get(f"/api/v1/problems/{problem['id']}", headers=world.headers("supervisor")).json
    return client.patch(
        f"/api/v1/problems/{problem['id']}", json={"version": current["version"], **body}, headers=world.headers(who)
    )


def test_outcomes_drive_status(client, world, problem):
    r = patch(client, world, problem, department_id=str(world.dept), outcome="coordinating", outcome_note="正在协调")
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["outcome"], r.json["closed_at"]) == ("open", "coordinating", None)
    assert r.json["outcome_at"]
    r = patch(client, world, problem, outcome="solved", outcome_note="已放贷")
    assert (r.json["status"], r.json["outcome"]) == ("closed", "solved")
    assert r.json["closed_at"]
    r = patch(client, world, problem, outcome=None)
    assert (r.json["status"], r.json["outcome"], r.json["closed_at"]) == ("open", None, None)


def test_deferred_needs_a_reason(client, world, problem):
    r = patch(client, world, problem, outcome="deferred")
    assert r.status_code == 422
    assert "outcome_reason" in r.json["errors"]
    r = patch(client, world, problem, outcome="deferred", outcome_reason="   ")
    assert r.status_code == 422
    r = patch(client, world, problem, outcome="deferred", outcome_reason="涉及国家关税政策，地方无权限。")
    assert (r.status_code, r.json["status"]) == (200, "closed")


def test_unknown_department_is_422(client, world, problem):
    import uuid

    r = patch(client, world, problem, department_id=str(uuid.uuid4()))
    assert r.status_code == 422
    assert "department_id" in r.json["errors"]


def test_the_cadre_may_reword_until_triage(client, world, problem):
    r = patch(client, world, problem, who="cadre", description="融资难，贷款利率高于同行。")
    assert r.status_code == 200
    assert patch(client, world, problem, who="cadre", outcome="solved").status_code == 403
    patch(client, world, problem, department_id=str(world.dept))
    r = patch(client, world, problem, who="cadre", description="再改一次")
    assert r.status_code == 403


def test_staff_see_a_problem_once_it_is_routed_to_them(client, world, problem):
    url = f"/api/v1/problems/{problem['id']}"
    assert client.get(url, headers=world.headers("staff")).status_code == 404
    patch(client, world, problem, department_id=str(world.dept))
    assert client.get(url, headers=world.headers("staff")).status_code == 200
    assert client.get(url, headers=world.headers("other_staff")).status_code == 404


def test_list_filters(client, world, problem):
    patch(client, world, problem, department_id=str(world.dept), outcome="solved")
    h = world.headers("supervisor")

    def n(query):
        r = client.get(f"/api/v1/problems?{query}", headers=h)
        assert r.status_code == 200, r.json
        return len(r.json["items"])

    assert n("") == 2
    assert n("status=closed") == 1
    assert n("status=open") == 1
    assert n("outcome=solved") == 1
    assert n("category=labor") == 1
    assert n(f"department={world.dept}") == 1
    assert n("kind=firm") == 2
    assert n("kind=park") == 0
    assert n(f"cadre={world.users['cadre']}") == 2
