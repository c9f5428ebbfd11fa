"""The request envelope (transport/envelope.py) wraps a gRPC call exactly as it wraps a REST call:
the same key check, the same /metrics counters and latency histogram, the same access-log line and a
server span that continues the caller's trace. The real service on loopback, with tracing on (to the
OTLP receiver of tests/support), a real grpc client, a real HTTP one."""

from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
import pytest
import requests
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.service.test_tracing import SERVER_KIND, STATUS_ERROR, traced_env, traceparent
from tests.service.test_v2_grpc import KEY
from tests.support.otlp_receiver import OtlpReceiver

GRPC_ROUTE = "grpc:inference.GRPCInferenceService/ModelInfer"
UNAUTHENTICATED_CODE = 16  # grpc.StatusCode.UNAUTHENTICATED's number, as OTel's rpc.grpc.status_code


@pytest.fixture
def receiver():
    with OtlpReceiver() as running:
        yield running


def _infer_request(rows: np.ndarray, request_id: str = "") -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="model", id=request_id)
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=list(rows.shape))
    tensor.contents.fp64_contents.extend(rows.ravel().tolist())
    request.outputs.add(name="predict")
    return request


def _access_lines(svc, request_ids: set[str]) -> dict[str, dict]:
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in svc.output().splitlines() if line.startswith("{")]
        mine = {line["request_id"]: line for line in lines if line["request_id"] in request_ids}
        if len(mine) == len(request_ids) or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


def _counted(metrics: str, route: str) -> dict[str, float]:
    """The samples of /metrics labelled with `route`, by series name and labels, route aside."""
    samples = {}
    for line in metrics.splitlines():
        if line.startswith("#") or f'route="{route}"' not in line:
            continue
        series, value = line.rsplit(" ", 1)
        samples[series.replace(f'route="{route}"', 'route="*"')] = float(value)
    return samples


def test_a_grpc_call_passes_the_same_envelope_as_a_rest_call(
    receiver, service, example_model_pkl, example_data, tmp_path
) -> None:
    rows = np.asarray(example_data.x_test[:3], dtype=np.float64)
    env = {**traced_env(receiver), "DIABETES_API_KEYS": f"{KEY},second-key-2"}
    svc = service(str(example_model_pkl), env=env, grpc=True).start()
    bearer = f"Bearer {KEY}"
    rest_trace, rest_parent, rest_header = traceparent()
    grpc_trace, grpc_parent, grpc_header = traceparent()
    refused_trace, _, refused_header = traceparent()
    with grpc.insecure_channel(svc.grpc_target) as channel:
        infer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        # Without a key: refused, as REST refuses it with 401.
        with pytest.raises(grpc.RpcError) as refused:
            infer(_infer_request(rows), metadata=[("x-request-id", "env-grpc-nokey"), ("traceparent", refused_header)])
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert KEY not in refused.value.details()
        no_key = requests.post(
            svc.url + "/score", json={"data": rows.tolist()}, headers={"x-request-id": "env-rest-nokey"}, timeout=10
        )
        assert no_key.status_code == 401
        # With a key: answered, each the same predictions.
        answer = infer(
            _infer_request(rows),
            metadata=[("authorization", bearer), ("x-request-id", "env-grpc"), ("traceparent", grpc_header)],
            timeout=10,
        )
        rest = requests.post(
            svc.url + "/score",
            json={"data": rows.tolist(), "method": "predict"},
            headers={"authorization": bearer, "x-request-id": "env-rest", "traceparent": rest_header},
            timeout=10,
        )
        assert rest.status_code == 200
        np.testing.assert_allclose(answer.outputs[0].contents.fp64_contents, rest.json(), rtol=1e-12)
        # Without an x-request-id, the message's own id names the call (Triton's request_id).
        infer(_infer_request(rows, "env-grpc-message-id"), metadata=[("authorization", bearer)], timeout=10)

    # The access log: one line each, alike but for the method and the route.
    ids = {"env-grpc-nokey", "env-rest-nokey", "env-grpc", "env-rest", "env-grpc-message-id"}
    lines = _access_lines(svc, ids)
    assert set(lines) == ids
    keys = ("status", "rows", "model_version")
    assert (
        {k: lines["env-grpc"][k] for k in keys}
        == {k: lines["env-rest"][k] for k in keys}
        == {
            "status": 200,
            "rows": 3,
            "model_version": "local",
        }
    )
    assert (lines["env-grpc"]["method"], lines["env-grpc"]["route"]) == ("GRPC", GRPC_ROUTE)
    assert (lines["env-rest"]["method"], lines["env-rest"]["route"]) == ("POST", "/score")
    assert lines["env-grpc-nokey"]["status"] == lines["env-rest-nokey"]["status"] == 401
    assert lines["env-grpc-nokey"]["rows"] == lines["env-rest-nokey"]["rows"] == 0
    assert set(lines["env-grpc"]) == set(lines["env-rest"])  # the same fields
    assert lines["env-grpc"]["latency_ms"] > 0

    # /metrics (the scrape takes the key too): the same series for each route, counted alike.
    metrics = requests.get(svc.url + "/metrics", headers={"authorization": bearer}, timeout=10).text
    by_grpc, by_rest = _counted(metrics, GRPC_ROUTE), _counted(metrics, "/score")
    # The same series, but for the /score ones an alert names, exported at 0 from start-up.
    assert set(by_grpc) <= set(by_rest)
    assert all(by_rest[k] == 0 for k in set(by_rest) - set(by_grpc))
    assert by_grpc['diabetes_http_requests_total{route="*",status="200"}'] == 2
    assert by_rest['diabetes_http_requests_total{route="*",status="200"}'] == 1
    assert by_grpc['diabetes_http_requests_total{route="*",status="401"}'] == 1
    assert by_rest['diabetes_http_requests_total{route="*",status="401"}'] == 1
    assert by_grpc['diabetes_http_request_duration_seconds_count{route="*"}'] == 3

    # A server span for each, continuing the caller's trace; the gRPC call's with its RPC attributes.
    (rest_span,) = [s for s in receiver.wait_for(rest_trace, 3) if s.kind == SERVER_KIND]
    grpc_spans = receiver.wait_for(grpc_trace, 3)
    (grpc_span,) = [s for s in grpc_spans if s.kind == SERVER_KIND]
    (refused_span,) = receiver.wait_for(refused_trace, 1)
    svc.stop()
    assert grpc_span.name == "inference.GRPCInferenceService/ModelInfer"
    assert grpc_span.parent_span_id == grpc_parent
    assert rest_span.parent_span_id == rest_parent
    assert grpc_span.attributes["rpc.system"] == "grpc"
    assert grpc_span.attributes["rpc.method"] == "ModelInfer"
    shared = ("http.response.status_code", "diabetes.rows", "diabetes.method", "diabetes.model.name")
    assert {k: grpc_span.attributes[k] for k in shared} == {k: rest_span.attributes[k] for k in shared}
    assert grpc_span.attributes["diabetes.request_id"] == "env-grpc"
    assert grpc_span.status_code != STATUS_ERROR
    # Its phases nest under it, as REST's do: the tensors' decoding, then the prediction.
    children = {s.name: s for s in grpc_spans if s.parent_span_id == grpc_span.span_id}
    assert set(children) == {"parse", "score"}
    assert children["score"].attributes["diabetes.rows"] == 3
    assert refused_span.attributes["http.response.status_code"] == 401
    assert refused_span.attributes["rpc.grpc.status_code"] == UNAUTHENTICATED_CODE
    assert refused_span.status_code != STATUS_ERROR  # the caller's mistake, not the server's


def test_rest_and_grpc_calls_share_the_workers_concurrency_slots(service, slow_models, repo_on_path, example_data):
    """One worker, one slot: while a REST request scores (1 s), a gRPC ModelInfer is UNAVAILABLE; while a
    gRPC call scores, a REST request is a 503 with Retry-After; each then answers."""
    env = {**repo_on_path, "DIABETES_MAX_CONCURRENT_REQUESTS": "1"}
    svc = service(str(slow_models["predict"]), env=env, workers=1, grpc=True).start()
    rows = np.asarray(example_data.x_test[:1], dtype=np.float64)
    statuses: list[int] = []

    def rest() -> requests.Response:
        return requests.post(svc.url + "/score", json={"data": rows.tolist()}, timeout=30)

    holder = threading.Thread(target=lambda: statuses.append(rest().status_code))
    with grpc.insecure_channel(svc.grpc_target) as channel:
        infer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        holder.start()
        time.sleep(0.5)  # the REST request is scoring now, for 1 s
        with pytest.raises(grpc.RpcError) as refused:
            infer(_infer_request(rows), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert refused.value.details() == "too many requests in flight; retry shortly"
        holder.join(30)
        assert statuses == [200]

        scoring = infer.future(_infer_request(rows), timeout=30)
        time.sleep(0.5)  # the gRPC call is scoring now
        busy = rest()
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["message"] == "too many requests in flight; retry shortly"
        assert len(scoring.result().outputs[0].contents.fp64_contents) == 1
    assert rest().status_code == 200  # the slot is free again
