"""One error body everywhere, the right status for each failure, and no partial writes."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from server import db
from server.db.models import Problem, Visit
from tests.factories import visit_note

ERROR_KEYS = {"status", "code", "message"}


def assert_error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    body = r.json
    assert set(body) >= ERROR_KEYS
    assert body["status"] == status
    if code:
        assert body["code"] == code
    assert "Traceback" not in r.get_data(as_text=True)
    return body


def count(app, model) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(model))


def test_malformed_json_is_400(client, world):
    r = client.post(
        "/api/v1/visits", data='{"summary": "半截', content_type="application/json", headers=world.headers("cadre")
    )
    assert_error(r, 400, "bad_request")


def test_an_integer_python_will_not_read_is_malformed_json(app, client, world):
    """An integer of more than 4,300 digits is refused by Python's json with a plain ValueError
    (not JSONDecodeError), which was a 500: it is 400 like any malformed body, on a note, an edit
    and a push, and nothing is stored."""
    from tests.factories import PASSWORD
    from tests.sync_helpers import device

    h = world.headers("cadre")
    huge = "9" * 5000
    r = client.post("/api/v1/visits", data='{"summary": "x", "size": ' + huge + "}", content_type="application/json",
                    headers=h)  # fmt: skip
    assert_error(r, 400, "bad_request")
    visit = client.post("/api/v1/visits", json=visit_note(world), headers=h).json
    r = client.patch(f"/api/v1/visits/{visit['id']}", data='{"summary": "改写", "version": ' + huge + "}",
                     content_type="application/json", headers=h)  # fmt: skip
    assert_error(r, 400, "bad_request")
    phone = device(client, "cadre", PASSWORD)
    body = '{"device_id": "' + phone.device_id + '", "queue_depth": ' + huge + ', "changes": []}'
    r = client.post("/api/v1/sync/push", data=body, content_type="application/json", headers=phone.headers)
    assert_error(r, 400, "bad_request")
    assert client.get(f"/api/v1/visits/{visit['id']}", headers=h).json["version"] == 1


def test_json_that_is_not_an_object_is_422(client, world):
    r = client.post("/api/v1/visits", data="[1, 2]", content_type="application/json", headers=world.headers("cadre"))
    assert_error(r, 422)


def test_missing_token_is_401_with_challenge(client):
    r = client.get("/api/v1/visits")
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_garbage_token_is_401(client):
    r = client.get("/api/v1/visits", headers={"Authorization": "Bearer not-a-token"})
    assert_error(r, 401, "invalid_token")


def test_forbidden_is_403(client, world):
    assert_error(client.get("/api/v1/reports/summary", headers=world.headers("cadre")), 403, "forbidden")


def test_unknown_url_and_unknown_id_are_404(client, world):
    assert_error(client.get("/api/v1/nothing-here", headers=world.headers("cadre")), 404, "not_found")
    assert_error(client.get(f"/api/v1/visits/{uuid.uuid4()}", headers=world.headers("cadre")), 404, "not_found")
    # Not a UUID: the URL does not exist either.
    assert_error(client.get("/api/v1/visits/123", headers=world.headers("cadre")), 404)


def test_wrong_method_is_405_with_allow(client, world):
    r = client.delete("/api/v1/campaigns", headers=world.headers("admin"))
    assert_error(r, 405, "method_not_allowed")
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_wrong_method_is_405_whatever_the_body(client, world):
    """A body that is not JSON does not make a wrong method 415 (found by test_api_fuzz.py)."""
    h = world.headers("admin")
    for url in ("/api/v1/visits", "/api/v1/targets/import"):
        r = client.put(url, data=b"x", content_type="text/plain", headers=h)
        assert_error(r, 405, "method_not_allowed")
    assert_error(client.post("/api/v1/nothing-here", data=b"x", content_type="text/plain", headers=h), 404)


def test_stale_version_is_409_and_changes_nothing(client, world):
    h = world.headers("admin")
    url = f"/api/v1/targets/{world.firm}"
    assert client.patch(url, json={"address": "一", "version": 1}, headers=h).status_code == 200
    body = assert_error(client.patch(url, json={"address": "二", "version": 1}, headers=h), 409, "version_conflict")
    assert body["details"] == {"current_version": 2}
    assert client.get(url, headers=h).json["address"] == "一"


def test_duplicate_is_409(client, world):
    h = world.headers("admin")
    body = {"code": "dup", "name": "重复部门"}
    assert client.post("/api/v1/departments", json=body, headers=h).status_code == 201
    assert_error(client.post("/api/v1/departments", json=body, headers=h), 409, "integrity_conflict")


def test_too_large_is_413(app, client, world):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    r = client.post("/api/v1/visits", json=visit_note(world, summary="很长" * 1000), headers=world.headers("cadre"))
    assert_error(r, 413, "payload_too_large")


def test_wrong_content_type_is_415(client, world):
    r = client.post(
        "/api/v1/visits", data=json.dumps(visit_note(world)), content_type="text/plain", headers=world.headers("cadre")
    )
    assert_error(r, 415, "unsupported_media_type")
    r = client.post("/api/v1/visits", data={"summary": "x"}, headers=world.headers("cadre"))
    assert_error(r, 415)


def test_validation_is_422_with_field_errors(app, client, world):
    note = visit_note(world, summary="", service_categories=["dancing"])
    note["problems"][0]["category"] = "unknown"
    body = assert_error(
        client.post("/api/v1/visits", json=note, headers=world.headers("cadre")), 422, "validation_error"
    )
    assert set(body["errors"]) >= {"summary", "service_categories", "problems"}
    assert count(app, Visit) == 0


def test_unknown_field_is_422(client, world):
    body = assert_error(
        client.post(
            "/api/v1/visits", json=visit_note(world, cadre_id=str(uuid.uuid4())), headers=world.headers("cadre")
        ),
        422,
    )
    assert "cadre_id" in body["errors"]


def test_a_boolean_is_true_or_false_and_nothing_else(client, world):
    """1, 0, "true" or "on" for a boolean are 422, as documented (type: boolean; found by test_api_fuzz.py)."""
    h = world.headers("admin")
    for n, value in enumerate([0, 1, "true", "on"]):
        r = client.post("/api/v1/departments", json={"code": f"d{n}", "name": f"部门{n}", "active": value}, headers=h)
        assert "active" in assert_error(r, 422, "validation_error")["errors"], value
    r = client.post("/api/v1/calendar/overrides", json={"day": "2026-10-10", "workday": "false"}, headers=h)
    assert "workday" in assert_error(r, 422)["errors"]
    r = client.post("/api/v1/departments", json={"code": "d9", "name": "部门9", "active": False}, headers=h)
    assert r.status_code == 201 and r.json["active"] is False
    # Query strings are text: there "true" and "false" are the booleans.
    assert client.get("/api/v1/users?active=false", headers=h).status_code == 200


def test_an_integer_is_a_json_integer_and_nothing_else(client, world):
    """An integer sent as "2", 2.0 or true is 422, as documented (type: integer), and changes
    nothing; query strings are text, where "20" is the number."""
    h = world.headers("cadre")
    visit = client.post("/api/v1/visits", json=visit_note(world), headers=h).json
    for value in ["1", 1.0, True]:
        r = client.patch(f"/api/v1/visits/{visit['id']}", json={"summary": "改写", "version": value}, headers=h)
        assert "version" in assert_error(r, 422, "validation_error")["errors"], value
    assert client.get(f"/api/v1/visits/{visit['id']}", headers=h).json["summary"] == visit["summary"]
    r = client.patch(f"/api/v1/visits/{visit['id']}", json={"summary": "改写", "version": 1}, headers=h)
    assert r.status_code == 200 and r.json["version"] == 2
    assert client.get("/api/v1/visits?limit=20", headers=h).status_code == 200


def test_reference_to_nothing_is_422(app, client, world):
    body = assert_error(
        client.post(
            "/api/v1/visits", json=visit_note(world, target_id=str(uuid.uuid4())), headers=world.headers("cadre")
        ),
        422,
    )
    assert "target_id" in body["errors"]


def test_a_failing_write_leaves_nothing_behind(app, client, world):
    """The second problem's id is taken: the whole note is refused, the visit is not half-stored."""
    first = client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre")).json
    note = visit_note(world)
    note["problems"][1]["id"] = first["problems"][0]["id"]
    assert_error(client.post("/api/v1/visits", json=note, headers=world.headers("cadre")), 409)
    assert count(app, Visit) == 1
    assert count(app, Problem) == 2


def test_bad_query_parameters_are_422_not_500(client, world):
    h = world.headers("supervisor")
    for query in (
        "limit=0",
        "limit=100000",
        "limit=abc",
        "from=2026-13-01",
        "from=2026-02-01&to=2026-01-01",
        "status=sleeping",
        "target=not-a-uuid",
        "q=" + "长" * 200,
    ):
        assert_error(client.get(f"/api/v1/problems?{query}", headers=h), 422)


def test_the_calendars_first_and_last_day_are_dates_like_any_other(client, world):
    """from=0001-01-01 and to=9999-12-31 begin and end, in UTC, outside what a datetime holds: they
    gave a 500 (OverflowError) on every list and report taking days (found by test_api_fuzz.py)."""
    h = world.headers("supervisor")
    client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre"))
    for url in ("/api/v1/visits", "/api/v1/problems", "/api/v1/reports/summary"):
        for query in ("from=0001-01-01", "to=9999-12-31", "from=0001-01-01&to=9999-12-31"):
            r = client.get(f"{url}?{query}", headers=h)
            assert r.status_code == 200, (url, query, r.get_data(as_text=True))
        every_day = client.get(f"{url}?from=0001-01-01&to=9999-12-31", headers=h).json
        assert every_day | {"from": None, "to": None} == client.get(url, headers=h).json | {"from": None, "to": None}


@pytest.mark.parametrize("cursor", ["garbage", "W10", "eyJhIjoxfQ", "WzEsMiwzXQ", "W251bGwsbnVsbF0"])
def test_bad_cursor_is_400(client, world, cursor):
    assert_error(client.get(f"/api/v1/problems?cursor={cursor}", headers=world.headers("supervisor")), 400)


JUNK = [None, 0, -1, 10**30, 1.5, "", "x" * 10_000, [], {}, [None], {"a": {"b": {"c": []}}}, True]
JUNK += ["\u0000", "😀", "\ud800"]  # NUL, an astral character, an unpaired surrogate (no database stores it)


def send_json(client, url: str, body, headers, method: str = "POST"):
    """`body` encoded as phones encode it (\\u escapes), so that even an unpaired surrogate travels
    (the test client's `json=` refuses to encode one)."""
    return client.open(url, method=method, data=json.dumps(body), content_type="application/json", headers=headers)


@pytest.mark.parametrize(
    "url,method,who",
    [
        ("/api/v1/visits", "POST", "cadre"),
        ("/api/v1/targets", "POST", "admin"),
        ("/api/v1/users", "POST", "admin"),
        ("/api/v1/departments", "POST", "admin"),
        ("/api/v1/campaigns", "POST", "admin"),
        ("/api/v1/auth/login", "POST", "anonymous"),
    ],
)
def test_junk_in_any_field_never_gives_500(client, world, url, method, who):
    headers = {} if who == "anonymous" else world.headers(who)
    fields = {
        "/api/v1/visits": list(visit_note(world)),
        "/api/v1/targets": ["kind", "name", "park_id", "park_type", "active"],
        "/api/v1/users": ["username", "role", "department_id", "password", "display_name"],
        "/api/v1/departments": ["code", "name", "email"],
        "/api/v1/campaigns": ["code", "name", "starts_on", "ends_on"],
        "/api/v1/auth/login": ["username", "password", "device_id"],
    }[url]
    for field in fields:
        for junk in JUNK:
            body = visit_note(world) if url == "/api/v1/visits" else {}
            body[field] = junk
            r = send_json(client, url, body, headers, method)
            assert r.status_code < 500, (field, junk, r.get_data(as_text=True))
            if r.status_code >= 400:
                assert set(r.json) >= ERROR_KEYS


def test_error_body_is_documented_in_openapi(client):
    spec = client.get("/api/openapi.json").json
    schema = spec["components"]["schemas"]["Error"]
    assert {"status", "code", "message", "errors", "details"} <= set(schema["properties"])
    assert "DEFAULT_ERROR" in spec["components"]["responses"]


def test_every_operation_lists_the_errors_of_what_it_is(client):
    """401 with a token, 404 with a record in the URL, 400 with a JSON body, 413/415 for a write that
    takes JSON or nothing (server.api.CommonAnswers; found missing by test_api_fuzz.py)."""
    spec = client.get("/api/openapi.json").json
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            listed = set(operation["responses"])
            if operation.get("security") != []:
                assert "401" in listed, (method, path)
            if "{" in path:
                assert "404" in listed, (method, path)
            takes = set(operation.get("requestBody", {}).get("content", {}))
            if "application/json" in takes:
                assert "400" in listed, (method, path)
            if method in ("post", "put", "patch") and takes <= {"application/json"}:
                assert {"413", "415"} <= listed, (method, path)
