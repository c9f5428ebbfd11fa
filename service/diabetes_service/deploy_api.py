"""What `diabetes_deploy` may use of the service: the one public module it imports.

An image is built with the model resolved, pinned and prepared on the host exactly as `diabetes
serve` would do it in the container, so deploy needs the service's resolver, preparation and
artifact digest, and the latency buckets its alerts may name. It gets them here, by what they are
for, and never from the wings themselves (an import-linter contract in pyproject.toml keeps it so):
the service's modules can move without deploy noticing. Importing this module costs what
`model/loading.py` costs (PyYAML on first use); the resolver and the preparation load on first call.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from diabetes_service.errors import ModelLoadError
from diabetes_service.model.artifact import artifact_sha256
from diabetes_service.model.loading import BARE_PICKLE_NAMES, model_file
from diabetes_service.observability.metrics import LATENCY_BUCKETS

__all__ = [
    "BARE_PICKLE_NAMES",
    "LATENCY_BUCKETS",
    "ModelLoadError",
    "Registered",
    "artifact_digest",
    "model_file",
    "prepare",
    "resolve_registered",
]


def artifact_digest(model: Path) -> str:
    """The sha256 of the model's artifact file, as the service's pin compares it; "" if it has none."""
    return artifact_sha256(model) or ""


@dataclass(frozen=True)
class Registered:
    """A resolved model: its downloaded folder, and the registered name and version it came from
    (empty for a `runs:/` URI, which names no registered version). The folder holds no record of
    them: the download is keyed by the version's content, not by MLflow's `registered_model_meta`."""

    path: Path
    name: str = ""
    version: str = ""


def resolve_registered(model_uri: str, tracking_uri: str | None = None) -> Registered:
    """A `models:/` or `runs:/` URI pinned and downloaded as `diabetes serve` does it (same resolver,
    same cache), under the same tracking-URI rule.

    Raises ModelLoadError, with MLflow's own failures reduced to their first line.
    """
    from diabetes_service.model.resolution import resolve_registry
    from diabetes_store.tracking_uri import resolve_tracking_uri

    mlflow_errors: tuple[type[Exception], ...] = ()  # without MLflow, only a tracking server's REST API answers
    with contextlib.suppress(ImportError):
        from mlflow.exceptions import MlflowException

        mlflow_errors = (MlflowException,)
    try:
        resolved = resolve_registry(model_uri, resolve_tracking_uri(tracking_uri))
    except mlflow_errors as exc:
        raise ModelLoadError(str(getattr(exc, "message", exc)).splitlines()[0]) from None
    if not model_uri.startswith("models:/"):
        return Registered(Path(resolved.path))
    return Registered(Path(resolved.path), resolved.name, resolved.version)


def prepare(model: Path, cache: Path, digest: str, trusted_types: tuple[str, ...]) -> None:
    """Prepare `model` now, pinned to `digest`, with `cache` as the model cache: the entry lands in
    `cache/prepared/` (nothing, for a model that does not compile). ModelLoadError when the model
    cannot be served, as `diabetes serve` would stop on it."""
    from diabetes_service.model.preparation import prepare_into
    from diabetes_service.model.trust import TrustPolicy

    prepare_into(model, cache, TrustPolicy(sha256=digest or None, trusted_types=trusted_types))
