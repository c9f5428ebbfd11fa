"""docker/compose.yaml: the scoring service beside an MLflow tracking server, wired consistently."""

from __future__ import annotations

import yaml

from tests.support.processes import REPO

COMPOSE = REPO / "docker" / "compose.yaml"


def test_compose_wires_the_service_to_the_tracking_server() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"mlflow", "model-fetch", "scoring"}
    for name in ("mlflow", "scoring"):
        build = services[name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO
        assert (context / build["dockerfile"]).is_file()
    scoring = services["scoring"]
    assert scoring["build"]["dockerfile"] == "docker/Dockerfile"
    # The fetcher resolves models:/ on the tracking server into the volume the service reads.
    fetch = services["model-fetch"]
    assert fetch["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "/model/current" in fetch["command"][-1]
    assert scoring["command"][scoring["command"].index("--model-uri") + 1] == "/model/current"
    assert "model:/model:ro" in scoring["volumes"]
    assert scoring["depends_on"]["model-fetch"]["condition"] == "service_completed_successfully"
    assert fetch["depends_on"]["mlflow"]["condition"] == "service_healthy"
    # Keys come from the environment; compose refuses to start without them.
    assert scoring["environment"]["DIABETES_API_KEYS"].startswith("${DIABETES_API_KEYS:?")
    assert scoring["read_only"] is True
    assert all(port.startswith("127.0.0.1:") for s in services.values() for port in s.get("ports", []))
    assert set(compose["volumes"]) == {"mlflow-data", "model"}
