"""Typed Python client for the diabetes scoring service.

```python
from diabetes_client import Client

with Client("http://127.0.0.1:8080", api_key=None) as client:
    client.predict(rows)        # -> list[float]
    client.predict_proba(rows)  # -> list[list[float]]
```

Importing it needs only ``requests`` and ``pydantic``: never numpy, pandas, scikit-learn or MLflow.
"""

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
