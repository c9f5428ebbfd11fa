"""The API description: `/swagger.json` from the model's signature, `/docs` rendered in a real browser."""

from __future__ import annotations

import re
import shutil

import pytest
import requests

from tests.conftest import FEATURES

KEY = "docs-test-key"


@pytest.fixture(scope="module")
def svc(example_model_pkl, tmp_path_factory):
    from tests.support.service import ServiceProcess

    env = {"DIABETES_API_KEYS": KEY}
    with ServiceProcess(str(example_model_pkl), env=env, log=tmp_path_factory.mktemp("log") / "s.log") as service:
        yield service


def test_swagger_has_one_property_per_feature(svc):
    document = requests.get(svc.url + "/swagger.json", timeout=5).json()
    row = document["components"]["schemas"]["Row"]
    assert list(row["properties"]) == FEATURES
    assert all(p == {"type": "number", "format": "double"} for p in row["properties"].values())
    values = document["components"]["schemas"]["RowValues"]
    assert values["minItems"] == values["maxItems"] == 10
    method = document["components"]["schemas"]["ScoreRequest"]["properties"]["method"]
    assert method["enum"] == ["predict", None]  # the regressor's one method; null is "left out", as the schema accepts
    assert method["nullable"] is True
    responses = document["paths"]["/score"]["post"]["responses"]
    assert sorted(responses) == ["200", "400", "401", "408", "413", "415", "422", "503"]
    example = document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert list(example["data"][0]) == FEATURES


def test_swagger_example_is_a_valid_request(svc):
    document = requests.get(svc.url + "/swagger.json", timeout=5).json()
    example = document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["example"]
    answer = requests.post(svc.url + "/score", json=example, headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert answer.status_code == 200
    assert len(answer.json()) == len(example["data"])


def test_docs_page_loads_only_its_own_assets(svc):
    page = requests.get(svc.url + "/docs", timeout=5).text
    assert not re.search(r"""(src|href)=["']https?://""", page)
    for asset in re.findall(r"""(?:src|href)=["'](/docs/[^"']+)""", page):
        assert requests.get(svc.url + asset, timeout=5).status_code == 200, asset


NO_CHROMIUM = "Debian's chromium is installed by `make test`"


@pytest.mark.skipif(shutil.which("chromium") is None, reason=NO_CHROMIUM)
def test_docs_render_in_headless_chromium_offline(svc):
    from tests.support.browser import chromium_page

    with chromium_page() as page:
        page.goto(svc.url + "/docs")
        # Rendered by Swagger UI's JavaScript from /swagger.json, so present only if the page really ran.
        page.get_by_text("Features, in order: age (double), sex (double), bmi (double)", exact=False).wait_for()
        dom = page.content()
    assert "swagger-ui" in dom
    assert "/score" in dom
    assert "/invocations" in dom  # every protocol's routes, from the one document
    assert "Authorize" in dom  # the Bearer scheme's button, since keys are on


@pytest.mark.skipif(shutil.which("chromium") is None, reason=NO_CHROMIUM)
def test_the_rendered_page_shows_a_typed_models_categories(tmp_path):
    """A mixed-type pipeline (issue 16): its encoder's categories, an enum in /swagger.json, are shown
    on the page Swagger UI renders, once the row schema and the column are opened as a reader would."""
    from tests.support.browser import chromium_page
    from tests.support.mixed import save_mixed_model
    from tests.support.service import ServiceProcess

    save_mixed_model(tmp_path / "mixed")
    with (
        ServiceProcess(str(tmp_path / "mixed"), log=tmp_path / "s.log", ready_timeout=120) as mixed,
        chromium_page() as page,
    ):
        page.goto(mixed.url + "/docs")
        info = page.locator(".info")
        info.wait_for()
        assert "Features, in order: smoker (string), age (long), active (boolean), bmi (double), note (string)" in (
            info.inner_text()
        )
        row = page.locator("#model-Row")
        row.wait_for()
        assert "former" not in row.inner_text()  # collapsed: nothing rendered yet
        # Open the Row schema, its first property (smoker), then the enum's list, as a reader clicks them.
        row.locator("button.model-box-control").first.click()
        row.locator("tr.property-row button.model-box-control").first.click()
        row.locator(".prop-enum button").first.click()
        row.get_by_text("former").first.wait_for()
        text = row.inner_text()
    assert re.search(r"smoker\*\s+string\s+Enum:.*former.*no.*yes", text, re.DOTALL), text
