"""A scikit-learn linear regressor read from its skops file's own arrays: numpy and JSON, no scikit-learn.

Why: on a first start (no prepared form in the cache yet) the preparation child must import
scikit-learn and skops to load and verify the model, about 2 s on 2 cores, while the answer itself
needs two arrays. For the few estimators whose prediction is exactly `x @ coef_ + intercept_`, the
supervisor reads those arrays here and the workers serve them at once; the preparation child still
loads the artifact with skops and scikit-learn and compares (model/provisional.py), and only its
verified form enters the cache.

What is read, and only that: skops' `schema.json` describes every object of the file as a node
naming its type and how it loads. A file is read here only when its tree has exactly the expected
shape: one object of a class below, whose state holds JSON scalars and numpy arrays stored as
`.npy` members (read with `allow_pickle=False`: nothing in the file is ever executed or imported).
Every type it names passes the same trust policy as skops' own loading (trust.py), a pinned
digest must match, and so must the scikit-learn version rule (versions.py). Anything else,
including any doubt, returns None: the child prepares it as before.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from diabetes_service.errors import ModelLoadError
from diabetes_service.model.compile.linear import LinearRegressor
from diabetes_service.model.trust import TrustPolicy, trusted_skops_types

# scikit-learn's linear regressors whose `predict` is `x @ coef_.T + intercept_` (LinearModel's
# `_decision_function`), as skops names them: module and class.
REGRESSORS = frozenset(
    {
        "sklearn.linear_model._base.LinearRegression",
        "sklearn.linear_model._ridge.Ridge",
        "sklearn.linear_model._coordinate_descent.Lasso",
        "sklearn.linear_model._coordinate_descent.ElasticNet",
    }
)
# The only other types and loaders a readable file may name: the state's dict (with the list of its
# keys' type, str), its JSON scalars and strings, and numpy arrays and scalars.
OTHER_TYPES = frozenset(
    {"builtins.dict", "builtins.list", "builtins.str", "builtins.tuple", "numpy.ndarray", "numpy.float64"}
)
LOADERS = frozenset({"ObjectNode", "DictNode", "ListNode", "TypeNode", "JsonNode", "NdArrayNode", "TupleNode"})
SCHEMA = "schema.json"
MAX_SCHEMA_BYTES = 1 << 20  # a linear model's schema is a few KiB


def read(
    folder: Path, mlmodel: dict[str, Any], digest: str, policy: TrustPolicy
) -> tuple[LinearRegressor, dict] | None:
    """The compiled regressor and its metadata (as linear.save stores them) for the MLflow model in
    `folder`, whose artifact file has sha256 `digest`; None when it is not one read here."""
    flavor = (mlmodel.get("flavors") or {}).get("sklearn") or {}
    if flavor.get("serialization_format") != "skops":
        return None
    if policy.sha256 is not None and digest != policy.sha256.lower():
        return None  # the child refuses it, with the reason
    from diabetes_service.model.loading import _features_of_signature, _input_example
    from diabetes_service.model.versions import check_version, saved_with

    try:  # the load's rule too: saved with another major version of scikit-learn, the child refuses it
        check_version(saved_with(folder, mlmodel), policy.allow_version_mismatch)
    except ModelLoadError:
        return None

    features = _features_of_signature(mlmodel.get("signature"))
    if not features:
        return None
    try:
        with zipfile.ZipFile(folder / flavor.get("pickled_model", "model.pkl")) as archive:
            if archive.getinfo(SCHEMA).file_size > MAX_SCHEMA_BYTES:
                return None
            schema = json.loads(archive.read(SCHEMA))
            names = _type_names(schema)
            if names is None:
                return None
            trusted_skops_types(names, policy)
            compiled = _regressor(schema, archive, [feature.name for feature in features])
    except (OSError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile, ModelLoadError):
        return None
    if compiled is None:
        return None
    from diabetes_service.model.pyfunc import read_pyfunc

    meta = {
        "features": [asdict(feature) for feature in features],
        "input_example": _input_example(folder, mlmodel, features),
        "predict_fn": read_pyfunc(str(folder)).predict_fn,
    }
    return compiled, meta


def _type_names(node: Any) -> set[str] | None:
    """Every type the tree names; None if it names one outside REGRESSORS and OTHER_TYPES, or
    loads a node any other way."""
    names: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        if "__class__" in item:
            name = f"{item.get('__module__')}.{item['__class__']}"
            if (name not in REGRESSORS and name not in OTHER_TYPES) or item.get("__loader__") not in LOADERS:
                return None
            names.add(name)
        stack.extend(item.values())  # every value, of nodes and of plain dicts (the state's attributes)
    return names


def _regressor(schema: dict, archive: zipfile.ZipFile, names: list[str]) -> LinearRegressor | None:
    width = len(names)
    name = f"{schema.get('__module__')}.{schema.get('__class__')}"
    state = schema.get("content") or {}
    if name not in REGRESSORS or schema.get("__loader__") != "ObjectNode" or state.get("__loader__") != "DictNode":
        return None
    attributes = state.get("content") or {}
    if "feature_names_in_" in attributes and _names(attributes["feature_names_in_"]) != names:
        return None  # fitted on columns in another order than the signature's: scikit-learn maps them
    coef = _array(attributes.get("coef_"), archive)
    intercept = _array(attributes.get("intercept_"), archive)
    count = _json(attributes.get("n_features_in_"))
    if coef is None or intercept is None or count != width:
        return None
    if coef.dtype != np.float64 or coef.shape != (width,) or intercept.shape != () or intercept.dtype.kind != "f":
        return None  # one target, one coefficient per feature: anything else goes to scikit-learn
    if not (np.isfinite(coef).all() and np.isfinite(intercept)):
        return None
    return LinearRegressor(np.ascontiguousarray(coef), intercept.astype(np.float64), schema["__class__"])


def _array(node: Any, archive: zipfile.ZipFile) -> np.ndarray | None:
    if not isinstance(node, dict):
        return None
    if node.get("__loader__") == "JsonNode":  # a plain float, as an intercept of 0.0 is stored
        value = _json(node)
        return np.asarray(float(value)) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if node.get("__loader__") != "NdArrayNode" or node.get("type") != "numpy":
        return None
    return np.load(io.BytesIO(archive.read(node["file"])), allow_pickle=False)


def _names(node: Any) -> list[str] | None:
    """A fitted model's `feature_names_in_` (an object array skops stores as JSON strings)."""
    if not isinstance(node, dict) or node.get("__loader__") != "NdArrayNode" or node.get("type") != "json":
        return None
    items = node.get("content")
    if not isinstance(items, list):
        return None
    values = [_json(item) for item in items]
    return values if all(isinstance(value, str) for value in values) else None


def _json(node: Any) -> Any:
    if not isinstance(node, dict) or node.get("__loader__") != "JsonNode" or not node.get("is_json"):
        return None
    return json.loads(node["content"])
