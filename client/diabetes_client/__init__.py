"""Typed Python client for the diabetes scoring service.

```python
from diabetes_client import Client

with Client("http://127.0.0.1:8080", api_key=None) as client:
    client.predict(rows)        # -> list[float]
    client.predict_proba(rows)  # -> list[list[float]]
```

Importing it needs only ``requests`` and ``pydantic``: never numpy, pandas, scikit-learn or MLflow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diabetes_client.client import DEFAULT_MAX_ROWS_PER_REQUEST, DEFAULT_RETRIES, DEFAULT_TIMEOUT, Client, ModelInfo
    from diabetes_client.endpoints import Endpoints
    from diabetes_client.errors import (
        AuthenticationError,
        InvalidInputError,
        ScoringError,
        ScoringTimeout,
        ServiceUnavailableError,
    )
    from diabetes_client.features import Feature
    from diabetes_client.schema import ErrorBody, Method, PredictProbaResponse, PredictResponse, ScoreRequest
    from diabetes_client.version import __version__

# Names load on first use (PEP 562): the scoring service imports `diabetes_client.schema` alone, and
# a worker's start-up should not pay for `requests` (~70 ms) it never uses.
_HOMES = {
    "diabetes_client.client": (
        "DEFAULT_MAX_ROWS_PER_REQUEST",
        "DEFAULT_RETRIES",
        "DEFAULT_TIMEOUT",
        "Client",
        "ModelInfo",
    ),
    "diabetes_client.endpoints": ("Endpoints",),
    "diabetes_client.errors": (
        "AuthenticationError",
        "InvalidInputError",
        "ScoringError",
        "ScoringTimeout",
        "ServiceUnavailableError",
    ),
    "diabetes_client.features": ("Feature",),
    "diabetes_client.schema": ("ErrorBody", "Method", "PredictProbaResponse", "PredictResponse", "ScoreRequest"),
    "diabetes_client.version": ("__version__",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "DEFAULT_MAX_ROWS_PER_REQUEST",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "AuthenticationError",
    "Client",
    "Endpoints",
    "ErrorBody",
    "Feature",
    "InvalidInputError",
    "Method",
    "ModelInfo",
    "PredictProbaResponse",
    "PredictResponse",
    "ScoreRequest",
    "ScoringError",
    "ScoringTimeout",
    "ServiceUnavailableError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'diabetes_client' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
