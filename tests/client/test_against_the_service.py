"""The client against the real scoring service (`diabetes serve`) on loopback."""

from __future__ import annotations

import math
import random
import threading
import time

import pytest

from diabetes_client import AuthenticationError, Client, Feature, InvalidInputError
from tests.client.conftest import PRIMARY, SECONDARY
from tests.conftest import FEATURES


@pytest.fixture
def client(keyed_service):
    with Client(keyed_service.url, PRIMARY) as client:
        yield client


def distinct_rows(count: int, seed: int = 0) -> list[list[float]]:
    """Rows no two of which are alike, so that any reordering shows."""
    rng = random.Random(seed)
    return [[rng.uniform(-0.1, 0.1) for _ in FEATURES] for _ in range(count)]


def expected(model, rows) -> list[float]:
    import pandas as pd

    return model.predict(pd.DataFrame(rows, columns=FEATURES)).tolist()


def test_predictions_equal_the_in_process_models(client, example_data, in_process_predictions):
    assert client.predict(example_data.x_test) == pytest.approx(in_process_predictions, rel=1e-12)


def test_every_row_form_gives_the_same_predictions(client, example_data, in_process_predictions):
    import numpy as np
    import pandas as pd

    rows = example_data.x_test
    forms = {
        "list of lists": rows,
        "list of tuples": [tuple(row) for row in rows],
        "feature-keyed dicts": [dict(zip(FEATURES, row, strict=True)) for row in rows],
        "dicts in another key order": [dict(reversed(list(zip(FEATURES, row, strict=True)))) for row in rows],
        "numpy array": np.array(rows),
        "DataFrame": pd.DataFrame(rows, columns=FEATURES),
        "DataFrame without names": pd.DataFrame(rows),
        "DataFrame, columns shuffled": pd.DataFrame(rows, columns=FEATURES)[list(reversed(FEATURES))],
    }
    for name, form in forms.items():
        assert client.predict(form) == pytest.approx(in_process_predictions, rel=1e-12), name
    # float32 values travel as the nearest doubles: equal to the float32 precision.
    single = client.predict(np.array(rows, dtype=np.float32))
    assert single == pytest.approx(in_process_predictions, rel=1e-5)


def test_ten_thousand_rows_come_back_complete_and_in_order(client, in_process_model):
    rows = distinct_rows(10_000)
    started = time.monotonic()
    predictions = client.predict(rows)
    elapsed = time.monotonic() - started
    assert len(predictions) == 10_000
    assert predictions == pytest.approx(expected(in_process_model, rows), rel=1e-12)
    assert client.max_rows_per_request == 1000  # ten chunks, none refused
    print(f"10,000 rows in {elapsed:.2f} s")


def test_a_service_row_limit_under_the_chunk_size_is_learnt_from_its_413(service, example_model_pkl, in_process_model):
    rows = distinct_rows(2_500, seed=1)
    with (
        service(str(example_model_pkl), env={"DIABETES_MAX_ROWS": "300"}) as svc,
        Client(svc.url, max_rows_per_request=1000) as client,
    ):
        assert client.predict(rows) == pytest.approx(expected(in_process_model, rows), rel=1e-12)
        assert client.max_rows_per_request == 300


def test_either_key_works_and_a_wrong_or_missing_key_raises_authentication_error(keyed_service, example_data):
    for key in (PRIMARY, SECONDARY):
        with Client(keyed_service.url, key) as client:
            assert len(client.predict(example_data.x_test[:2])) == 2
    for key in ("wrong-key", None):
        with Client(keyed_service.url, key) as client, pytest.raises(AuthenticationError) as caught:
            client.predict(example_data.x_test[:2])
        assert caught.value.status == 401
        assert "API key" in caught.value.message
        assert caught.value.request_id
        assert PRIMARY not in str(caught.value)


def test_a_bad_row_deep_in_a_chunked_input_is_named_by_the_service(client):
    rows = distinct_rows(3_000, seed=2)
    rows[2345] = rows[2345][:9]
    with pytest.raises(InvalidInputError) as caught:
        client.predict(rows)
    # The service saw row 345 of the third chunk; the client names the caller's row.
    assert caught.value.status == 422
    assert caught.value.field == "data[2345]"
    assert caught.value.message.startswith("data[2345]: has 9 values, expected 10")
    assert caught.value.request_id


def test_a_row_keyed_by_an_unknown_feature_is_named(client, example_data):
    rows = [dict(zip(FEATURES, row, strict=True)) for row in example_data.x_test[:5]]
    rows[3]["glucose"] = rows[3].pop("s6")
    with pytest.raises(InvalidInputError) as caught:
        client.predict(rows)
    assert caught.value.field == "data[3]"
    assert "glucose" in caught.value.message


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("1.5", "must be a number, not a string"),
        (True, "must be a number, not a boolean"),
        (None, "must be a number, not null"),
        (math.nan, "must be a finite number"),
        (math.inf, "must be a finite number"),
    ],
)
def test_a_value_that_is_not_a_finite_number_is_refused_before_sending(client, bad, problem):
    rows = distinct_rows(1_500, seed=3)
    rows[1234][7] = bad
    with pytest.raises(InvalidInputError) as caught:
        client.predict(rows)
    # Caught by the shared schema: same rule, same wording as the service, and no call was made.
    assert caught.value.field == "data[1234][7]"
    assert caught.value.message.startswith(f"data[1234][7]: {problem}")
    assert caught.value.status is None


def test_the_schema_and_the_service_word_a_bad_value_the_same(keyed_service):
    import requests

    answer = requests.post(
        keyed_service.url + "/score",
        json={"data": [[0.1] * 9 + ["x"]]},
        headers={"Authorization": f"Bearer {PRIMARY}"},
        timeout=10,
    )
    with Client(keyed_service.url, PRIMARY) as client, pytest.raises(InvalidInputError) as caught:
        client.predict([[0.1] * 9 + ["x"]])
    assert answer.status_code == 422
    assert caught.value.message == answer.json()["message"]
    assert caught.value.field == answer.json()["field"]


def test_predict_proba_on_a_regressor_is_an_invalid_input_error(client, example_data):
    with pytest.raises(InvalidInputError) as caught:
        client.predict_proba(example_data.x_test[:2])
    assert caught.value.field == "method"
    assert "predict_proba" in caught.value.message


def test_no_rows_and_rows_of_the_wrong_shape_are_refused(client):
    import numpy as np

    with pytest.raises(InvalidInputError, match="at least one row"):
        client.predict([])
    with pytest.raises(InvalidInputError, match="2 dimensions"):
        client.predict(np.zeros(10))
    with pytest.raises(InvalidInputError, match=r"data\[0\]: must be a list of numbers or an object"):
        client.predict([0.1] * 10)
    with pytest.raises(InvalidInputError, match="sequence of rows"):
        client.predict({"data": [[0.1] * 10]})


def test_introspection(client, keyed_service):
    assert client.health() is True
    assert client.ready() is True
    assert client.features == tuple(Feature(name, "number", "double") for name in FEATURES)
    assert client.model is not None
    # The bare pkl has no registry name: the service names it as its headers say.
    import requests

    headers = requests.get(keyed_service.url + "/", timeout=5).headers
    assert (client.model.name, client.model.version) == (headers["x-model-name"], headers["x-model-version"])


def test_a_service_stopped_and_restarted_mid_sequence_is_ridden_out(service, example_model_pkl, in_process_model):
    rows = distinct_rows(50, seed=4)
    want = expected(in_process_model, rows)
    svc = service(str(example_model_pkl)).start()
    with Client(svc.url, retries=8, backoff=0.5) as client:
        assert client.predict(rows) == pytest.approx(want, rel=1e-12)
        svc.stop()
        assert client.health() is False  # really down, on the same port the client keeps calling
        restart = threading.Thread(target=lambda: (time.sleep(1.0), svc.start()))
        restart.start()
        started = time.monotonic()
        try:
            assert client.predict(rows) == pytest.approx(want, rel=1e-12)
        finally:
            restart.join(timeout=120)
        ridden_out = time.monotonic() - started
        assert client.ready() is True
        assert client.predict(rows) == pytest.approx(want, rel=1e-12)
    print(f"down and back in {ridden_out:.1f} s")
