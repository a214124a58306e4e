"""HTTP against a real server on loopback: timeouts, backoff with full jitter, Retry-After, headers."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from client_sync import LoginRequired, NetworkError, ServerUnavailable, __version__
from client_sync.errors import ApiError, CursorExpired, SequenceGap, UpgradeRequired
from client_sync.transport import Backoff, Transport, retry_after
from schemas.protocol import PROTOCOL_VERSION
from tests.client.loopback import LoopbackServer, error, reply
from tests.servers import free_port


def scripted(*answers):
    """An app that gives these answers in turn, then 200 {"ok": true}."""
    queue = list(answers)
    return lambda request: queue.pop(0) if queue else reply(200, {"ok": True})


def transport(url: str, sleeps: list[float] | None = None, **kw) -> Transport:
    sleep = sleeps.append if sleeps is not None else time.sleep
    return Transport(url, token="tok", sleep=sleep, backoff=Backoff(base=0.5, cap=8, rng=random.Random(1)), **kw)


def test_every_request_says_who_is_calling():
    with LoopbackServer(scripted()) as server:
        transport(server.url).post_json("/api/v1/sync/pull", {"cursor": "0"})
    headers = server.requests[0].headers
    assert headers["X-Client-Protocol"] == str(PROTOCOL_VERSION)
    assert headers["X-Client-Version"] == __version__
    assert headers["User-Agent"].startswith(f"client_sync/{__version__} ")
    assert headers["Authorization"] == "Bearer tok"
    assert len(headers["X-Request-ID"]) == 32


def test_busy_answers_are_retried_with_full_jitter_backoff():
    sleeps: list[float] = []
    with LoopbackServer(
        scripted(error(503, "unavailable"), error(502, "bad_gateway"), error(500, "internal_error"))
    ) as s:
        assert transport(s.url, sleeps).post_json("/x", {}) == {"ok": True}
    assert len(s.requests) == 4
    assert len({r.headers["X-Request-ID"] for r in s.requests}) == 1  # one logical request
    for attempt, wait in enumerate(sleeps):
        assert 0 <= wait <= min(8, 0.5 * 2**attempt)


def test_full_jitter_spreads_waits_over_the_whole_window():
    backoff = Backoff(base=1, cap=30, rng=random.Random(5))
    waits = [backoff.delay(3) for _ in range(2000)]
    assert 0 <= min(waits) < 0.5 and 7.5 < max(waits) <= 8
    assert 3.5 < sum(waits) / len(waits) < 4.5
    assert max(backoff.delay(20) for _ in range(100)) <= 30  # capped


def test_retry_after_is_honoured_really_waiting():
    with LoopbackServer(scripted(error(429, "rate_limited", headers={"Retry-After": "1"}))) as server:
        started = time.monotonic()
        transport(server.url).post_json("/x", {})
        assert time.monotonic() - started >= 1.0
    assert len(server.requests) == 2


def test_retry_after_as_an_http_date():
    sleeps: list[float] = []
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    with LoopbackServer(scripted(error(503, "unavailable", headers={"Retry-After": when}))) as server:
        transport(server.url, sleeps).post_json("/x", {})
    assert 28 <= sleeps[0] <= 30
    assert retry_after("soon") is None and retry_after(None) is None and retry_after("7") == 7


def test_a_retry_after_beyond_the_patience_is_raised_at_once_with_the_hint():
    sleeps: list[float] = []
    answer = error(503, "unavailable", headers={"Retry-After": "3600"})
    with LoopbackServer(scripted(answer)) as server, pytest.raises(ServerUnavailable) as caught:
        transport(server.url, sleeps, max_wait=60).post_json("/x", {})
    assert caught.value.retry_after == 3600 and caught.value.status == 503
    assert isinstance(caught.value.__cause__, ApiError)
    assert sleeps == [] and len(server.requests) == 1


def test_retries_run_out():
    sleeps: list[float] = []
    with LoopbackServer(lambda r: error(503, "unavailable")) as server, pytest.raises(ServerUnavailable):
        transport(server.url, sleeps, retries=3).post_json("/x", {})
    assert len(server.requests) == 4 and len(sleeps) == 3


def test_a_refused_connection_is_a_network_error_after_the_retries():
    sleeps: list[float] = []
    with pytest.raises(NetworkError) as caught:
        transport(f"http://127.0.0.1:{free_port()}", sleeps, retries=2).post_json("/x", {})
    assert len(sleeps) == 2
    assert caught.value.__cause__ is not None  # raise … from the requests exception


def test_a_read_timeout_is_a_network_error():
    def slow(request):
        time.sleep(0.6)
        return reply(200, {})

    with LoopbackServer(slow) as server, pytest.raises(NetworkError, match="Timeout"):
        transport(server.url, retries=0, timeout=(1.0, 0.2)).post_json("/x", {})


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (error(401, "invalid_token"), LoginRequired),
        (error(426, "client_too_old"), UpgradeRequired),
        (error(410, "cursor_expired"), CursorExpired),
        (error(409, "sequence_gap", details={"expected_seq": 7}), SequenceGap),
        (error(422, "validation_error", errors={"summary": ["Missing data for required field."]}), ApiError),
        ((404, {"Content-Type": "text/html"}, b"<h1>no</h1>"), ApiError),
    ],
)
def test_answers_with_a_reason_are_raised_at_once_never_retried(answer, kind):
    sleeps: list[float] = []
    with LoopbackServer(scripted(answer)) as server, pytest.raises(kind) as caught:
        transport(server.url, sleeps).post_json("/x", {})
    assert len(server.requests) == 1 and sleeps == []
    assert caught.value.status == answer[0]
    if kind is SequenceGap:
        assert caught.value.expected_seq == 7


def test_no_token_means_no_request():
    with LoopbackServer(scripted()) as server:
        with pytest.raises(LoginRequired):
            Transport(server.url).post_json("/api/v1/sync/push", {})
        assert server.requests == []
