"""`Client.from_azureml` / `from_webservice`: everything up to the Azure call, with a stand-in for the
azureml-core `Webservice` (no workspace can run here), scoring against the real service."""

from __future__ import annotations

import sys
import types

import pytest

from diabetes_client import AuthenticationError, Client, ScoringError
from tests.client.conftest import PRIMARY, SECONDARY


class StandInWebservice:
    """The attributes and methods of azureml-core's `Webservice` the client uses."""

    def __init__(self, scoring_uri, *, keys=(PRIMARY, SECONDARY), auth_enabled=True, token_auth_enabled=False):
        self.name = "diabetes-service"
        self.state = "Healthy"
        self.scoring_uri = scoring_uri
        self.auth_enabled = auth_enabled
        self.token_auth_enabled = token_auth_enabled
        self._keys = keys

    def get_keys(self):
        return self._keys

    def get_token(self):
        return (self._keys[1], 1_900_000_000)


def test_from_webservice_scores_with_the_primary_key(keyed_service, example_data, in_process_predictions):
    service = StandInWebservice(keyed_service.url + "/score")
    with Client.from_webservice(service) as client:
        assert client.endpoints.score == keyed_service.url + "/score"
        assert client.predict(example_data.x_test) == pytest.approx(in_process_predictions, rel=1e-12)


def test_from_webservice_with_token_auth_sends_the_token(keyed_service, example_data):
    service = StandInWebservice(keyed_service.url + "/score", auth_enabled=False, token_auth_enabled=True)
    with Client.from_webservice(service) as client:  # the token is the secondary key here
        assert len(client.predict(example_data.x_test[:3])) == 3


def test_from_webservice_without_auth_sends_no_key(keyed_service, example_data):
    service = StandInWebservice(keyed_service.url + "/score", auth_enabled=False)
    with Client.from_webservice(service) as client, pytest.raises(AuthenticationError):
        client.predict(example_data.x_test[:1])


def test_a_webservice_not_deployed_yet_is_a_clear_error():
    service = StandInWebservice(None)
    service.state = "Transitioning"
    with pytest.raises(ScoringError, match=r"diabetes-service has no scoring URI yet \(state: Transitioning\)"):
        Client.from_webservice(service)


def test_from_azureml_looks_the_service_up_by_name(monkeypatch, keyed_service, example_data):
    looked_up = []

    def webservice(workspace, name):
        looked_up.append((workspace, name))
        return StandInWebservice(keyed_service.url + "/score")

    # azureml.core.webservice stands in: an Azure ML workspace cannot run here.
    module = types.ModuleType("azureml.core.webservice")
    module.Webservice = webservice
    monkeypatch.setitem(sys.modules, "azureml.core.webservice", module)
    workspace = object()
    with Client.from_azureml(workspace, "diabetes-service", timeout=7.0) as client:
        assert looked_up == [(workspace, "diabetes-service")]
        assert client.timeout == 7.0
        assert len(client.predict(example_data.x_test[:2])) == 2


def test_from_azureml_without_azureml_core_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "azureml.core.webservice", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"diabetes-scoring\[azure\]"):
        Client.from_azureml(object(), "diabetes-service")


def test_from_azureml_with_an_ml_client_reaches_the_v2_endpoint(keyed_service, example_data, in_process_predictions):
    """Azure ML v2: a real azure-ai-ml MLClient (its HTTP recorded, see tests/deploy/azure_wire.py) gives
    the endpoint's scoring URI and primary key; the client then scores against the real service."""
    from tests.deploy.azure_wire import Wire, ml_client

    wire = Wire(scoring_uri=keyed_service.url + "/score", keys=(PRIMARY, SECONDARY))
    workspace = ml_client(wire)
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    workspace.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="diabetes-service")).result()
    with Client.from_azureml(workspace, "diabetes-service", timeout=9.0) as client:
        assert client.endpoints.score == keyed_service.url + "/score"
        assert client.timeout == 9.0
        assert client.predict(example_data.x_test) == pytest.approx(in_process_predictions, rel=1e-12)
    asked = [(c.method, c.path.rsplit("/", 2)[-2:]) for c in wire.calls if c.method != "PUT"]
    assert ("GET", ["onlineEndpoints", "diabetes-service"]) in asked
    assert ("POST", ["diabetes-service", "listKeys"]) in asked


def test_from_azureml_with_a_wrong_key_from_the_workspace_is_an_auth_error(keyed_service, example_data):
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    from tests.deploy.azure_wire import Wire, ml_client

    wire = Wire(scoring_uri=keyed_service.url + "/score", keys=("rotated-away", "also-old"))
    workspace = ml_client(wire)
    workspace.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="diabetes-service")).result()
    with Client.from_azureml(workspace, "diabetes-service") as client, pytest.raises(AuthenticationError):
        client.predict(example_data.x_test[:1])


def test_from_azureml_v2_endpoint_not_found_names_it():
    from tests.deploy.azure_wire import Wire, ml_client

    with pytest.raises(Exception, match="not found"):
        Client.from_azureml(ml_client(Wire()), "missing-endpoint")
