"""The typed client against the scoring app in process (the fast tier, issue 22 item 8).

The client speaks to the app through `requests`, as it does to a real service, but its transport
adapter is the in-process ASGI driver's (tests/support/asgi.py `Adapter`), given to it through the
two factories the client builds its adapters with (`diabetes_client.client.retrying_adapter` and
`probe_adapter`): nothing of the tests in the shipped client. What this covers in milliseconds:
rows of every form and typed rows answered with the model's labels, the service's errors raised as
the client's exception hierarchy with the field they name, predict_proba, the description's
features. What needs a real connection stays where it was: retries, timeouts and cut-off answers
(test_transport.py, against a scripted server), and the same calls against a real `diabetes serve`
(test_against_the_service.py, test_classifier.py, test_typed_rows.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

import diabetes_client.client as client_module
from diabetes_client import AuthenticationError, Client, InvalidInputError, ScoringError
from tests.client.conftest import PRIMARY, SECONDARY
from tests.conftest import FEATURES, ExampleData
from tests.support.asgi import Adapter, InProcess
from tests.support.mixed import COLUMNS, fit_mixed_model, records

URL = "http://in-process.test"


def _app(model_path: Path, **settings: object) -> InProcess:
    from diabetes_service.settings import ServiceSettings
    from diabetes_service.transport.app import ScoringApp

    scoring = ScoringApp(ServiceSettings(model_path=str(model_path), access_log=False, allow_pickle=True, **settings))
    scoring.lifecycle.load()
    return InProcess(scoring)


@contextmanager
def _client(driver: InProcess, api_key: str | None = None, **kwargs: object) -> Iterator[tuple[Client, Adapter]]:
    """A `Client` whose every request (scoring and probes) goes to `driver`'s app in process."""
    adapter = Adapter(driver)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client_module, "retrying_adapter", lambda *args, **kw: adapter)
        patch.setattr(client_module, "probe_adapter", lambda: adapter)
        client = Client(URL, api_key, **kwargs)  # type: ignore[arg-type]
    with client:
        yield client, adapter


@pytest.fixture(scope="module")
def keyed(example_model_pkl) -> Iterator[InProcess]:
    """The example's Ridge `model.pkl` with two keys, as tests/client/conftest.py's keyed_service."""
    driver = _app(example_model_pkl, api_keys=f"{PRIMARY},{SECONDARY}")
    yield driver
    driver.close()


@pytest.fixture
def client(keyed) -> Iterator[Client]:
    with _client(keyed, PRIMARY) as (client, _):
        yield client


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, example_data: ExampleData) -> Iterator[tuple[InProcess, object]]:
    """A LogisticRegression on the example's rows (above the median target or not), as a bare pickle."""
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame(example_data.x_train, columns=FEATURES)
    labels = (pd.Series(example_data.y_train) > pd.Series(example_data.y_train).median()).astype(int)
    model = LogisticRegression(max_iter=1000).fit(frame, labels)
    path = tmp_path_factory.mktemp("in-process-classifier") / "model.pkl"
    joblib.dump(model, path)
    driver = _app(path)
    yield driver, model
    driver.close()


def _save_typed(folder: Path) -> tuple[object, pd.DataFrame]:
    """tests/support/mixed.py's pipeline in an MLflow model folder, written through MLflow's `Model`
    (the MLmodel file with its inferred signature, the input example) beside the cloudpickled
    estimator: what `mlflow.sklearn.save_model` writes, less the requirement files it starts a child
    Python to infer."""
    import cloudpickle
    import sklearn
    from mlflow.models import Model, infer_signature

    model, frame = fit_mixed_model()
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(cloudpickle.dumps(model))
    # The example rows the service warms the model up with (a typed model cannot take zeros).
    (folder / "input_example.json").write_text(frame.head(3).to_json(orient="split", index=False))
    meta = Model(signature=infer_signature(frame, model.predict(frame)))
    meta.saved_input_example_info = {"artifact_path": "input_example.json", "type": "dataframe"}
    meta.add_flavor(
        "sklearn", pickled_model="model.pkl", serialization_format="cloudpickle", sklearn_version=sklearn.__version__
    )
    meta.add_flavor("python_function", loader_module="mlflow.sklearn", model_path="model.pkl", predict_fn="predict")
    meta.save(str(folder / "MLmodel"))
    return model, frame


@pytest.fixture(scope="module")
def typed(tmp_path_factory) -> Iterator[tuple[InProcess, object, pd.DataFrame]]:
    folder = tmp_path_factory.mktemp("in-process-typed") / "model"
    model, frame = _save_typed(folder)
    driver = _app(folder)
    yield driver, model, frame
    driver.close()


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS).astype({"note": object})


def test_predictions_equal_the_models_in_every_row_form(client, example_data, in_process_predictions):
    rows = example_data.x_test
    assert client.predict(rows) == pytest.approx(in_process_predictions, rel=1e-12)
    keyed_rows = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    assert client.predict(keyed_rows) == pytest.approx(in_process_predictions, rel=1e-12)
    assert client.predict(np.array(rows)) == pytest.approx(in_process_predictions, rel=1e-12)
    assert client.predict(pd.DataFrame(rows, columns=FEATURES)) == pytest.approx(in_process_predictions, rel=1e-12)


def test_chunks_are_sent_apart_and_put_back_in_order(keyed, in_process_model):
    rng = np.random.default_rng(0)
    rows = rng.uniform(-0.1, 0.1, (25, len(FEATURES))).tolist()
    with _client(keyed, PRIMARY, max_rows_per_request=7) as (client, adapter):
        answer = client.predict(rows)
    assert answer == pytest.approx(in_process_model.predict(pd.DataFrame(rows, columns=FEATURES)).tolist(), rel=1e-12)
    assert [request.path_url for request in adapter.sent].count("/score") == 4  # 7 + 7 + 7 + 4 rows


def test_either_key_works_and_a_wrong_or_missing_one_is_an_authentication_error(keyed, example_data):
    for key in (PRIMARY, SECONDARY):
        with _client(keyed, key) as (client, _):
            assert len(client.predict(example_data.x_test[:2])) == 2
    for key in ("not-a-key", None):
        with _client(keyed, key) as (client, _), pytest.raises(AuthenticationError) as raised:
            client.predict(example_data.x_test[:2])
        assert raised.value.status == 401
        assert isinstance(raised.value, ScoringError)


def test_a_bad_row_deep_in_a_chunked_input_is_named_by_the_service_with_its_place(keyed):
    rows = [[0.01] * len(FEATURES) for _ in range(12)]
    rows[9] = dict(zip(FEATURES, rows[9], strict=True)) | {"glucose": 1.0}
    with _client(keyed, PRIMARY, max_rows_per_request=5) as (client, _), pytest.raises(InvalidInputError) as raised:
        client.predict(rows)
    assert raised.value.status in (400, 422)
    assert raised.value.field is not None
    assert raised.value.field.startswith("data[9]"), repr(raised.value)
    assert "glucose" in str(raised.value)
    assert raised.value.request_id  # the service's x-request-id, to find its log line


def test_predict_proba_on_a_regressor_is_an_invalid_input_error(client, example_data):
    with pytest.raises(InvalidInputError) as raised:
        client.predict_proba(example_data.x_test[:2])
    assert "predict_proba" in str(raised.value)
    assert 400 <= (raised.value.status or 0) < 500


def test_introspection_through_the_probes_and_the_description(client):
    assert client.health() is True
    assert client.ready() is True
    assert [feature.name for feature in client.features] == FEATURES
    assert {feature.type for feature in client.features} == {"number"}
    client.predict([[0.0] * len(FEATURES)])
    assert client.model is not None
    assert client.model.name


def test_predict_proba_equals_the_models(classifier, example_data):
    driver, model = classifier
    rows = example_data.x_test
    expected = model.predict_proba(pd.DataFrame(rows, columns=FEATURES))
    with _client(driver) as (client, _):
        probabilities = client.predict_proba(rows)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-9)
        assert np.allclose(np.sum(probabilities, axis=1), 1.0)
        assert client.predict(rows) == model.predict(pd.DataFrame(rows, columns=FEATURES)).tolist()


def test_typed_rows_get_the_models_string_labels(typed):
    driver, model, frame = typed
    rows = records(frame.head(10))
    rows.append({"smoker": "a category it never saw", "age": 44, "active": True, "bmi": 27.5, "note": None})
    with _client(driver) as (client, _):
        labels = client.predict(rows)
        assert labels == model.predict(_frame(rows)).tolist()  # type: ignore[attr-defined]
        assert set(labels) <= {"high", "low"}
        np.testing.assert_allclose(client.predict_proba(rows), model.predict_proba(_frame(rows)), rtol=1e-9)  # type: ignore[attr-defined]
        assert client.predict([[row[c] for c in COLUMNS] for row in rows]) == labels
        assert client.predict(_frame(rows)) == labels
        assert [(f.name, f.type) for f in client.features] == [
            ("smoker", "string"),
            ("age", "integer"),
            ("active", "boolean"),
            ("bmi", "number"),
            ("note", "string"),
        ]


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [("age", 1.5, "must be an integer"), ("active", "yes", "must be a boolean"), ("smoker", None, "must not be null")],
)
def test_a_type_mistake_is_an_invalid_input_error_naming_row_and_column(typed, column, value, words):
    driver, _, frame = typed
    rows = records(frame.head(3))
    rows[2][column] = value
    with _client(driver) as (client, _), pytest.raises(InvalidInputError) as raised:
        client.predict(rows)
    assert raised.value.field == f"data[2].{column}"
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("rows", "check"),
    [
        ([], lambda error: "data" in str(error)),
        ([[1.0, 2.0]], lambda error: error.field is not None and error.field.startswith("data[0]")),
    ],
)
def test_no_rows_and_rows_of_the_wrong_shape_are_invalid_input(client, rows, check: Callable[[Exception], bool]):
    with pytest.raises(InvalidInputError) as raised:
        client.predict(rows)
    assert check(raised.value), repr(raised.value)
