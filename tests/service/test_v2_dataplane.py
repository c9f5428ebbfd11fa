"""The V2 data plane and its tensor codec in process, over the real core and runner (no transport)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from diabetes_service.model.loading import Feature, LoadedModel, load_model
from diabetes_service.model.trust import TrustPolicy
from diabetes_service.protocols.v2 import tensors as v2_tensors
from diabetes_service.protocols.v2.dataplane import ModelNotFound, Tensor, V2DataPlane
from diabetes_service.scoring.core import INVALID, TOO_MANY_ROWS, ModelIdentity, ScoringCore, ScoringError
from diabetes_service.scoring.errors import NotReady
from diabetes_service.scoring.state import ServiceState
from diabetes_service.settings import ServiceSettings
from tests.conftest import FEATURES


def _plane(core: ScoringCore) -> V2DataPlane:
    state = ServiceState(ServiceSettings(model_name=core.identity.name, model_version=core.identity.version))
    state.mark_warm(core)
    return V2DataPlane(state, extensions=("binary_tensor_data",))


@pytest.fixture(scope="module")
def regressor(example_model_pkl) -> ScoringCore:
    core = ScoringCore(
        load_model(example_model_pkl, TrustPolicy(allow_pickle=True)), ModelIdentity("diabetes_model", "3"), max_rows=50
    )
    core.warm_up()
    return core


@pytest.fixture(scope="module")
def classifier(example_data) -> ScoringCore:
    labels = np.array(["low", "high"])[(np.array(example_data.y_train) > 139.0).astype(int)]
    estimator = LogisticRegression().fit(example_data.x_train, labels)
    features = tuple(Feature(name, "double") for name in FEATURES)
    core = ScoringCore(LoadedModel(estimator, features, None), ModelIdentity("diabetes_classifier", "1"), max_rows=50)
    core.warm_up()
    return core


def infer(plane: V2DataPlane, inputs, outputs=None, name=None, version=None, request_id=None):
    name = name or plane.state.core.identity.name  # type: ignore[union-attr]
    return asyncio.run(plane.infer(name, version, inputs, outputs, request_id))


def matrix_tensor(rows, datatype="FP64") -> Tensor:
    data = np.asarray(rows, dtype=v2_tensors.DTYPES[datatype])
    return Tensor("input-0", datatype, list(data.shape), data)


def test_matrix_input_predicts_as_the_model(regressor, example_data):
    plane = _plane(regressor)
    rows = example_data.x_test[:3]
    answer = infer(plane, [matrix_tensor(rows)], request_id="req-7")
    expected = regressor.estimator.predict(np.array(rows))
    (output,) = answer.outputs
    assert (output.name, output.datatype, output.shape) == ("predict", "FP64", [3])
    np.testing.assert_allclose(output.data, expected, rtol=1e-12)
    assert (answer.id, answer.rows, answer.method) == ("req-7", 3, "predict")
    assert (answer.model.name, answer.model.version) == ("diabetes_model", "3")


@pytest.mark.parametrize("datatype", ["FP32", "INT64", "UINT8"])
def test_any_numeric_datatype_is_taken(regressor, datatype):
    plane = _plane(regressor)
    rows = [[1, 0, 2, 1, 0, 0, 1, 3, 0, 1]]
    answer = infer(plane, [matrix_tensor(rows, datatype)])
    np.testing.assert_allclose(answer.outputs[0].data, regressor.estimator.predict(np.array(rows, float)), rtol=1e-6)


@pytest.mark.parametrize("column_shape", ["flat", "column"])
def test_one_input_per_feature(regressor, example_data, column_shape):
    plane = _plane(regressor)
    rows = np.array(example_data.x_test[:4])
    inputs = []
    for i, name in enumerate(reversed(FEATURES)):  # any order
        column = rows[:, FEATURES.index(name)]
        if column_shape == "column":
            column = column.reshape(-1, 1)
        inputs.append(Tensor(name, "FP64", list(column.shape), column))
        assert i < 10
    answer = infer(plane, inputs)
    np.testing.assert_allclose(answer.outputs[0].data, regressor.estimator.predict(rows), rtol=1e-12)


def test_classifier_outputs_by_name(classifier, example_data):
    plane = _plane(classifier)
    rows = example_data.x_test[:5]
    answer = infer(plane, [matrix_tensor(rows)], outputs=["predict_proba", "predict"])
    proba, labels = answer.outputs
    assert (proba.name, proba.datatype, proba.shape) == ("predict_proba", "FP64", [5, 2])
    np.testing.assert_allclose(proba.data, classifier.estimator.predict_proba(np.array(rows)), rtol=1e-12)
    assert proba.parameters == {"classes": '["high", "low"]'}  # the order of classes_
    assert labels.parameters == {}
    assert (labels.name, labels.datatype, labels.shape) == ("predict", "BYTES", [5])
    assert labels.data.tolist() == classifier.estimator.predict(np.array(rows)).tolist()
    assert answer.method == "predict_proba"
    # Asked twice: answered once. None asked for: predict, even for a classifier.
    assert [t.name for t in infer(plane, [matrix_tensor(rows)], outputs=["predict", "predict"]).outputs] == ["predict"]
    assert [t.name for t in infer(plane, [matrix_tensor(rows)]).outputs] == ["predict"]


@pytest.mark.parametrize(
    ("inputs", "outputs", "field", "words"),
    [
        ([matrix_tensor([[0.1] * 9])], None, "inputs[0].shape", "expected [N, 10]"),
        ([matrix_tensor([0.1] * 10)], None, "inputs[0].shape", "expected [N, 10]"),
        ([matrix_tensor([[0.1] * 10])], ["predict_proba"], "outputs[0].name", "unknown output 'predict_proba'"),
        ([matrix_tensor([[0.1] * 10], "BOOL")], None, "inputs[0].datatype", "takes numbers"),
        ([matrix_tensor([[0.1] * 10]), matrix_tensor([[0.1] * 10])], None, "inputs[0].name", "unknown input"),
        ([], None, "inputs", "one [N, 10] tensor"),
        ([matrix_tensor([[0.1] * 10, [np.inf] * 10])], None, "inputs[0].data[1][0]", "finite"),
        (
            [Tensor(n, "FP64", [1], np.array([0.1])) for n in FEATURES[:9]],
            None,
            "inputs",
            "missing feature 's6'",
        ),
        (
            [*(Tensor(n, "FP64", [1], np.array([0.1])) for n in FEATURES), Tensor("age", "FP64", [1], np.array([1.0]))],
            None,
            "inputs[10].name",
            "given twice",
        ),
        (
            [Tensor(n, "FP64", [1, 2], np.array([[0.1, 0.2]])) for n in FEATURES],
            None,
            "inputs[0].shape",
            "[N] or [N, 1]",
        ),
    ],
)
def test_caller_mistakes_are_scoring_errors(regressor, inputs, outputs, field, words):
    with pytest.raises(ScoringError) as raised:
        infer(_plane(regressor), inputs, outputs)
    assert raised.value.field == field
    assert words in raised.value.message
    assert raised.value.kind == INVALID


def test_too_many_rows(regressor):
    with pytest.raises(ScoringError) as raised:
        infer(_plane(regressor), [matrix_tensor([[0.1] * 10] * 51)])
    assert raised.value.kind == TOO_MANY_ROWS


def test_unknown_model_or_version(regressor):
    plane = _plane(regressor)
    with pytest.raises(ModelNotFound, match="serves 'diabetes_model' version 3"):
        infer(plane, [matrix_tensor([[0.1] * 10])], name="other")
    with pytest.raises(ModelNotFound, match="no version '2'"):
        infer(plane, [matrix_tensor([[0.1] * 10])], version="2")
    assert infer(plane, [matrix_tensor([[0.1] * 10])], version="3").rows == 1
    with pytest.raises(ModelNotFound):
        plane.model_ready("diabetes_model", "4")
    with pytest.raises(ModelNotFound):
        plane.model_metadata("other", None)


def test_health_and_metadata(regressor, classifier):
    plane = _plane(regressor)
    assert plane.live()
    assert plane.ready()
    assert plane.model_ready("diabetes_model", None)
    server = plane.server_metadata()
    assert server["name"] == "diabetes-scoring"
    assert server["extensions"] == ["binary_tensor_data"]
    meta = plane.model_metadata("diabetes_model", "3")
    assert meta["versions"] == ["3"]
    assert meta["platform"] == "sklearn"
    (matrix,) = meta["inputs"]
    assert (matrix["datatype"], matrix["shape"]) == ("FP64", [-1, 10])
    assert matrix["parameters"]["features"].split(",") == FEATURES
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    outputs = _plane(classifier).model_metadata("diabetes_classifier", None)["outputs"]
    assert outputs == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        # Which class each column is, in order (classes_), as JSON text: V2 parameters are scalars.
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2], "parameters": {"classes": '["high", "low"]'}},
        # A binary classifier's decision_function: one score per row (the positive class's).
        {"name": "decision_function", "datatype": "FP64", "shape": [-1]},
    ]


def test_not_ready_while_loading():
    state = ServiceState(ServiceSettings(model_name="diabetes_model", model_version="1"))
    plane = V2DataPlane(state)
    assert plane.live()
    assert not plane.ready()
    assert plane.model_ready("diabetes_model", None) is False
    with pytest.raises(ModelNotFound):  # the name is known before the model is
        plane.model_ready("nope", None)
    with pytest.raises(NotReady):
        plane.model_metadata("diabetes_model", None)


# -- the tensor codec ------------------------------------------------------------------------------


def test_json_data_flat_or_nested():
    flat = v2_tensors.from_json("FP64", [2, 3], [1, 2.5, 3, 4, 5, 6], "inputs[0]")
    nested = v2_tensors.from_json("FP64", [2, 3], [[1, 2.5, 3], [4, 5, 6]], "inputs[0]")
    np.testing.assert_array_equal(flat, nested)
    assert flat.dtype == np.float64
    assert flat.shape == (2, 3)
    assert v2_tensors.from_json("INT32", [2], [1, 2], "x").dtype == np.int32
    assert v2_tensors.from_json("BOOL", [2], [True, False], "x").tolist() == [True, False]
    assert v2_tensors.from_json("BYTES", [1, 2], [["a", "b"]], "x").tolist() == [["a", "b"]]


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "field", "words"),
    [
        ("FP64", [2], [1.0, "2.0"], "x.data[1]", "not a string"),
        ("FP64", [2], [1.0, True], "x.data[1]", "not a boolean"),
        ("FP64", [2], [1.0, None], "x.data[1]", "not null"),
        ("FP64", [3], [1.0, 2.0], "x.data", "needs 3"),
        ("FP64", [2, 2], [[1.0, 2.0], [3.0]], "x.data", "same length"),
        ("FP64", [-1], [1.0], "x.shape[0]", "non-negative"),
        ("FP99", [1], [1.0], "x.datatype", "unknown datatype"),
        ("INT64", [1], [1.5], "x.data", "whole numbers"),
        ("UINT8", [1], [300], "x.data", "out of the range"),
        ("BOOL", [1], [1], "x.data[0]", "true or false"),
        ("BYTES", [1], [1], "x.data[0]", "must be a string"),
    ],
)
def test_json_data_refused(datatype, shape, data, field, words):
    with pytest.raises(ScoringError) as raised:
        v2_tensors.from_json(datatype, shape, data, "x")
    assert raised.value.field == field
    assert words in raised.value.message


@pytest.mark.parametrize(
    "values",
    [
        np.arange(6, dtype=np.float64).reshape(2, 3),
        np.arange(4, dtype=np.float32),
        np.array([1, -2], dtype=np.int64),
        np.array([True, False]),
        np.array(["low", "hé", ""]),
        np.array([b"x", b"yz"], dtype=object),
    ],
)
def test_raw_round_trip(values):
    datatype = v2_tensors.datatype_of(values)
    back = v2_tensors.from_raw(datatype, list(values.shape), v2_tensors.to_raw(values), "x")
    expected = [v.decode() if isinstance(v, bytes) else v for v in values.ravel().tolist()]
    assert back.ravel().tolist() == expected
    assert back.shape == values.shape


def test_raw_data_refused():
    with pytest.raises(ScoringError, match="needs 16"):
        v2_tensors.from_raw("FP64", [2], b"\0" * 15, "x")
    with pytest.raises(ScoringError, match="cut short"):
        v2_tensors.from_raw("BYTES", [1], b"\x05\0\0\0ab", "x")
    with pytest.raises(ScoringError, match="needs 2"):
        v2_tensors.from_raw("BYTES", [2], b"\x01\0\0\0a", "x")
