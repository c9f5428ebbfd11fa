"""Load a scikit-learn model from a local path, without importing MLflow.

Accepted: an MLflow model folder (an `MLmodel` file with the `sklearn` flavor, pickled with
skops, cloudpickle or pickle), or a bare joblib/pickle file such as the classic Azure example's
`model.pkl` (or a folder holding just that file). Feature names and types come from the MLflow
signature; for a bare pickle from `feature_names_in_` / `n_features_in_`.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diabetes_service.errors import ModelLoadError
from diabetes_service.model.trust import TrustPolicy, check_pickle, check_pin, trusted_skops_types
from diabetes_service.model.versions import check_version, saved_with

BARE_PICKLE_NAMES = ("model.pkl", "model.joblib")
STRICT = TrustPolicy()  # no pickle without an opt-in or a pin; skops types from the allow-list only


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # MLflow's column type: "double", "float", "long", "integer", "boolean", "string", "datetime"...
    optional: bool = False  # `"required": false` in the signature: null is allowed


@dataclass(frozen=True)
class LoadedModel:
    estimator: Any
    features: tuple[Feature, ...]
    input_example: list[list[Any]] | None  # rows in feature order: floats, or typed values as JSON gives them
    sha256: str | None = None  # of the artifact file the estimator came from
    predict_fn: str | None = None  # the MLmodel's pyfunc method, as recorded with a compiled form


def load_model(path: str | Path, policy: TrustPolicy = STRICT) -> LoadedModel:
    """Load what `path` holds, if `policy` trusts it (trust.py)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"no model at {path}")
    if path.is_dir() and (path / "MLmodel").is_file():
        return _load_mlflow_folder(path, policy)
    file = model_file(path)
    if file is None:
        raise ModelLoadError(f"{path} holds neither an MLmodel file nor a model.pkl")
    return _load_bare_pickle(file, policy)


def parse_mlmodel(text: str) -> Any:
    """An MLmodel file's YAML, with libyaml's parser where PyYAML has it (~0.7 ms against ~5 ms in
    pure Python: the supervisor and every worker read the file on their way to the first answer)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def model_file(path: Path) -> Path | None:
    """The one file that holds the estimator: what is loaded, hashed and pinned."""
    if path.is_file():
        return path
    if (path / "MLmodel").is_file():
        flavor = (parse_mlmodel((path / "MLmodel").read_text()).get("flavors") or {}).get("sklearn") or {}
        return path / flavor.get("pickled_model", "model.pkl")
    return next((path / name for name in BARE_PICKLE_NAMES if (path / name).is_file()), None)


def load_compiled(folder: str | Path) -> LoadedModel:
    """A model compiled by the preparation step: a linear model's numpy arrays, and the encoding in
    front of it for a typed pipeline (compile/encoded.py); no scikit-learn or pandas import."""
    from diabetes_service.model.compile import encoded
    from diabetes_service.model.compile.linear import load

    compiled, meta = load(Path(folder))
    if encoded.is_encoded(Path(folder)):
        compiled = encoded.load(Path(folder), compiled)
    features = tuple(Feature(f["name"], f["type"], f.get("optional", False)) for f in meta["features"])
    return LoadedModel(compiled, features, meta.get("input_example"), predict_fn=meta.get("predict_fn"))


def _load_bare_pickle(path: Path, policy: TrustPolicy) -> LoadedModel:
    digest = check_pin(path, policy)
    check_pickle(path, policy)
    import joblib

    try:
        estimator = joblib.load(path)
    except Exception as exc:
        raise ModelLoadError(f"cannot unpickle {path.name}: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(estimator, _features_of_estimator(estimator), None, digest)


def _features_of_estimator(estimator: Any) -> tuple[Feature, ...]:
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return tuple(Feature(str(name), "double") for name in names)
    count = getattr(estimator, "n_features_in_", None)
    if count is None:
        raise ModelLoadError(f"{type(estimator).__name__} is not a fitted scikit-learn estimator")
    return tuple(Feature(f"x{i}", "double") for i in range(int(count)))


def _load_mlflow_folder(folder: Path, policy: TrustPolicy) -> LoadedModel:
    import yaml

    try:
        mlmodel = parse_mlmodel((folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"unreadable MLmodel file: {exc}") from exc
    flavor = (mlmodel.get("flavors") or {}).get("sklearn")
    if not flavor:
        raise ModelLoadError("the MLflow model has no sklearn flavor (only scikit-learn models are served)")
    file = folder / flavor.get("pickled_model", "model.pkl")
    if not file.is_file():
        raise ModelLoadError(f"the MLflow model has no {file.name}")
    digest = check_pin(file, policy)
    check_version(saved_with(folder, mlmodel), policy.allow_version_mismatch)
    estimator = _unpickle_flavor(file, flavor.get("serialization_format", "cloudpickle"), policy)
    features = _features_of_signature(mlmodel.get("signature")) or _features_of_estimator(estimator)
    return LoadedModel(estimator, features, _input_example(folder, mlmodel, features), digest)


def _unpickle_flavor(file: Path, fmt: str, policy: TrustPolicy) -> Any:
    if fmt != "skops":
        check_pickle(file, policy)
    try:
        if fmt == "skops":
            import skops.io

            trusted = trusted_skops_types(skops.io.get_untrusted_types(file=file), policy)
            return skops.io.load(file, trusted=trusted)
        with file.open("rb") as handle:
            # cloudpickle writes standard pickles; classes load by reference like plain pickle.
            return pickle.load(handle)  # noqa: S301 - trusted by check_pickle: opted in or pinned
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load {file.name} ({fmt}): {type(exc).__name__}: {exc}") from exc


def _features_of_signature(signature: dict[str, Any] | None) -> tuple[Feature, ...]:
    if not signature or not signature.get("inputs"):
        return ()
    inputs = json.loads(signature["inputs"])
    if all("name" in column and column.get("type") != "tensor" for column in inputs):
        return tuple(
            Feature(column["name"], column.get("type", "double"), column.get("required", True) is False)
            for column in inputs
        )
    # A tensor signature: one unnamed array of shape (-1, n).
    shape = inputs[0].get("tensor-spec", {}).get("shape", [])
    if len(inputs) == 1 and len(shape) == 2 and shape[1] > 0:
        return tuple(Feature(f"x{i}", "double") for i in range(shape[1]))
    return ()


def _input_example(folder: Path, mlmodel: dict[str, Any], features: tuple[Feature, ...]) -> list[list[Any]] | None:
    info = mlmodel.get("saved_input_example_info") or {}
    example_file = folder / info.get("artifact_path", "input_example.json")
    try:
        example = json.loads(example_file.read_text())
    except (OSError, ValueError):
        return None
    names = [feature.name for feature in features]
    if isinstance(example, dict) and "data" in example:
        columns = example.get("columns", names)
        rows = example["data"]
        numeric = all(feature.type in ("double", "float") for feature in features)
        try:
            picks = [columns.index(name) for name in names]
            # Typed values stay as JSON gives them: the example row of the API description.
            if numeric:
                return [[float(row[i]) for i in picks] for row in rows]
            # MLflow writes a missing value as NaN: null, as a request would send it.
            return [[None if _is_nan(row[i]) else row[i] for i in picks] for row in rows]
        except (ValueError, TypeError, IndexError):
            return None
    return None


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value
