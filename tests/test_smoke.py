def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json == {"status": "ok", "database": True}


def test_post_visit(client, world):
    from tests.factories import visit_note

    r = client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre"))
    assert r.status_code == 201, r.json


def test_the_wsgi_app_is_settled_for_a_long_running_process(tmp_path):
    """wsgi.py (every gunicorn worker) freezes what start-up built, out of the cyclic GC's full passes."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}"}
    out = subprocess.run(
        [sys.executable, "-c", "import gc, wsgi; print(gc.get_freeze_count())"],
        capture_output=True, text=True, env=env, check=True, cwd=os.path.dirname(os.path.dirname(__file__)),
    )  # fmt: skip
    assert int(out.stdout.split()[-1]) > 10_000
