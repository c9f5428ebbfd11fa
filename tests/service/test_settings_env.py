"""The settings' environment source: `DIABETES_*` variables under the arguments, over the defaults.

Read by one validator of ServiceSettings (no pydantic-settings on the start path); these pin the
behaviour the flags, the spec and the deployment manifests rely on.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from diabetes_service.settings import ServiceSettings


@pytest.fixture(autouse=True)
def no_diabetes_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.upper().startswith("DIABETES_"):
            monkeypatch.delenv(name)


def test_variables_fill_what_the_arguments_leave(monkeypatch):
    monkeypatch.setenv("DIABETES_PORT", "9001")
    monkeypatch.setenv("DIABETES_ALLOW_PICKLE", "true")
    monkeypatch.setenv("DIABETES_SCORING_TIMEOUT_SECONDS", "2.5")
    settings = ServiceSettings(port=9002)
    assert settings.port == 9002  # an argument (a flag) wins
    assert settings.allow_pickle is True
    assert settings.scoring_timeout_seconds == 2.5
    assert ServiceSettings().port == 9001
    assert ServiceSettings().max_rows == 10_000  # neither: the default


def test_names_are_case_insensitive_and_unknown_ones_ignored(monkeypatch):
    monkeypatch.setenv("diabetes_max_rows", "7")
    monkeypatch.setenv("DIABETES_NO_SUCH_SETTING", "x")
    settings = ServiceSettings()
    assert settings.max_rows == 7
    assert not hasattr(settings, "no_such_setting")


def test_lists_are_comma_separated_and_keys_stay_secret(monkeypatch):
    monkeypatch.setenv("DIABETES_API_KEYS", " first , second ,")
    monkeypatch.setenv("DIABETES_TRUSTED_TYPES", "mypkg.Scaler,other.Thing")
    settings = ServiceSettings()
    assert [key.get_secret_value() for key in settings.api_keys] == ["first", "second"]
    assert settings.trusted_types == ("mypkg.Scaler", "other.Thing")
    assert "first" not in settings.describe()
    monkeypatch.setenv("DIABETES_MODEL_SHA256", "")  # an image built without a pin sets it empty
    assert ServiceSettings().model_sha256 is None


def test_a_bad_variable_names_its_field(monkeypatch):
    monkeypatch.setenv("DIABETES_PORT", "eighty")
    with pytest.raises(ValidationError) as caught:
        ServiceSettings()
    assert caught.value.errors()[0]["loc"] == ("port",)
    monkeypatch.setenv("DIABETES_PORT", "80")
    monkeypatch.setenv("DIABETES_API_KEYS", "REPLACE-ME-1")
    with pytest.raises(ValidationError, match="placeholder"):
        ServiceSettings()


def test_a_copy_for_the_workers_does_not_read_the_environment_again(monkeypatch):
    settings = ServiceSettings(port=1234)
    monkeypatch.setenv("DIABETES_MAX_ROWS", "3")
    copy = settings.model_copy(update={"workers": 2})
    assert copy.max_rows == 10_000  # as validated, not as the environment says now
    assert copy.port == 1234
