"""predict_proba through the client, against the registered classifier served from the embedded MLflow store."""

from __future__ import annotations

import math

import joblib
import pytest

from diabetes_client import Client, ModelInfo
from tests.conftest import FEATURES


@pytest.fixture(scope="module")
def classifier(embedded_store):
    """The registered classifier, as the service serves it and as loaded in-process from its run."""
    import mlflow

    info = embedded_store.classifier
    path = mlflow.artifacts.download_artifacts(
        run_id=info["run_id"], artifact_path="model.pkl", tracking_uri=embedded_store.tracking_uri
    )
    return info, joblib.load(path)


def test_predict_proba_equals_the_in_process_models(service, embedded_store, classifier, example_data):
    import pandas as pd

    info, model = classifier
    frame = pd.DataFrame(example_data.x_test, columns=FEATURES)
    want = model.predict_proba(frame).tolist()
    uri = f"models:/{info['model_name']}/{info['model_version']}"
    with service(uri, env=embedded_store.env) as svc, Client(svc.url) as client:
        probabilities = client.predict_proba(frame)
        assert len(probabilities) == len(want)
        for got, row in zip(probabilities, want, strict=True):
            assert got == pytest.approx(row, rel=1e-9, abs=1e-12)
            assert math.isclose(sum(got), 1.0, rel_tol=1e-9)
        # Left out, the method is the service's choice: predict_proba for a classifier, as Azure ML does.
        assert client.score(frame) == probabilities
        assert client.predict(frame) == [float(label) for label in model.predict(frame)]
        assert client.model == ModelInfo(name=info["model_name"], version=str(info["model_version"]))
