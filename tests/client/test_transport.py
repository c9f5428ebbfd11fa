"""Retries, timeouts, error bodies and chunking, against real HTTP servers on loopback that misbehave on cue."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from diabetes_client import (
    AuthenticationError,
    Client,
    InvalidInputError,
    ModelInfo,
    ScoringError,
    ScoringTimeout,
    ServiceUnavailableError,
)
from tests.client.scripted_server import Answer, Received, ScriptedServer, SilentServer
from tests.support.processes import free_port

ROW = [0.1] * 10


def json_answer(status: int, document: object, **headers: str) -> Answer:
    return Answer(status, json.dumps(document).encode(), {"Content-Type": "application/json", **headers})


def gaps(received: list[Received]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(received)]


def test_503_with_retry_after_is_retried_after_the_wait_it_asks_for():
    script = [json_answer(503, {"message": "starting"}, **{"Retry-After": "1"})] * 2 + [json_answer(200, [1.5])]
    with ScriptedServer(script) as server, Client(server.url, retries=3, backoff=0.01) as client:
        assert client.predict([ROW]) == [1.5]
    assert len(server.received) == 3
    assert all(gap >= 0.9 for gap in gaps(server.received))


@pytest.mark.parametrize("status", [429, 502, 504])
def test_throttled_and_gateway_errors_are_retried(status):
    with (
        ScriptedServer([json_answer(status, {"message": "busy"}), json_answer(200, [2.0])]) as server,
        Client(server.url, retries=2, backoff=0.01) as client,
    ):
        assert client.predict([ROW]) == [2.0]
    assert [r.path for r in server.received] == ["/score", "/score"]


def test_backoff_grows_exponentially():
    with (
        ScriptedServer([json_answer(503, {"message": "down"})]) as server,
        Client(server.url, retries=3, backoff=0.2) as client,
        pytest.raises(ServiceUnavailableError),
    ):
        client.predict([ROW])
    # urllib3: no sleep before the first retry, then backoff * 2**n (+ up to `backoff` of jitter).
    spacing = gaps(server.received)
    assert len(spacing) == 3
    assert spacing[1] >= 0.4
    assert spacing[2] >= 0.8
    assert spacing[2] > spacing[1]


def test_retries_spent_raise_service_unavailable_with_the_services_message_and_request_id():
    with (
        ScriptedServer([json_answer(503, {"message": "shutting down", "field": None})]) as server,
        Client(server.url, retries=2, backoff=0.01) as client,
        pytest.raises(ServiceUnavailableError) as caught,
    ):
        client.predict([ROW])
    assert len(server.received) == 3
    assert caught.value.status == 503
    assert caught.value.message == "shutting down"
    assert caught.value.request_id == server.received[-1].headers["x-request-id"]
    assert isinstance(caught.value, ScoringError)


def test_nothing_listening_raises_service_unavailable_after_the_retries():
    client = Client(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.05)
    started = time.monotonic()
    with client, pytest.raises(ServiceUnavailableError) as caught:
        client.predict([ROW])
    assert caught.value.status is None
    assert "after 2 retries" in caught.value.message
    assert caught.value.request_id
    assert time.monotonic() - started < 5


def test_a_service_that_never_answers_raises_scoring_timeout_within_the_timeout():
    with SilentServer() as server, Client(server.url, timeout=(2.0, 1.0), retries=3) as client:
        started = time.monotonic()
        with pytest.raises(ScoringTimeout) as caught:
            client.predict([ROW])
        elapsed = time.monotonic() - started
    # One read timeout, not retried: retried, it would be 4 reads of 1 s. 3.5, not 2: a loaded machine
    # (the suite on every core, other suites beside it) adds a second to the one read.
    assert 0.9 <= elapsed < 3.5, elapsed
    assert caught.value.status is None
    assert caught.value.request_id
    assert len(server.connections) == 1


def test_an_answer_cut_off_in_its_body_is_sent_again():
    # What a worker SIGKILLed while writing its answer leaves: the headers, part of the body, a close.
    cut = Answer(200, b"[1.5]", cut_after=0)
    with ScriptedServer([cut, cut, Answer(200, b"[1.5]")]) as server, Client(server.url, backoff=0.01) as client:
        assert client.predict([ROW]) == [1.5]
    assert len(server.received) == 3


def test_answers_cut_off_every_time_raise_service_unavailable_after_the_retries():
    server = ScriptedServer([Answer(200, b"[1.5]", cut_after=2)])
    with server, Client(server.url, retries=2) as client, pytest.raises(ServiceUnavailableError) as caught:
        client.predict([ROW])
    assert len(server.received) == 3
    assert "after 2 retries" in caught.value.message


def test_a_server_error_is_not_retried():
    with (
        ScriptedServer([json_answer(500, {"message": "boom"})]) as server,
        Client(server.url, retries=3, backoff=0.01) as client,
        pytest.raises(ScoringError) as caught,
    ):
        client.predict([ROW])
    assert type(caught.value) is ScoringError
    assert caught.value.status == 500
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("answer", "kind", "message"),
    [
        # This service: JSON message and field.
        (
            json_answer(422, {"message": "data[0]: has 9 values", "field": "data[0]"}),
            InvalidInputError,
            "data[0]: has 9 values",
        ),
        # Azure ML's inference server: JSON {"message": ...}.
        (json_answer(400, {"message": "Input data is malformed"}), InvalidInputError, "Input data is malformed"),
        # Older Azure ML images: plain text.
        (
            Answer(400, b"Bad input: could not convert string to float\n", {"Content-Type": "text/plain"}),
            InvalidInputError,
            "Bad input: could not convert string to float",
        ),
        # Azure's front doors: {"error": {"code": ..., "message": ...}}.
        (
            json_answer(404, {"error": {"code": "NotFound", "message": "no such deployment"}}),
            InvalidInputError,
            "no such deployment",
        ),
        # FastAPI-style detail, and a bare JSON string.
        (json_answer(400, {"detail": "bad rows"}), InvalidInputError, "bad rows"),
        (json_answer(400, "a JSON string"), InvalidInputError, "a JSON string"),
        (Answer(400, b"", {}), InvalidInputError, "the service gave no reason"),
        (json_answer(401, {"message": "invalid API key"}), AuthenticationError, "invalid API key"),
        (Answer(403, b"Forbidden", {"Content-Type": "text/plain"}), AuthenticationError, "Forbidden"),
        (
            Answer(408, b"upstream request timeout", {"Content-Type": "text/plain"}),
            ScoringTimeout,
            "upstream request timeout",
        ),
    ],
)
def test_error_bodies_of_this_service_and_of_azure_ml(answer, kind, message):
    with ScriptedServer([answer]) as server, Client(server.url, retries=0) as client, pytest.raises(kind) as caught:
        client.predict([ROW])
    assert type(caught.value) is kind
    assert caught.value.message == message
    assert caught.value.status == answer.status
    assert caught.value.request_id == server.received[0].headers["x-request-id"]


def test_the_services_own_request_id_is_reported():
    answer = json_answer(422, {"message": "bad"}, **{"x-request-id": "from-the-service"})
    with (
        ScriptedServer([answer]) as server,
        Client(server.url, retries=0) as client,
        pytest.raises(InvalidInputError) as caught,
    ):
        client.predict([ROW])
    assert caught.value.request_id == "from-the-service"


def test_request_carries_bearer_key_json_and_the_method_only_when_given():
    with ScriptedServer([json_answer(200, [1.0])]) as server, Client(server.url, "s3cret", retries=0) as client:
        client.score([ROW])
        client.predict([{"age": 1.0}])
    first, second = server.received
    assert (first.method, first.path) == ("POST", "/score")
    assert first.headers["Authorization"] == "Bearer s3cret"
    assert first.headers["Content-Type"] == "application/json"
    assert json.loads(first.body) == {"data": [ROW]}
    assert json.loads(second.body) == {"data": [{"age": 1.0}], "method": "predict"}
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert "s3cret" not in repr(client)


def echo_first_value(limit: int | None = None, message: str = "") -> object:
    """A service answering each row's first value, refusing with 413 above `limit` rows."""

    def answer(got: Received) -> Answer:
        rows = json.loads(got.body)["data"]
        if limit is not None and len(rows) > limit:
            return json_answer(413, {"message": message.format(n=len(rows)), "field": "data"})
        return json_answer(200, [row[0] for row in rows])

    return answer


def test_large_inputs_are_chunked_and_reassembled_in_order():
    rows = [[float(i)] + [0.0] * 9 for i in range(50)]
    with ScriptedServer(echo_first_value()) as server, Client(server.url, max_rows_per_request=7) as client:
        assert client.predict(rows) == [float(i) for i in range(50)]
    assert [len(json.loads(r.body)["data"]) for r in server.received] == [7] * 7 + [1]


def test_a_row_limit_named_by_a_413_becomes_the_chunk_size():
    rows = [[float(i)] + [0.0] * 9 for i in range(23)]
    script = echo_first_value(5, "{n} rows is over the limit of 5 rows per request; split the request")
    with ScriptedServer(script) as server, Client(server.url, max_rows_per_request=20) as client:
        assert client.predict(rows) == [float(i) for i in range(23)]
        assert client.max_rows_per_request == 5
    assert [len(json.loads(r.body)["data"]) for r in server.received] == [20, 5, 5, 5, 5, 3]


def test_a_413_without_a_limit_halves_the_chunk_until_it_fits():
    rows = [[float(i)] + [0.0] * 9 for i in range(16)]
    script = echo_first_value(3, "request body is over the limit of 100 bytes")
    with ScriptedServer(script) as server, Client(server.url, max_rows_per_request=16) as client:
        assert client.predict(rows) == [float(i) for i in range(16)]
        assert client.max_rows_per_request == 2
    assert [len(json.loads(r.body)["data"]) for r in server.received] == [16, 8, 4] + [2] * 8


def test_a_413_on_a_single_row_is_an_invalid_input_error():
    script = echo_first_value(0, "request body is over the limit of 10 bytes")
    with ScriptedServer(script) as server, Client(server.url) as client, pytest.raises(InvalidInputError) as caught:
        client.predict([ROW])
    assert caught.value.status == 413
    assert len(server.received) == 1


def test_an_answer_with_the_wrong_number_of_results_is_an_error():
    with ScriptedServer([json_answer(200, [1.0, 2.0])]) as server, Client(server.url) as client:
        with pytest.raises(ScoringError, match="2 results for 1 rows"):
            client.predict([ROW])
        server.script = [json_answer(200, {"predictions": [1.0]})]
        with pytest.raises(ScoringError, match="not one result per row"):
            client.predict([ROW])


def test_probes_answer_at_once_and_are_never_retried():
    def probes(got: Received) -> Answer:
        if got.path == "/health/ready":
            return Answer(
                503, b"not ready", {"Content-Type": "text/plain", "x-model-name": "m", "x-model-version": "7"}
            )
        return Answer(200, b"Healthy", {"Content-Type": "text/plain"})

    with ScriptedServer(probes) as server, Client(server.url, retries=5, backoff=1.0) as client:
        started = time.monotonic()
        assert client.health() is True
        assert client.ready() is False
        assert time.monotonic() - started < 1.0
        assert [r.path for r in server.received] == ["/", "/health/ready"]
        assert client.model == ModelInfo(name="m", version="7")
    with Client(f"http://127.0.0.1:{free_port()}", retries=5, backoff=1.0) as down:
        started = time.monotonic()
        assert down.health() is False
        assert down.ready() is False
        assert down.model is None
        assert time.monotonic() - started < 1.0


def test_a_service_without_a_readiness_probe_is_ready_when_live():
    def azure_image(got: Received) -> Answer:
        return Answer(200, b"Healthy", {}) if got.path == "/" else Answer(404, b"Not Found", {})

    with ScriptedServer(azure_image) as server, Client(server.url) as client:
        assert client.ready() is True


def test_a_session_of_the_callers_own_is_used_and_left_open():
    import requests

    session = requests.Session()
    session.headers["X-Caller"] = "mine"
    with (
        ScriptedServer([json_answer(200, [3.0])]) as server,
        Client(server.url, session=session, retries=1) as client,
    ):
        assert client.predict([ROW]) == [3.0]
        # Still usable after the client closed: the caller owns it.
        assert session.get(server.url + "/", timeout=5).status_code == 200
    assert server.received[0].headers["X-Caller"] == "mine"
    session.close()


def test_a_retry_after_of_an_hour_is_capped():
    from diabetes_client.transport import MAX_WAIT_SECONDS, retry_policy

    policy = retry_policy(retries=3, backoff=0.5)
    assert policy.parse_retry_after("3600") == MAX_WAIT_SECONDS == 30.0
    assert policy.parse_retry_after("2") == 2.0
