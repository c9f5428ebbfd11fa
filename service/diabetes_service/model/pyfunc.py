"""What an MLflow model folder says about serving it: the method its pyfunc flavor calls, and MLflow's version.

MLflow serves a scikit-learn model through its pyfunc flavor, which calls the method named by
`predict_fn` in the MLmodel file (`predict` unless the model was logged otherwise). Protocols that
promise MLflow's answers default to that method. Read once when the model is ready, never per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from diabetes_client.schema import PREDICT

DEFAULT_PREDICT_FN = PREDICT  # what MLflow's pyfunc calls when the MLmodel file names nothing


@dataclass(frozen=True)
class PyfuncFacts:
    predict_fn: str = DEFAULT_PREDICT_FN
    logged_with: str | None = None  # the MLflow version the MLmodel file names

    @property
    def mlflow_version(self) -> str | None:
        """MLflow installed here, else the one that logged the model. Asked when /version is, not at
        start-up: reading the installed distributions costs each worker ~30 ms before its first answer."""
        return _installed_mlflow() or self.logged_with


@cache
def _installed_mlflow() -> str | None:
    try:
        return metadata.version("mlflow")
    except metadata.PackageNotFoundError:
        return None


def read_pyfunc(model_path: str | None, recorded: str | None = None) -> PyfuncFacts:
    """The facts of the model at `model_path` (a folder with an MLmodel file); defaults for a bare pickle.

    `recorded`: the `predict_fn` the prepared-model cache kept with the entry, used when the MLmodel
    file is not there (an image or a copy holding the artifact alone), so that a start from the
    cache answers as the start that prepared it.
    """
    logged_with, predict_fn = None, recorded or DEFAULT_PREDICT_FN
    mlmodel = Path(model_path) / "MLmodel" if model_path else None
    if mlmodel is not None and mlmodel.is_file():
        import yaml

        from diabetes_service.model.loading import parse_mlmodel

        try:
            document = parse_mlmodel(mlmodel.read_text()) or {}
        except (OSError, yaml.YAMLError):
            document = {}
        flavor = (document.get("flavors") or {}).get("python_function") or {}
        predict_fn = str(flavor.get("predict_fn") or DEFAULT_PREDICT_FN)
        logged_with = document.get("mlflow_version")
    return PyfuncFacts(predict_fn, str(logged_with) if logged_with else None)
