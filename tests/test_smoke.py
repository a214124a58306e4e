def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json == {"status": "ok", "database": True}


def test_post_visit(client, world):
    from tests.factories import visit_note

    r = client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre"))
    assert r.status_code == 201, r.json
