"""`Client`: score rows against the diabetes scoring service, locally or on Azure ML."""

from __future__ import annotations

import importlib
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Self, overload

import requests
from pydantic import TypeAdapter, ValidationError

from diabetes_client.endpoints import Endpoints
from diabetes_client.errors import (
    ScoringError,
    ScoringTimeout,
    ServiceUnavailableError,
    error_for_status,
    error_from_validation,
    parse_error_body,
)
from diabetes_client.features import Feature, features_from_openapi
from diabetes_client.rows import PlainRow, to_plain_rows
from diabetes_client.schema import Label, Method, PredictProbaResponse, PredictResponse, ScoreRequest, TypedScoreRequest
from diabetes_client.transport import probe_adapter, retrying_adapter
from diabetes_client.version import __version__

Timeout = float | tuple[float, float]

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 60.0)
"""Seconds to connect, seconds to wait for an answer."""
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_ROWS_PER_REQUEST = 1000

# The answer of `method` left out: probabilities where the model has them, else predictions.
_ROW_LIMIT = re.compile(r"limit of (\d+) rows")
_ScoreResponse: TypeAdapter[list[Label] | list[list[float]]] = TypeAdapter(list[Label] | list[list[float]])
# What a model's feature is, in its API description, when it is not a plain number: typed rows.
_NUMBER = "number"


@dataclass(frozen=True)
class ModelInfo:
    """The served model, as the service names it in its ``x-model-name`` / ``x-model-version`` headers."""

    name: str | None
    version: str | None


class Client:
    """A typed client of the scoring service.

    ``url`` is the service root (``http://127.0.0.1:8080``) or a full scoring URI: Azure ML's AKS
    form ``http://<ip>:80/api/v1/service/<name>/score`` and the online-endpoint form
    ``https://<endpoint>.<region>.inference.ml.azure.com/score`` both work. ``api_key`` is sent as
    ``Authorization: Bearer <key>``.

    Every call has a timeout (``timeout``: seconds, or ``(connect, read)`` seconds). Connection
    errors and 429/502/503/504 answers are retried up to ``retries`` times with exponential backoff
    (``backoff * 2**n`` seconds plus jitter), honouring ``Retry-After``, and an answer cut off in its
    body at once; a read timeout is not retried. Inputs of more than ``max_rows_per_request`` rows
    are sent in chunks and the answers put back together in order.

    ``session``: a ``requests.Session`` of your own (proxies, certificates...); the client mounts
    its retrying adapter on it for this service's URLs only, and leaves it open on ``close()``.

    Use it as a context manager, or call ``close()``::

        with Client("http://127.0.0.1:8080") as client:
            client.predict([[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]])
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_rows_per_request: int = DEFAULT_MAX_ROWS_PER_REQUEST,
        session: requests.Session | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        if max_rows_per_request < 1:
            raise ValueError("max_rows_per_request must be 1 or more")
        self.endpoints = Endpoints.from_url(url)
        self.timeout = timeout
        self.retries = retries
        self.max_rows_per_request = max_rows_per_request
        self._api_key = api_key
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._adapter = retrying_adapter(retries, backoff)
        # Mounted for this service's prefix only, so a caller's session keeps its other adapters.
        self._session.mount(self.endpoints.base + "/", self._adapter)
        self._probe_adapter = probe_adapter()
        self._features: tuple[Feature, ...] | None = None
        self._model: ModelInfo | None = None

    # -- construction from Azure ML ------------------------------------------------------------

    @classmethod
    def from_azureml(cls, workspace: Any, service_name: str, **kwargs: Any) -> Client:
        """A client of the Azure ML service ``service_name``, found through ``workspace``:

        - an azure-ai-ml ``MLClient`` (Azure ML v2): the online endpoint's scoring URI and its primary
          key (or its Azure ML token, for ``auth_mode: aml_token``);
        - an azureml-core ``Workspace`` (v1): the web service's scoring URI and primary key, from
          azureml-core's ``Webservice`` (the ``azure`` extra: ``pip install "diabetes-scoring[azure]"``).

        ``kwargs`` go to ``Client``.
        """
        if hasattr(workspace, "online_endpoints"):
            return cls.from_online_endpoint(workspace, service_name, **kwargs)
        try:
            # Imported by name: azureml-core is an optional extra, and has no type stubs.
            webservice_module = importlib.import_module("azureml.core.webservice")
        except ImportError as exc:
            raise ImportError('Client.from_azureml needs azureml-core: pip install "diabetes-scoring[azure]"') from exc
        return cls.from_webservice(webservice_module.Webservice(workspace, name=service_name), **kwargs)

    @classmethod
    def from_online_endpoint(cls, ml_client: Any, endpoint_name: str, **kwargs: Any) -> Client:
        """A client of the Azure ML v2 online endpoint ``endpoint_name``, through an azure-ai-ml ``MLClient``."""
        endpoint = ml_client.online_endpoints.get(endpoint_name)
        url = getattr(endpoint, "scoring_uri", None)
        if not url:
            state = getattr(endpoint, "provisioning_state", "unknown")
            raise ScoringError(f"{endpoint_name} has no scoring URI yet (state: {state})")
        credentials = ml_client.online_endpoints.get_keys(endpoint_name)
        # EndpointAuthKeys for auth_mode key, EndpointAuthToken for aml_token: both go as a Bearer.
        key = getattr(credentials, "primary_key", None) or getattr(credentials, "access_token", None)
        return cls(url, api_key=key, **kwargs)

    @classmethod
    def from_webservice(cls, service: Any, **kwargs: Any) -> Client:
        """A client of an azureml-core ``Webservice`` object: its ``scoring_uri`` and its primary key
        (``get_keys()``), or its token (``get_token()``) when the service uses token auth.
        """
        url = getattr(service, "scoring_uri", None)
        if not url:
            state = getattr(service, "state", "unknown")
            name = getattr(service, "name", "the web service")
            raise ScoringError(f"{name} has no scoring URI yet (state: {state})")
        key: str | None = None
        if getattr(service, "token_auth_enabled", False):
            key = service.get_token()[0]
        elif getattr(service, "auth_enabled", True):
            key = service.get_keys()[0]
        return cls(url, api_key=key, **kwargs)

    # -- scoring -------------------------------------------------------------------------------

    def predict(self, rows: Any) -> list[Label]:
        """One prediction per row (the model's ``predict``): numbers, or the model's own class labels
        (strings stay strings, integers integers)."""
        return self.score(rows, method="predict")

    def predict_proba(self, rows: Any) -> list[list[float]]:
        """One list of class probabilities per row (the model's ``predict_proba``).

        Raises ``InvalidInputError`` when the served model has no ``predict_proba``.
        """
        return self.score(rows, method="predict_proba")

    @overload
    def score(self, rows: Any, method: Literal["predict"]) -> list[Label]: ...
    @overload
    def score(self, rows: Any, method: Literal["predict_proba"]) -> list[list[float]]: ...
    @overload
    def score(self, rows: Any, method: Method | None = None) -> list[Label] | list[list[float]]: ...

    def score(self, rows: Any, method: Method | None = None) -> list[Label] | list[list[float]]:
        """Score ``rows`` with ``method``; left out, the service's choice (``predict_proba`` where the
        model has it, as Azure ML's no-code scoring does).

        ``rows``: a list of lists (values in feature order), a list of feature-keyed dicts, a 2-D
        numpy array or a pandas DataFrame. Every row is checked against the shared wire schema before
        anything is sent, so a bad row costs no call and leaves nothing half-done. For a model with
        typed columns (strings, integers, booleans, datetimes: its API description says so), values
        are any JSON scalar (``datetime`` objects are sent as ISO 8601), checked by the service.
        """
        plain = to_plain_rows(rows)
        kind: type[ScoreRequest] = ScoreRequest
        try:
            request = kind.model_validate({"data": plain, "method": method})
        except ValidationError as exc:
            if not self._typed():
                raise error_from_validation(exc) from None
            kind = TypedScoreRequest
            try:
                request = kind.model_validate({"data": plain, "method": method})
            except ValidationError as typed_exc:
                raise error_from_validation(typed_exc) from None
        adapter: TypeAdapter[Any] = (
            PredictResponse
            if method == "predict"
            else PredictProbaResponse
            if method == "predict_proba"
            else _ScoreResponse
        )
        rows_left: list[PlainRow] = list(request.data)
        results: list[Any] = []
        while len(results) < len(rows_left):
            offset = len(results)
            chunk = rows_left[offset : offset + self.max_rows_per_request]
            answer = self._score_chunk(chunk, offset, method, adapter, kind)
            if answer is None:
                continue  # the chunk was over the service's limit: resent at the smaller size
            results.extend(answer)
        return results

    def _score_chunk(
        self,
        chunk: list[PlainRow],
        offset: int,
        method: Method | None,
        adapter: TypeAdapter[Any],
        kind: type[ScoreRequest] = ScoreRequest,
    ) -> list[Any] | None:
        """The results of one chunk, or ``None`` after shrinking ``max_rows_per_request`` on a 413."""
        # Rows were validated as a whole: build the body without validating each chunk again.
        body = kind.model_construct(data=chunk, method=method).model_dump_json(exclude_none=True)
        response = self._send("POST", self.endpoints.score, data=body.encode())
        if response.status_code == 413 and len(chunk) > 1:
            # Over the service's row or body limit: the row limit it names, else half, from now on.
            limit = _row_limit(response)
            self.max_rows_per_request = limit if limit is not None and limit < len(chunk) else len(chunk) // 2
            return None
        self._raise_for_status(response, row_offset=offset)
        request_id = _request_id(response)
        try:
            answer: list[Any] = adapter.validate_json(response.content)
        except ValidationError:
            raise ScoringError(
                "the service's answer is not one result per row", status=response.status_code, request_id=request_id
            ) from None
        if len(answer) != len(chunk):
            raise ScoringError(
                f"the service answered {len(answer)} results for {len(chunk)} rows",
                status=response.status_code,
                request_id=request_id,
            )
        return answer

    def _typed(self) -> bool:
        """Whether the served model has a feature that is not a number (read once from its description)."""
        try:
            return any(feature.type != _NUMBER for feature in self.features)
        except ScoringError:  # no description to read: the numeric schema's words stand
            return False

    # -- introspection -------------------------------------------------------------------------

    def health(self) -> bool:
        """Whether the service is up: its liveness probe (``GET /``) answers 200. Never retried."""
        response = self._probe(self.endpoints.live)
        return response is not None and response.status_code == 200

    def ready(self) -> bool:
        """Whether the service takes traffic: its readiness probe answers 200. Never retried.

        A service without a readiness probe (404, as Azure ML's own images) is ready when it is live.
        """
        response = self._probe(self.endpoints.ready)
        if response is not None and response.status_code == 404:
            return self.health()
        return response is not None and response.status_code == 200

    @property
    def features(self) -> tuple[Feature, ...]:
        """The model's features, names and types in order, read once from ``/swagger.json``."""
        if self._features is None:
            response = self._send("GET", self.endpoints.swagger)
            self._raise_for_status(response)
            try:
                document = response.json()
            except ValueError:
                raise ScoringError(
                    "the service's /swagger.json is not JSON",
                    status=response.status_code,
                    request_id=_request_id(response),
                ) from None
            found = features_from_openapi(document)
            if not found:
                raise ScoringError(
                    "the service's /swagger.json describes no features for POST /score",
                    status=response.status_code,
                    request_id=_request_id(response),
                )
            self._features = found
        return self._features

    @property
    def model(self) -> ModelInfo | None:
        """The served model's name and version, from the headers of the latest answer.

        Before any call, one liveness probe is made to read them; ``None`` when the service does not
        name its model (an Azure ML image of its own, for example).
        """
        if self._model is None:
            self._probe(self.endpoints.live)
        return self._model

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the pooled connections (a session the caller handed in is left open)."""
        self._probe_adapter.close()
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"Client(url={self.endpoints.score!r}, api_key={key})"

    # -- HTTP ----------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "User-Agent": f"diabetes-client/{__version__}",
            # Ours, so that even a call that never got an answer has an id to report.
            "x-request-id": uuid.uuid4().hex,
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _send(self, method: str, url: str, data: bytes | None = None) -> requests.Response:
        headers = self._headers()
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._request(method, url, data, headers)
        except requests.exceptions.ReadTimeout:
            raise ScoringTimeout(
                f"no answer from {url} within {_read_seconds(self.timeout)} s",
                request_id=headers["x-request-id"],
            ) from None
        except (
            requests.ConnectionError,
            requests.exceptions.RetryError,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise ServiceUnavailableError(
                f"could not reach {url} after {self.retries} retries: {_reason(exc)}",
                request_id=headers["x-request-id"],
            ) from None
        except requests.RequestException as exc:
            raise ScoringError(f"{method} {url} failed: {_reason(exc)}", request_id=headers["x-request-id"]) from None
        if "x-request-id" not in response.headers:
            response.headers["x-request-id"] = headers["x-request-id"]
        self._remember_model(response)
        return response

    def _request(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> requests.Response:
        """The session's request; an answer cut off in its body is sent again, up to `retries` times.

        urllib3's retries end once the status line and headers are in: a connection that breaks
        in the body (a worker killed while writing its answer) reaches us as ChunkedEncodingError.
        Scoring is idempotent, so the call is safe to repeat, at once: the broken connection has
        left the pool.
        """
        for attempt in range(self.retries + 1):
            try:
                return self._session.request(method, url, data=data, headers=headers, timeout=self.timeout)
            except requests.exceptions.ChunkedEncodingError:
                if attempt == self.retries:
                    raise
        raise AssertionError("unreachable")  # the loop returns or raises

    def _probe(self, url: str) -> requests.Response | None:
        # Sent through an adapter of its own: a probe must not sit out the retries' backoff.
        prepared = self._session.prepare_request(requests.Request("GET", url, headers=self._headers()))
        settings = self._session.merge_environment_settings(prepared.url, {}, None, None, None)
        verify = settings.get("verify")
        try:
            response = self._probe_adapter.send(
                prepared,
                timeout=self.timeout,
                verify=True if verify is None else verify,
                cert=settings.get("cert"),
                proxies=settings.get("proxies"),
            )
            _ = response.content  # read it all, so the connection goes back to the pool
        except requests.RequestException:
            return None
        self._remember_model(response)
        return response

    def _remember_model(self, response: requests.Response) -> None:
        name = response.headers.get("x-model-name")
        version = response.headers.get("x-model-version")
        if name or version:
            self._model = ModelInfo(name=name, version=version)

    def _raise_for_status(self, response: requests.Response, *, row_offset: int = 0) -> None:
        if response.status_code < 400:
            return
        body = parse_error_body(response.content, response.headers.get("content-type"))
        raise error_for_status(response.status_code, body, request_id=_request_id(response), row_offset=row_offset)


def _row_limit(response: requests.Response) -> int | None:
    """The row limit a 413 names ("... over the limit of 10000 rows per request ..."), if it does."""
    match = _ROW_LIMIT.search(parse_error_body(response.content).message)
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


def _request_id(response: requests.Response) -> str | None:
    return response.headers.get("x-request-id") or response.headers.get("x-ms-request-id")


def _read_seconds(timeout: Timeout) -> float:
    return timeout[1] if isinstance(timeout, tuple) else timeout


def _reason(exc: BaseException) -> str:
    # requests nests urllib3's MaxRetryError; its innermost reason is the readable part.
    reason: BaseException = exc
    while reason.args and isinstance(reason.args[0], BaseException):
        reason = reason.args[0]
    inner = getattr(reason, "reason", None)
    if isinstance(inner, BaseException):
        reason = inner
    return " ".join(str(reason).split()) or type(reason).__name__
