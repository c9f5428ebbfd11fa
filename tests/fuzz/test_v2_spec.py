"""Our V2 REST routes driven by someone else's description of the Open Inference Protocol.

KServe's `rest_predict_v2.yaml` ships in no PyPI package (not in the kserve SDK's wheel either), and
nothing but PyPI is reachable here. Seldon's MLServer wheel ships the same protocol's REST document
(`mlserver/rest/openapi/dataplane.json`, OpenAPI 3.0.3): that is what drives Schemathesis here, taken
from the bench's MLServer virtualenv when it exists, else from the wheel (`pip download --no-deps`,
cached). Changes made to it, each for a reason stated beside it: only the routes we serve, the path
parameters held to the served model (any other is a 404, which MLServer's document does not list for
every route), and its non-standard `{"type": "bytes"}` tensor branch dropped (not a JSON Schema type).

Schema-valid V2 requests (positive mode: the document allows any tensor, the model takes [N, 10]
numbers) must get no 5xx, only statuses the document lists, and answers that its schemas accept.
Our own generated description is fuzzed in every mode by test_schemathesis.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fuzz.runner import run_schemathesis

pytestmark = pytest.mark.slow

MLSERVER = "1.7.1"
DOCUMENT = "mlserver/rest/openapi/dataplane.json"
SERVED = (
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{model_name}",
    "/v2/models/{model_name}/versions/{model_version}",
    "/v2/models/{model_name}/ready",
    "/v2/models/{model_name}/versions/{model_version}/ready",
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/versions/{model_version}/infer",
)
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "diabetes-bench"


def mlserver_document() -> dict:
    """MLServer's V2 dataplane document, from the bench's virtualenv or from MLServer's wheel."""
    venv = _cache() / f"mlserver-{MLSERVER}"
    installed = next(venv.glob(f"lib/python*/site-packages/{DOCUMENT}"), None) if venv.is_dir() else None
    if installed is not None:
        return json.loads(installed.read_text())
    wheels = _cache() / "wheels"
    wheel = next(wheels.glob(f"mlserver-{MLSERVER}-*.whl"), None) if wheels.is_dir() else None
    if wheel is None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                str(wheels),
                f"mlserver=={MLSERVER}",
            ],
            check=True,
            timeout=300,
        )
        wheel = next(wheels.glob(f"mlserver-{MLSERVER}-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        return json.loads(archive.read(DOCUMENT))


def for_our_service(document: dict, name: str, version: str) -> dict:
    paths = {path: item for path, item in document["paths"].items() if path in SERVED}
    assert set(paths) == set(SERVED), "MLServer's document no longer has every V2 route"
    for item in paths.values():
        for parameter in item.get("parameters", []):
            parameter["schema"] = {"type": "string", "enum": [name if parameter["name"] == "model_name" else version]}
    schemas = document["components"]["schemas"]
    assert schemas["TensorData"]["oneOf"][1] == {"type": "bytes"}
    schemas["TensorData"] = {"type": "array"}
    return {**document, "paths": paths}


@pytest.mark.parametrize("task", ["regressor", "classifier"])
def test_mlserver_v2_document_against_our_routes(task: str, service, embedded_store, tmp_path: Path) -> None:
    trained = getattr(embedded_store, task)
    name, version = trained["model_name"], str(trained["model_version"])
    document = tmp_path / "dataplane.json"
    document.write_text(json.dumps(for_our_service(mlserver_document(), name, version)))
    with service(f"models:/{name}/{version}", env=embedded_store.env, workers=2) as svc:
        done = run_schemathesis(
            ["run", str(document), "--url", svc.url, "--mode", "positive", "--checks", CHECKS], tmp_path
        )
        alive = svc.proc.poll() is None
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "Selected: 9/9" in output, output[-3000:]
    assert "Traceback" not in svc.output()
    assert alive
