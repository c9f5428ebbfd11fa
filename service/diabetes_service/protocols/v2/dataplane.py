"""The Open Inference Protocol (V2) data plane, shared by the REST and gRPC transports.

It answers the protocol's questions (live, ready, server and model metadata, model ready, infer)
over the scoring core, with tensors already decoded into numpy (v2/tensors.py), and knows nothing
of HTTP or gRPC: each transport decodes its wire form into `Tensor`s, calls this, and encodes the
answer and the errors its own way. Caller mistakes are the core's `ScoringError` (kind INVALID or
TOO_MANY_ROWS), an unknown model or version is `ModelNotFound`, a model still loading scoring's
`NotReady`.

The model is the one the service serves, under its registered name and version (the ones in
`x-model-name` / `x-model-version`). Inputs are either one `[N, n_features]` tensor of any numeric
datatype, or one tensor per feature named by the feature, of shape `[N]` or `[N, 1]` (what
pandas-based V2 clients send). A model with typed columns (strings, integers, booleans...) takes
only the second form, each tensor of a datatype its column takes (v2/columns.py). Outputs are named
by the model's methods (`predict`, `predict_proba`, `decision_function`); none requested:
`predict`. An output with one column per class says which, in order, in its parameters
(`classes`: the labels as JSON text, since a V2 parameter is a single string, number or boolean).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from diabetes_client.schema import PREDICT
from diabetes_service.protocols.v2.columns import column_values, metadata_input
from diabetes_service.protocols.v2.tensors import NUMERIC, datatype_of
from diabetes_service.scoring.core import ModelIdentity, ModelInput, ScoringCore, ScoringError
from diabetes_service.scoring.errors import NotReady
from diabetes_service.scoring.rollout import answered
from diabetes_service.scoring.state import ServiceState

SERVER_NAME = "diabetes-scoring"
PLATFORM = "sklearn"
# The name the one-matrix input has in the metadata (as MLServer names its first input); any name
# that is not a feature's is taken as the matrix.
MATRIX_INPUT = "input-0"


class ModelNotFound(Exception):
    """No such model or version here; the message says what is served."""


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray  # of `shape`, decoded from JSON, binary or protobuf contents
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferAnswer:
    outputs: list[Tensor]
    id: str | None
    model: ModelIdentity
    rows: int
    method: str  # of the first output, for the metrics and the access log


@cache
def _server_version() -> str:
    """Read when first asked, not by every worker at start-up: finding the installed distribution
    (importlib.metadata, email's parser) cost each worker ~40 ms before its first answer."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:  # run from a source tree without installing it
        return "0"


class V2DataPlane:
    def __init__(self, state: ServiceState, extensions: tuple[str, ...] = ()) -> None:
        self.state = state
        self.extensions = list(extensions)
        self._metadata: tuple[ScoringCore, dict[str, Any]] | None = None

    # -- health and metadata -------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.state.ready

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": _server_version(), "extensions": self.extensions}

    def model_ready(self, name: str, version: str | None) -> bool:
        """Whether the model is ready for inference here; an unknown name or version: ModelNotFound."""
        self._identify(name, version)
        return self.state.ready

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        core = self._identify(name, version)
        if core is None:
            raise NotReady("the model is still loading; retry shortly")
        if self._metadata is None or self._metadata[0] is not core:  # once per model version
            self._metadata = (core, _describe(core))
        return self._metadata[1]

    # -- inference -----------------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        version: str | None,
        inputs: list[Tensor],
        requested_outputs: list[str] | None = None,
        request_id: str | None = None,
    ) -> InferAnswer:
        state = self.state
        core = state.core
        if core is None or not state.warm:
            self._identify(name, version)  # an unknown model is a 404 even while loading
            core = await state.core_when_warm()
        self._identify(name, version, core)
        methods = _methods(core, requested_outputs)
        matrix = _matrix(core, inputs)
        runner = state.runner
        outputs = []
        for method in methods:
            result = await runner.predict(matrix, method)  # type: ignore[union-attr]
            values = np.asarray(result)
            parameters = _output_parameters(core, values)
            outputs.append(Tensor(method, datatype_of(values), list(values.shape), values, parameters))
        # The version that computed the outputs: the challenger's during a canary, where it answered.
        identity = core.identity if state.rollout is None else answered(core.identity)
        return InferAnswer(outputs, request_id, identity, len(matrix), methods[0])

    # -- helpers -------------------------------------------------------------------------------

    def _identify(self, name: str, version: str | None, core: ScoringCore | None = None) -> ScoringCore | None:
        """The core serving `name` (and `version`, when given); ModelNotFound for anything else."""
        state = self.state
        core = core or (state.core if state.warm else None)
        served_name, served_version = (
            (core.identity.name, core.identity.version) if core else (state.model_name, state.model_version)
        )
        if name != served_name:
            raise ModelNotFound(f"no model {name!r} here; this service serves {served_name!r} version {served_version}")
        if version is not None and version != served_version:
            raise ModelNotFound(f"model {name!r} has no version {version!r} here; it serves version {served_version}")
        return core


def _methods(core: ScoringCore, requested: list[str] | None) -> list[str]:
    if not requested:
        return [PREDICT]
    for i, name in enumerate(requested):
        if name not in core.methods:
            outputs = ", ".join(core.methods)
            raise ScoringError(f"unknown output {name!r}; this model has {outputs}", f"outputs[{i}].name")
    # An output asked for twice is answered once (a schema cannot say names are unique).
    return list(dict.fromkeys(requested))


def _output_parameters(core: ScoringCore, values: np.ndarray) -> dict[str, Any]:
    """`classes` (JSON text) for an output with one column per class: which class each column is."""
    classes = core.classes
    if classes is None or values.ndim != 2 or values.shape[1] != len(classes):
        return {}
    return {"classes": core.classes_json}


def _matrix(core: ScoringCore, inputs: list[Tensor]) -> ModelInput:
    """One [N, n_features] tensor, or one tensor per feature named by feature, to the core's checked
    matrix; for a model with typed columns, one tensor per column to the core's checked table."""
    if core.typed:
        return _typed(core, inputs)
    if not inputs:
        raise ScoringError(
            f"must hold one [N, {core.n_features}] tensor or one tensor per feature ({', '.join(core.feature_names)})",
            "inputs",
        )
    first = inputs[0].data
    if len(inputs) == 1 and first.ndim == 2 and first.shape[1] == core.n_features and inputs[0].datatype in NUMERIC:
        return core.checked(first.astype(np.float64, copy=False), "inputs[0].data")  # the usual [N, n] tensor
    for i, tensor in enumerate(inputs):
        if tensor.datatype not in NUMERIC:
            raise ScoringError(
                f"datatype {tensor.datatype} is not supported: the model takes numbers (FP64, FP32 or an integer type)",
                f"inputs[{i}].datatype",
            )
    features = core.feature_names
    by_feature = all(tensor.name in features for tensor in inputs)
    if len(inputs) == 1 and not (by_feature and core.n_features == 1 and inputs[0].data.ndim == 1):
        tensor = inputs[0]
        if tensor.data.ndim != 2 or tensor.data.shape[1] != core.n_features:
            raise ScoringError(
                f"has shape {tensor.shape}; expected [N, {core.n_features}], one row of {core.n_features} values "
                f"per prediction ({', '.join(core.feature_names)}), or one tensor per feature",
                "inputs[0].shape",
            )
        return core.checked(tensor.data.astype(np.float64, copy=False), "inputs[0].data")
    if not by_feature:
        i, stray = next((i, t) for i, t in enumerate(inputs) if t.name not in features)
        raise ScoringError(
            f"unknown input {stray.name!r}: send one [N, {core.n_features}] tensor, or one tensor per feature "
            f"named by feature ({', '.join(core.feature_names)})",
            f"inputs[{i}].name",
        )
    columns: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(inputs):
        data = tensor.data
        if data.ndim == 2 and data.shape[1] == 1:
            data = data[:, 0]
        if data.ndim != 1:
            raise ScoringError(f"has shape {tensor.shape}; a feature's tensor is [N] or [N, 1]", f"inputs[{i}].shape")
        if tensor.name in columns:
            raise ScoringError(f"feature {tensor.name!r} is given twice", f"inputs[{i}].name")
        columns[tensor.name] = data.astype(np.float64, copy=False)
    # Row-major, as the other forms are: the same rows then get the same answers to the last bit.
    return np.ascontiguousarray(core.column_matrix(columns, "inputs"))


def _typed(core: ScoringCore, inputs: list[Tensor]) -> ModelInput:
    """One tensor per column, named by the column, each of a datatype its column takes."""
    features = core.feature_names
    columns: dict[str, list[Any]] = {}
    for i, tensor in enumerate(inputs):
        field = f"inputs[{i}]"
        if tensor.name not in core.feature_index:
            raise ScoringError(
                f"unknown input {tensor.name!r}: this model takes one tensor per column ({', '.join(features)})",
                f"{field}.name",
            )
        if tensor.name in columns:
            raise ScoringError(f"column {tensor.name!r} is given twice", f"{field}.name")
        j = core.feature_index[tensor.name]
        columns[tensor.name] = column_values(core.column_types[j], tensor.name, tensor.datatype, tensor.data, field)
    missing = [name for name in features if name not in columns]
    if missing:
        raise ScoringError(
            f"missing input {missing[0]!r}: this model takes one tensor per column ({', '.join(features)})", "inputs"
        )
    return core.typed_columns(columns, "inputs")


def _describe(core: ScoringCore) -> dict[str, Any]:
    """Model metadata: the inputs (one matrix with the feature names, or one tensor per typed column),
    and one output per method the model has."""
    probe = core.matrix([list(row) for row in core.example_rows[:1]], "input example")
    outputs = []
    for method in core.methods:
        values = np.asarray(core.predict(probe, method))
        output = {"name": method, "datatype": datatype_of(values), "shape": [-1, *values.shape[1:]]}
        parameters = _output_parameters(core, values)
        if parameters:
            output["parameters"] = parameters
        outputs.append(output)
    identity = core.identity
    described = {"name": identity.name, "versions": [identity.version], "platform": PLATFORM}
    if core.typed:
        inputs = [metadata_input(f.name, t) for f, t in zip(core.features, core.column_types, strict=True)]
        return {**described, "inputs": inputs, "outputs": outputs}
    return {
        **described,
        "inputs": [
            {
                "name": MATRIX_INPUT,
                "datatype": "FP64",
                "shape": [-1, core.n_features],
                # V2 parameters are strings, numbers or booleans (gRPC's InferParameter too): lists as text.
                "parameters": {
                    "features": ",".join(core.feature_names),
                    "feature_types": ",".join(feature.type for feature in core.features),
                    "content_type": "np",
                },
            }
        ],
        "outputs": outputs,
    }
