"""Login, tokens bound to devices, expiry, revocation, and the login rate limit."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from server import db
from server.db.models import AuditEntry, AuthToken
from tests.factories import PASSWORD


def login(client, username, password=PASSWORD, **kw):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password, **kw})


def test_login_returns_a_token_that_works(client, world):
    r = login(client, "cadre", device_name="华为 Mate")
    assert r.status_code == 200, r.json
    assert r.json["token_type"] == "Bearer"
    assert r.json["expires_at"].endswith("+08:00")
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json['token']}"})
    assert me.status_code == 200
    assert me.json["username"] == "cadre"
    assert me.json["role"] == "cadre"


def test_token_is_stored_only_as_a_hash(app, client, world):
    token = login(client, "cadre").json["token"]
    with app.app_context():
        hashes = db.session().scalars(select(AuthToken.token_hash)).all()
    assert token not in hashes
    assert all(len(h) == 64 for h in hashes)


def test_wrong_password_and_unknown_user_look_the_same(client, world):
    a = login(client, "cadre", "wrong-password-xx")
    b = login(client, "nobody", "wrong-password-xx")
    assert a.status_code == b.status_code == 401
    assert a.json == b.json
    assert a.json["code"] == "invalid_credentials"


def test_inactive_user_cannot_log_in(app, client, world):
    admin = world.headers("admin")
    user = client.get(f"/api/v1/users/{world.users['cadre']}", headers=admin).json
    r = client.patch(
        f"/api/v1/users/{world.users['cadre']}", json={"active": False, "version": user["version"]}, headers=admin
    )
    assert r.status_code == 200
    assert login(client, "cadre").status_code == 401
    # The tokens the user already had stop working too.
    assert client.get("/api/v1/auth/me", headers=world.headers("cadre")).status_code == 401


def test_logout_revokes_only_that_token(client, world):
    first = login(client, "cadre").json["token"]
    second = login(client, "cadre").json["token"]
    h1, h2 = ({"Authorization": f"Bearer {t}"} for t in (first, second))
    assert client.post("/api/v1/auth/logout", headers=h1).status_code == 204
    assert client.get("/api/v1/auth/me", headers=h1).status_code == 401
    assert client.get("/api/v1/auth/me", headers=h2).status_code == 200


def test_revoking_a_device_cuts_it_off(client, world):
    device_id = str(uuid.uuid4())
    token = login(client, "cadre", device_id=device_id).json["token"]
    phone = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=phone).status_code == 200
    r = client.post(f"/api/v1/devices/{device_id}/revoke", headers=world.headers("admin"))
    assert r.status_code == 200
    assert r.json["revoked_at"]
    assert client.get("/api/v1/auth/me", headers=phone).status_code == 401
    again = login(client, "cadre", device_id=device_id)
    assert again.status_code == 403
    assert again.json["code"] == "device_revoked"
    # The cadre's other devices keep working.
    assert client.get("/api/v1/auth/me", headers=world.headers("cadre")).status_code == 200


def test_a_cadre_can_revoke_their_own_device_but_not_others(client, world):
    device_id = str(uuid.uuid4())
    login(client, "cadre", device_id=device_id)
    assert client.post(f"/api/v1/devices/{device_id}/revoke", headers=world.headers("other_cadre")).status_code == 404
    assert client.post(f"/api/v1/devices/{device_id}/revoke", headers=world.headers("cadre")).status_code == 200


def test_a_device_belongs_to_one_user(client, world):
    device_id = str(uuid.uuid4())
    assert login(client, "cadre", device_id=device_id).status_code == 200
    r = login(client, "other_cadre", device_id=device_id)
    assert r.status_code == 409
    assert r.json["code"] == "device_taken"


def test_expired_token_is_refused(app, client, world):
    import datetime as dt

    from sqlalchemy import update

    token = login(client, "cadre").json["token"]
    with app.app_context(), db.session_scope() as s:
        from server.services.auth import token_digest

        s.execute(
            update(AuthToken)
            .where(AuthToken.token_hash == token_digest(token))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    r = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json["code"] == "invalid_token"


def test_login_is_audited_with_the_device(app, client, world):
    device_id = str(uuid.uuid4())
    login(client, "cadre", device_id=device_id)
    with app.app_context():
        entry = db.session().scalars(select(AuditEntry).where(AuditEntry.action == "login")).one()
    assert str(entry.device_id) == device_id
    assert entry.actor_id == world.users["cadre"]


def test_login_attempts_are_rate_limited(db_url, tmp_path):
    from server import create_app
    from tests import factories

    app = create_app({"DATABASE_URL": db_url, "LOGIN_RATE_LIMIT": "3 per minute", "SECRET_KEY": "x"})
    with app.app_context(), db.session_scope() as s:
        factories.gen_user(s, username="someone")
    client = app.test_client()
    codes = [login(client, "someone", "wrong-password-xx").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    r = login(client, "someone")
    assert r.status_code == 429
    assert r.json["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) > 0
    app.extensions["db_engine"].dispose()


def test_a_read_request_is_one_transaction_with_its_authentication(app, client, world):
    """A GET reads the token in the request's own reader session; a write reads it apart first
    (so that on SQLite the token's touch never waits on the request's own write lock)."""
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine()
    headers = world.headers("cadre")
    client.get("/api/v1/auth/me", headers=headers)  # the token's first use is noted (a write of its own)
    begins = []

    def count(_conn):
        begins.append(1)

    event.listen(engine, "begin", count)
    try:
        assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
        read = len(begins)
        begins.clear()
        assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    finally:
        event.remove(engine, "begin", count)
    assert read == 1
    assert len(begins) == 2  # the token read apart, then the request's write transaction


def test_a_token_notes_its_use_at_most_once_a_minute(app, client, world):
    """A request notes when its token and device were last used (the console's device list shows
    it), but not more often than auth.TOUCH_SECONDS, so that reads stay reads."""
    import datetime as dt

    from sqlalchemy import update

    from server.db.models import Device
    from server.services.auth import TOUCH_SECONDS

    def seen():
        with db.read_session(app) as s:
            token = s.scalars(select(AuthToken).where(AuthToken.device_id == world.devices["cadre"])).one()
            return token.last_used_at, s.get(Device, world.devices["cadre"]).last_seen_at

    assert client.get("/api/v1/auth/me", headers=world.headers("cadre")).status_code == 200
    used, device_seen = seen()
    assert used is not None and used == device_seen
    assert client.get("/api/v1/auth/me", headers=world.headers("cadre")).status_code == 200
    assert seen() == (used, device_seen)  # within the minute: nothing written
    earlier = used - dt.timedelta(seconds=TOUCH_SECONDS + 1)
    with db.session_scope(app) as s:
        s.execute(update(AuthToken).where(AuthToken.device_id == world.devices["cadre"]).values(last_used_at=earlier))
    assert client.get("/api/v1/auth/me", headers=world.headers("cadre")).status_code == 200
    again, device_again = seen()
    assert again > earlier and again == device_again >= device_seen
