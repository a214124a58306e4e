"""Property-based fuzzing of every API operation against the app's own OpenAPI document (Schemathesis).

The document is read from the app in-process (GET /api/openapi.json through the WSGI test client)
and every operation in it becomes one test per database. Each generates requests from the
documented parameters and bodies, both valid (positive) and deliberately invalid (negative), sends
them with the bearer token of a role that may call the operation, and checks every answer with
Schemathesis' checks (no 5xx, the answer's schema and content type are the documented ones, invalid
input is refused, valid input is not, a missing token is 401, ...) and two of ours: every error is
the one error body (server/errors.py), and the status is listed for the operation by name, not
merely covered by the `default` response, which documents the error body and nothing else.

Path parameters of valid requests name, often, a record that exists (a visit, problem, referral,
follow-up, ... made before the test), so that the operations are fuzzed past their 404s.

Deterministic (derandomized, no example database) and bounded: MAX_EXAMPLES per operation, with
Schemathesis' coverage phase off, as building its cases costs seconds per operation at collection.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.specs.openapi.checks import is_unexpected_http_status_case, positive_data_acceptance

from server import create_app
from tests import factories
from tests.referral_helpers import referral_in

MAX_EXAMPLES = 8
API = "/api/v1"

# Hypothesis keeps caches (unicode tables, constants) in .hypothesis/ of the working directory:
# kept out of the repository. Examples are never stored (database=None below).
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "fieldvisit-hypothesis"))

# The operations whose valid requests (by the document) may still be refused for a reason no
# OpenAPI 3.0 schema can state; for them, and only them, the check that valid data is accepted
# (positive_data_acceptance) is left out. Every other check still runs on them.
_CURSOR = "a cursor is valid only as the server gave it (a made-up one is 400)"
_FROM_TO = "`from` after `to` is 422"
SCHEMA_CANNOT_SAY: dict[str, str] = {
    "GET /api/v1/targets": _CURSOR,
    "GET /api/v1/visits": f"{_CURSOR}; {_FROM_TO}",
    "GET /api/v1/problems": f"{_CURSOR}; {_FROM_TO}",
    "GET /api/v1/referrals": _CURSOR,
    "GET /api/v1/followups": _CURSOR,
    "GET /api/v1/reports/summary": _FROM_TO,
    "POST /api/v1/calendar/overrides": "the day is from 2000 to 2099: OpenAPI 3.0 has no bounds for dates",
    "POST /api/v1/campaigns": "starts_on after ends_on is 422",
    "PATCH /api/v1/campaigns/{campaign_id}": "starts_on after ends_on is 422",
    "POST /api/v1/visits": "the target and the campaign must exist (and the target be active)",
    "POST /api/v1/referrals": "the problems and departments must exist, the problems be open and unreferred",
    "POST /api/v1/users": "the department must exist; department staff must have one",
    "POST /api/v1/targets": "a park needs a park type, a firm's or project's park must be a park",
    "PUT /api/v1/users/{user_id}/portfolio": "the targets must exist",
    "PATCH /api/v1/users/{user_id}": "the department must exist; department staff must have one",
    "PATCH /api/v1/targets/{target_id}": "the park must exist and be a park; a park needs a park type",
    "PATCH /api/v1/problems/{problem_id}": "the department must exist; a deferral needs its reason",
    "POST /api/v1/problems/{problem_id}/merge": "the problem merged into must exist, be open and the same firm's",
    "POST /api/v1/followups/{followup_id}/complete": "what completing needs depends on the follow-up's kind",
    "POST /api/v1/followups/{followup_id}/reassign": "the assignee must be an active cadre or supervisor",
    "POST /api/v1/sync/push": "what a change needs (base_version, its payload's fields) depends on its kind",
    "POST /api/v1/sync/pull": "an app older than MIN_CLIENT_VERSION (configuration) is 426",
    "POST /api/v1/targets/import": "the file must be a CSV or XLSX with the list's columns",
    "POST /api/v1/uploads/": "Upload-Metadata must carry the file's sha256 (tus' base64 pairs)",
    "PATCH /api/v1/uploads/{upload_id}": "Upload-Checksum must be a digest of the chunk (else 400 or 460)",
}

# The statuses Schemathesis' checks take by default for a refused invalid request and for a
# missing required header (schemathesis.config._checks), to which two operations add their own.
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]
MISSING_HEADER = ["400", "401", "403", "406", "415", "422"]

CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        # NUL is refused in every text (WireSchema: no database stores it), a rule test_errors.py
        # checks on every field; OpenAPI 3.0 could only say so with a pattern on each string.
        # The bearer token is the test's own, not generated: an invalid request is then never one
        # that is invalid only for a token it lacks, which the test's token would make valid. That a
        # token is required is still checked (ignored_auth sends each operation without, and with
        # a wrong one).
        "generation": {"deterministic": True, "allow-x00": False, "with-security-parameters": False},
        "operations": [
            {
                # tus answers a missing or wrong Tus-Resumable header 412, as its protocol requires.
                "include-path-regex": "^/api/v1/uploads/",
                "checks": {
                    "negative_data_rejection": {"expected-statuses": [*REFUSALS, "412"]},
                    "missing_required_header": {"expected-statuses": [*MISSING_HEADER, "412"]},
                },
            },
            {
                # A protocol the server does not speak is 426 (update the app), not a 4xx of the list.
                "include-path-regex": "^/api/v1/sync/(push|pull)$",
                "checks": {"negative_data_rejection": {"expected-statuses": [*REFUSALS, "426"]}},
            },
        ],
    }
)


def _document() -> Any:
    """The app's OpenAPI document, read from a throwaway app (documenting needs no database)."""
    app = create_app({"DATABASE_URL": "sqlite://", "TESTING": True, "SECRET_KEY": "fuzz"})
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=CONFIG)


schema = _document()


@schemathesis.serializer("application/offset+octet-stream")
def _tus_chunk(ctx: Any, value: Any) -> dict[str, Any]:
    """A tus PATCH body: the chunk's bytes as they are."""
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode()}


def _role(method: str, path: str) -> str:
    """Whose token the requests carry: one that may call the operation."""
    path = path.removeprefix(API)
    if method in ("GET", "HEAD", "OPTIONS"):
        return "supervisor"  # reads everything
    if path.startswith(("/departments", "/users", "/campaigns", "/targets", "/calendar", "/devices")):
        return "admin"
    if path.startswith("/problems") or path == "/referrals" or path.endswith(("/reassign",)):
        return "supervisor"
    if path.startswith("/referrals/"):
        return "supervisor" if path.endswith(("/decide_return", "/decide_extension", "/review", "/cancel")) else "staff"
    return "cadre"  # visits, sync, attachments, uploads, follow-up completion, logout


class Records:
    """Ids of records that exist, by path parameter name, made for the operation under test
    (once per test: its examples share the test's database)."""

    def __init__(self, client: Any, world: factories.World, operation: str) -> None:
        path = operation.partition(" ")[2]
        self.ids: dict[str, list[str]] = {
            "department_id": [str(world.dept)],
            "user_id": [str(world.users["cadre"])],
            "campaign_id": [str(world.campaign)],
            "target_id": [str(world.firm)],
            # Another cadre's phone: revoking the caller's own would end the test's session.
            "device_id": [str(world.devices["other_cadre"])],
        }
        if "{visit_id}" in path or "{problem_id}" in path:
            note = factories.visit_note(world)
            r = client.post(f"{API}/visits", json=note, headers=world.headers("cadre"))
            assert r.status_code == 201, r.json
            self.ids["visit_id"] = [r.json["id"]]
            self.ids["problem_id"] = [p["id"] for p in r.json["problems"]]
        if "{referral_id}" in path:
            self.ids["referral_id"] = [referral_in(client, world, "issued")["id"]]
        if "{followup_id}" in path:  # a closed referral's revisit, given to the firm's cadre
            self.ids["followup_id"] = [f["id"] for f in referral_in(client, world, "closed")["followups"]]
        if "{day}" in path:
            day = dt.date(2026, 10, 10).isoformat()
            r = client.post(
                f"{API}/calendar/overrides", json={"day": day, "workday": True}, headers=world.headers("admin")
            )
            assert r.status_code == 201, r.json
            self.ids["day"] = [day]

    def use_some(self, case: Any) -> None:
        """A valid request names an existing record two times in three (chosen from the generated
        value, so the run stays deterministic); an invalid one is left as generated."""
        if case.meta is None or not case.meta.generation.mode.is_positive or not case.path_parameters:
            return
        for name, value in list(case.path_parameters.items()):
            known = self.ids.get(name)
            pick = zlib.crc32(str(value).encode())
            if known and pick % 3:
                case.path_parameters[name] = known[pick % len(known)]


def error_body(ctx: Any, response: Any, case: Any) -> None:
    """Every error is the one error body, with the answer's status."""
    if response.status_code < 400 or case.method == "HEAD":
        return  # a HEAD answer has no body
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and {"status", "code", "message"} <= set(body), body
    assert body["status"] == response.status_code, body
    assert set(body) <= {"status", "code", "message", "errors", "details"}, body


def documented_status(ctx: Any, response: Any, case: Any) -> None:
    """The status is listed for the operation itself: `default` describes the error body only."""
    if is_unexpected_http_status_case(case):
        return  # a probe of another method (405): not the operation's answer
    listed = {str(code) for code in case.operation.definition.raw["responses"] if str(code) != "default"}
    assert str(response.status_code) in listed, f"{response.status_code} is not documented (only {sorted(listed)})"


@pytest.fixture
def records(request: pytest.FixtureRequest, client: Any, world: factories.World) -> Records:
    return Records(client, world, request.node.operation_label)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api(case: Any, app: Any, world: factories.World, records: Records) -> None:
    records.use_some(case)
    excluded = [positive_data_acceptance] if case.operation.label in SCHEMA_CANNOT_SAY else []
    case.call_and_validate(
        app=app,
        headers=world.headers(_role(case.method, case.operation.path)),
        additional_checks=[error_body, documented_status],
        excluded_checks=excluded,
    )
