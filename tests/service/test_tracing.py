"""OpenTelemetry: a real service exports its spans over OTLP/HTTP to a receiver on loopback, continuing
the caller's W3C traceparent; without the OTEL_* endpoint the application is left untouched."""

from __future__ import annotations

import secrets

import pytest
import requests

from diabetes_service.observability import tracing
from diabetes_service.protocols.azureml import parse_score_body
from diabetes_service.scoring.runner import PredictionRunner
from diabetes_service.settings import ServiceSettings
from diabetes_service.transport.app import ScoringApp
from tests.support.otlp_receiver import OtlpReceiver

SERVER_KIND = 2  # SPAN_KIND_SERVER in OTLP
STATUS_ERROR = 2


@pytest.fixture
def receiver():
    with OtlpReceiver() as running:
        yield running


def traced_env(receiver: OtlpReceiver) -> dict[str, str]:
    # Batches leave every 50 ms instead of every 5 s, so that the test need not wait.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def test_the_callers_trace_continues_through_the_service(receiver, service, example_model_pkl, example_data) -> None:
    trace_id, client_span, header = traceparent()
    with service(str(example_model_pkl), env=traced_env(receiver)) as svc:
        answer = requests.post(
            svc.url + "/score",
            json={"data": example_data.x_test[:3], "method": "predict"},
            headers={"traceparent": header},
            timeout=10,
        )
        assert answer.status_code == 200
        spans = receiver.wait_for(trace_id, 3)
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"POST /score", "parse", "score"}, spans
    request = by_name["POST /score"]
    assert request.parent_span_id == client_span  # the client's span is the parent: one trace
    assert request.kind == SERVER_KIND
    assert request.status_code != STATUS_ERROR
    assert request.attributes["http.route"] == "/score"
    assert request.attributes["http.request.method"] == "POST"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["diabetes.rows"] == 3
    assert request.attributes["diabetes.method"] == "predict"
    assert request.attributes["diabetes.model.name"] == answer.headers["x-model-name"]
    assert request.attributes["diabetes.model.version"] == answer.headers["x-model-version"]
    assert request.attributes["diabetes.request_id"] == answer.headers["x-request-id"]
    assert request.resource["service.name"] == "diabetes-service"
    # Parsing, then scoring, each a child of the request's span.
    assert by_name["parse"].parent_span_id == request.span_id
    assert by_name["score"].parent_span_id == request.span_id
    assert by_name["score"].attributes["diabetes.rows"] == 3


def test_bad_input_and_unknown_routes_are_traced_without_being_server_errors(
    receiver, service, example_model_pkl
) -> None:
    bad_trace, _, bad_header = traceparent()
    lost_trace, _, lost_header = traceparent()
    env = {**traced_env(receiver), "OTEL_SERVICE_NAME": "scoring-eu"}
    with service(str(example_model_pkl), env=env) as svc:
        bad = requests.post(
            svc.url + "/score", json={"data": [[1, 2]]}, headers={"traceparent": bad_header}, timeout=10
        )
        assert bad.status_code in (400, 422)
        lost = requests.get(svc.url + "/nowhere", headers={"traceparent": lost_header}, timeout=10)
        assert lost.status_code == 404
        (bad_span,) = [s for s in receiver.wait_for(bad_trace, 2) if s.name == "POST /score"]
        (lost_span,) = receiver.wait_for(lost_trace, 1)
    assert bad_span.attributes["http.response.status_code"] == bad.status_code
    assert bad_span.status_code != STATUS_ERROR  # the caller's mistake, not the server's
    assert lost_span.name == "GET unmatched"  # one span name for every unknown path
    assert lost_span.attributes["url.path"] == "/nowhere"
    assert lost_span.resource["service.name"] == "scoring-eu"


def test_without_a_traceparent_the_service_starts_a_trace(receiver, service, example_model_pkl) -> None:
    with service(str(example_model_pkl), env=traced_env(receiver)) as svc:
        assert requests.get(svc.url + "/", timeout=10).status_code == 200
        spans = receiver.wait(lambda span: span.name == "GET /")
    assert spans
    assert spans[0].parent_span_id == ""  # a root span: the trace starts here
    assert receiver.posts
    assert set(receiver.posts) == {"/v1/traces"}


def test_off_without_an_endpoint_leaves_the_app_untouched(monkeypatch) -> None:
    for name in (*tracing.ENDPOINT_VARIABLES, "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.wanted()
    app = ScoringApp(ServiceSettings())
    assert app.envelope.spans is None  # no span is opened
    assert app.state.runner_type is PredictionRunner  # no wrapped prediction
    assert app.protocols[0].parse is parse_score_body  # type: ignore[attr-defined]  # no wrapped parse
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
