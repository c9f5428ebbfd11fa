"""The client installed alone in a fresh virtualenv: base dependencies only (requests, pydantic).

It imports and scores against the real service with neither scikit-learn, numpy, pandas nor MLflow
installed there, and `diabetes score` works from that install too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.client.conftest import PRIMARY
from tests.support.processes import REPO

pytestmark = pytest.mark.slow

# What a pip install of the project builds from: the packaging file and the package folders.
SOURCES = ("pyproject.toml", "README.md", "client", "cli", "service", "trainer", "loadtests")

SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys

    absent = [name for name in ("numpy", "pandas", "sklearn", "mlflow") if importlib.util.find_spec(name)]
    assert not absent, f"installed in the client-only venv: {absent}"

    from diabetes_client import Client

    heavy = sorted({name.split(".")[0] for name in sys.modules} & {"numpy", "pandas", "sklearn", "mlflow"})
    url, key, rows = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
    with Client(url, key) as client:
        result = {
            "predictions": client.predict(rows),
            "features": [feature.name for feature in client.features],
            "ready": client.ready(),
            "heavy": heavy,
        }
    print(json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def client_only_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("client-alone")
    source = root / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "reports")
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=ignore)
        else:
            shutil.copy2(origin, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def test_the_client_alone_imports_and_scores_without_numpy_sklearn_or_mlflow(
    client_only_venv, keyed_service, example_data, in_process_predictions
):
    done = subprocess.run(
        [str(client_only_venv / "bin" / "python"), "-c", SCRIPT, keyed_service.url, PRIMARY],
        input=json.dumps(example_data.x_test),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["predictions"] == pytest.approx(in_process_predictions, rel=1e-12)
    assert result["features"] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert result["ready"] is True
    assert result["heavy"] == []


def test_diabetes_score_works_from_the_client_alone(
    client_only_venv, keyed_service, tmp_path, example_data, in_process_predictions
):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(example_data.x_test[:4]))
    done = subprocess.run(
        [str(client_only_venv / "bin" / "diabetes"), "score", "--url", keyed_service.url, "--key", PRIMARY, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = [float(line) for line in done.stdout.splitlines()]
    assert printed == pytest.approx(in_process_predictions[:4], rel=1e-12)
