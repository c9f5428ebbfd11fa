"""`diabetes serve --rate-limit`: past its rate a key gets 429 with Retry-After, in every protocol's own
error form, the other key is not limited, and the admitted rate holds across workers (issue 27)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
import requests
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.support.processes import free_port

KEYS = "limit-primary,limit-secondary"
PRIMARY = {"Authorization": "Bearer limit-primary"}
SECONDARY = {"Authorization": "Bearer limit-secondary"}
RATE = 20  # per second


@pytest.fixture(scope="module")
def limited(tmp_path_factory, example_model_pkl):
    from tests.support.service import ServiceProcess

    log = tmp_path_factory.mktemp("limited") / "service.log"
    metrics_port = free_port()
    args = ["--rate-limit", f"{RATE}/s", "--metrics-port", str(metrics_port)]
    env = {"DIABETES_API_KEYS": KEYS}
    with ServiceProcess(str(example_model_pkl), env=env, args=args, workers=2, grpc=True, log=log) as svc:
        svc.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
        yield svc


def calls_until_refused(send, tries: int = 50):
    """Call `send` back to back until it is refused; the refused answer."""
    for _ in range(tries):
        answer = send()
        if answer.status_code == 429:
            return answer
    raise AssertionError(f"never refused in {tries} calls at once")


def test_a_key_past_its_rate_gets_429_the_other_key_does_not(limited, example_data) -> None:
    body = {"data": example_data.x_test[:1]}
    seconds, statuses, secondary = 3.0, [], []
    end = time.monotonic() + seconds

    def hammer() -> None:
        with requests.Session() as session:
            while time.monotonic() < end:
                statuses.append(
                    session.post(limited.url + "/score", json=body, headers=PRIMARY, timeout=10).status_code
                )

    def politely() -> None:  # the secondary key, at a quarter of the rate
        with requests.Session() as session:
            while time.monotonic() < end:
                secondary.append(session.post(limited.url + "/score", json=body, headers=SECONDARY, timeout=10))
                time.sleep(4 / RATE)

    threads = [threading.Thread(target=hammer) for _ in range(4)] + [threading.Thread(target=politely)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - started
    admitted, refused = statuses.count(200), statuses.count(429)
    assert set(statuses) == {200, 429}
    assert refused > admitted  # the key did call well past its rate
    rate = admitted / elapsed
    print(f"admitted {admitted} of {len(statuses)} calls in {elapsed:.2f} s: {rate:.1f}/s for a limit of {RATE}/s")
    assert 0.7 * RATE <= rate <= 1.3 * RATE
    assert len(secondary) >= 10
    assert [a.status_code for a in secondary] == [200] * len(secondary)


def test_429_in_each_protocols_own_error_form_with_retry_after(limited, example_data) -> None:
    score = calls_until_refused(
        lambda: requests.post(
            limited.url + "/score", json={"data": example_data.x_test[:1]}, headers=PRIMARY, timeout=10
        )
    )
    assert score.headers["retry-after"] == "1"
    assert score.json()["message"] == f"over the rate limit of {RATE}/s for this API key; retry after 1 s"
    assert "limit-primary" not in score.text

    invocations = calls_until_refused(
        lambda: requests.post(
            limited.url + "/invocations", json={"inputs": example_data.x_test[:1]}, headers=PRIMARY, timeout=10
        )
    )
    assert invocations.headers["retry-after"] == "1"
    assert invocations.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"

    v2 = calls_until_refused(lambda: requests.get(limited.url + "/v2", headers=PRIMARY, timeout=10))
    assert v2.headers["retry-after"] == "1"
    assert v2.json() == {"error": f"over the rate limit of {RATE}/s for this API key; retry after 1 s"}

    # Probes are never limited: a platform's health checks must not be turned away.
    for _ in range(3 * RATE):
        assert requests.get(limited.url + "/health/ready", timeout=10).status_code == 200

    with grpc.insecure_channel(limited.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        metadata = [("authorization", "Bearer limit-primary")]
        for _ in range(50):
            try:
                stub.ServerMetadata(service_pb2.ServerMetadataRequest(), metadata=metadata, timeout=10)
            except grpc.RpcError as exc:
                error = exc
                break
        else:
            raise AssertionError("gRPC never refused")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == f"over the rate limit of {RATE}/s for this API key; retry after 1 s"
        assert ("retry-after", "1") in tuple(error.trailing_metadata())

    # Counted in /metrics, gRPC as the same 429 (each worker's counts reach the metrics port's
    # page within its flush window, so the scrape is repeated for a few seconds).
    wanted = {"/score", "/invocations", "/v2", "grpc:inference.GRPCInferenceService/ServerMetadata"}
    deadline = time.monotonic() + 5
    while True:
        text = requests.get(limited.metrics_url, timeout=10).text
        refused = [
            line for line in text.splitlines() if line.startswith("diabetes_http_requests_total") and '"429"' in line
        ]
        routes = {line.split('route="', 1)[1].split('"', 1)[0] for line in refused}
        if wanted <= routes or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert wanted <= routes


def test_the_api_description_lists_429_with_retry_after_where_a_key_is_needed(limited) -> None:
    document = requests.get(limited.url + "/swagger.json", timeout=10).json()
    refused = document["paths"]["/score"]["post"]["responses"]["429"]
    assert refused["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert "429" in document["paths"]["/invocations"]["post"]["responses"]
    assert "429" not in document["paths"]["/health/ready"]["get"]["responses"]
    assert "429" not in document["paths"]["/"]["get"]["responses"]


def test_without_keys_each_client_address_is_limited(service, example_model_pkl, example_data) -> None:
    svc = service(str(example_model_pkl), args=["--rate-limit", "10/s"]).start()
    refused = calls_until_refused(lambda: requests.post(svc.url + "/score", json={"data": example_data.x_test[:1]}))
    assert refused.json()["message"] == "over the rate limit of 10/s for this client address; retry after 1 s"
