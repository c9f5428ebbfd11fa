"""Open Inference Protocol over gRPC: Triton's own client, unchanged, against the real service.

The service runs as `diabetes serve` with its supervisor and workers on loopback; every call goes
through `tritonclient.grpc` (raw tensors, as Triton's client sends them) or through the same
package's generated stub with typed contents (as KServe's clients send them).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import numpy as np
import psutil
import pytest
import requests
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.service.test_supervisor import wait_for, workers
from tests.support.service import ServiceProcess

KEY = "grpc-test-key-1"


@pytest.fixture(scope="module")
def served(embedded_store, tmp_path_factory):
    """The registered regressor and classifier, each served with gRPC on a free port."""
    logs = tmp_path_factory.mktemp("grpc")
    names = {}
    with (
        ServiceProcess(_uri(embedded_store.regressor), env=embedded_store.env, log=logs / "r.log", grpc=True) as r,
        ServiceProcess(_uri(embedded_store.classifier), env=embedded_store.env, log=logs / "c.log", grpc=True) as c,
    ):
        names["regressor"] = (r, embedded_store.regressor)
        names["classifier"] = (c, embedded_store.classifier)
        yield names


def _uri(trained: dict) -> str:
    return f"models:/{trained['model_name']}/{trained['model_version']}"


def _matrix(rows) -> triton.InferInput:
    data = np.asarray(rows, dtype=np.float64)
    tensor = triton.InferInput("input-0", list(data.shape), "FP64")
    tensor.set_data_from_numpy(data)
    return tensor


def _code(call) -> grpc.StatusCode:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value.status()


def test_health_and_metadata(served):
    svc, trained = served["classifier"]
    client = triton.InferenceServerClient(svc.grpc_target)
    name, version = trained["model_name"], str(trained["model_version"])
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(name)
    assert client.is_model_ready(name, version)
    assert client.get_server_metadata().name == "diabetes-scoring"
    metadata = client.get_model_metadata(name, as_json=True)
    assert metadata["name"] == name
    assert metadata["versions"] == [version]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": ["-1", "10"]}]
    # Every method the classifier has, decision_function too (issue 16).
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba", "decision_function"]
    assert metadata["outputs"][1]["shape"] == ["-1", "2"]


def test_the_regressor_answers_as_score_does_with_the_request_id(served, example_data):
    svc, trained = served["regressor"]
    client = triton.InferenceServerClient(svc.grpc_target)
    rows = example_data.x_train[:100]
    result = client.infer(
        trained["model_name"], [_matrix(rows)], outputs=[triton.InferRequestedOutput("predict")], request_id="req-42"
    )
    expected = requests.post(svc.url + "/score", json={"data": rows, "method": "predict"}, timeout=10).json()
    assert result.get_response().id == "req-42"
    assert result.get_response().model_version == str(trained["model_version"])
    predictions = result.as_numpy("predict")
    assert predictions.shape == (100,)
    np.testing.assert_allclose(predictions, expected, rtol=1e-12)
    first_test_row = client.infer(trained["model_name"], [_matrix(example_data.x_test[:1])]).as_numpy("predict")
    assert first_test_row[0] == pytest.approx(235.112, abs=1e-3)


def test_typed_contents_and_one_tensor_per_feature(served, example_data):
    """KServe's clients send typed contents; pandas-style ones, one tensor per feature."""
    svc, trained = served["regressor"]
    rows = np.asarray(example_data.x_test[:3])
    features = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    request = service_pb2.ModelInferRequest(model_name=trained["model_name"], id="typed")
    for j, feature in enumerate(features):
        tensor = request.inputs.add(name=feature, datatype="FP64", shape=[3])
        tensor.contents.fp64_contents.extend(rows[:, j].tolist())
    with grpc.insecure_channel(svc.grpc_target) as channel:
        answer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert answer.id == "typed"
    assert [(o.name, o.datatype, list(o.shape)) for o in answer.outputs] == [("predict", "FP64", [3])]
    assert not answer.raw_output_contents  # typed in, typed out
    expected = requests.post(svc.url + "/score", json={"data": rows.tolist()}, timeout=10).json()
    np.testing.assert_allclose(answer.outputs[0].contents.fp64_contents, expected, rtol=1e-12)


def test_the_classifier_answers_the_outputs_asked_for_by_name(served, example_data):
    svc, trained = served["classifier"]
    client = triton.InferenceServerClient(svc.grpc_target)
    rows = example_data.x_test[:5]
    outputs = [triton.InferRequestedOutput("predict_proba"), triton.InferRequestedOutput("predict")]
    result = client.infer(trained["model_name"], [_matrix(rows)], outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["predict_proba", "predict"]
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (5, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    expected = requests.post(svc.url + "/score", json={"data": rows, "method": "predict"}, timeout=10).json()
    assert result.as_numpy("predict").tolist() == expected
    only_proba = client.infer(trained["model_name"], [_matrix(rows)], outputs=outputs[:1])
    assert [o.name for o in only_proba.get_response().outputs] == ["predict_proba"]


def test_caller_mistakes_are_invalid_argument_and_unknown_models_not_found(served, example_data):
    svc, trained = served["regressor"]
    client = triton.InferenceServerClient(svc.grpc_target)
    name = trained["model_name"]
    wrong_shape = _matrix([row[:9] for row in example_data.x_test[:2]])
    with pytest.raises(InferenceServerException) as caught:
        client.infer(name, [wrong_shape])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "inputs[0].shape" in caught.value.message()
    rows = _matrix(example_data.x_test[:1])
    proba = [triton.InferRequestedOutput("predict_proba")]
    assert _code(lambda: client.infer(name, [rows], outputs=proba)) == "StatusCode.INVALID_ARGUMENT"
    nan = _matrix([[float("nan")] * 10])
    assert _code(lambda: client.infer(name, [nan])) == "StatusCode.INVALID_ARGUMENT"
    assert _code(lambda: client.infer("no_such_model", [rows])) == "StatusCode.NOT_FOUND"
    assert _code(lambda: client.infer(name, [rows], model_version="999")) == "StatusCode.NOT_FOUND"
    assert _code(lambda: client.get_model_metadata("no_such_model")) == "StatusCode.NOT_FOUND"
    assert client.infer(name, [rows]).as_numpy("predict").shape == (1,)  # the service goes on
    # Counted by the HTTP status of the same outcome, so that the 5xx alerts cover gRPC too.
    route = 'route="grpc:inference.GRPCInferenceService/ModelInfer"'

    def counted() -> str:
        metrics = requests.get(svc.url + "/metrics", timeout=5).text
        return "\n".join(line for line in metrics.splitlines() if route in line and "_total" in line)

    lines = wait_for(lambda: 'status="404"' in counted() and counted(), 5, "gRPC calls in /metrics")
    assert 'status="400"' in lines
    assert 'status="200"' in lines


def test_keys_are_required_in_the_authorization_metadata(service, example_model_pkl, example_data):
    svc = service(str(example_model_pkl), env={"DIABETES_API_KEYS": f"{KEY},second-key-2"}, grpc=True).start()
    client = triton.InferenceServerClient(svc.grpc_target)
    rows = _matrix(example_data.x_test[:1])
    assert client.is_server_live()  # the probes are public, as on HTTP
    assert client.is_server_ready()
    assert _code(lambda: client.infer("model", [rows])) == "StatusCode.UNAUTHENTICATED"
    wrong = {"authorization": "Bearer not-the-key"}
    assert _code(lambda: client.infer("model", [rows], headers=wrong)) == "StatusCode.UNAUTHENTICATED"
    assert _code(lambda: client.get_model_metadata("model", headers=wrong)) == "StatusCode.UNAUTHENTICATED"
    for key in (KEY, "second-key-2"):
        answer = client.infer("model", [rows], headers={"authorization": f"Bearer {key}"})
        assert answer.as_numpy("predict").shape == (1,)
    assert KEY not in svc.output()


def test_grpc_port_zero_turns_grpc_off(service, example_model_pkl):
    svc = service(str(example_model_pkl), workers=2).start()  # ServiceProcess passes --grpc-port 0
    for worker in workers(svc):
        ports = {c.laddr.port for c in worker.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        assert ports == {svc.port}
    assert "gRPC" not in svc.output()


def test_sigterm_with_grpc_calls_in_flight_loses_none(service, slow_models, repo_on_path, example_data):
    svc = service(str(slow_models["predict"]), env=repo_on_path, workers=2, grpc=True).start()
    results: list[object] = []

    def call(i: int) -> None:
        client = triton.InferenceServerClient(svc.grpc_target)
        try:
            answer = client.infer("model", [_matrix(example_data.x_test[i : i + 1])], client_timeout=30)
            results.append(answer.as_numpy("predict").shape)
        except InferenceServerException as exc:
            results.append(exc.status())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every call sent and accepted, all still inside their 1 s prediction
    os.killpg(svc.proc.pid, signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=30)
    assert results == [(1,)] * 6
    assert svc.proc.wait(timeout=30) == 0


def test_a_replaced_worker_serves_grpc(service, example_model_pkl, example_data):
    """Both first workers killed one after the other: the replacements bind gRPC once warm."""
    svc = service(str(example_model_pkl), workers=2, grpc=True).start()
    rows = _matrix(example_data.x_test[:2])
    first = _pids(svc)
    wait_for(lambda: _grpc_listeners(svc) == 2, 30, "both first workers on gRPC")
    for victim in list(workers(svc)):
        victim.kill()
        victim.wait(timeout=5)
        wait_for(lambda v=victim: _grpc_listeners(svc) == 2 and v.pid not in _pids(svc), 30, "a replacement on gRPC")
    assert not _pids(svc) & first  # both are replacements now
    for _ in range(20):  # fresh connections, spread over both replacements by the kernel
        client = triton.InferenceServerClient(svc.grpc_target)
        assert client.infer("model", [rows]).as_numpy("predict").shape == (2,)
        client.close()
    assert requests.get(svc.url + "/health/ready", timeout=5).status_code == 200


def _pids(svc) -> set[int]:
    return {w.pid for w in workers(svc)}


def _grpc_listeners(svc) -> int:
    count = 0
    for worker in workers(svc):
        try:
            connections = worker.net_connections("tcp")
        except psutil.NoSuchProcess:
            continue
        count += any(c.laddr.port == svc.grpc_port and c.status == psutil.CONN_LISTEN for c in connections)
    return count


def test_messages_over_the_body_limit_or_not_protobuf_are_refused(service, example_model_pkl, example_data):
    """The length prefix is checked before the message is read: a caller cannot make a worker
    buffer more than the HTTP side's body limit; bytes that are no ModelInferRequest are a 400."""
    svc = service(str(example_model_pkl), env={"DIABETES_MAX_BODY_BYTES": "4096"}, grpc=True).start()
    client = triton.InferenceServerClient(svc.grpc_target)
    big = _matrix(np.tile(example_data.x_test[:1], (100, 1)))  # 8,000 bytes of FP64
    with pytest.raises(InferenceServerException) as caught:
        client.infer("model", [big])
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "the limit is 4096" in caught.value.message()
    with grpc.insecure_channel(svc.grpc_target) as channel:
        raw = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda data: data,
            response_deserializer=lambda data: data,
        )
        with pytest.raises(grpc.RpcError) as garbage:
            raw(b"\xff\xff\xff\xff", timeout=10)
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ModelInferRequest" in garbage.value.details()
        unrouted = channel.unary_unary("/inference.GRPCInferenceService/RepositoryIndex")
        with pytest.raises(grpc.RpcError) as unknown:
            unrouted(b"", timeout=10)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert client.infer("model", [_matrix(example_data.x_test[:1])]).as_numpy("predict").shape == (1,)
