"""Registering a run's model and moving the `champion` alias, all or nothing.

A version is created with its tags in one call; if anything after that fails (the alias), the
version is deleted again (and the registered model, when this call created it), so a failed
training never leaves a half-registered version behind.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    ALREADY_EXISTS,
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)

CHAMPION_ALIAS = "champion"
# Registration of a local or proxied artifact is immediate; a remote registry may copy files first.
AWAIT_REGISTRATION_SECONDS = 120


@dataclass(frozen=True)
class Registration:
    version: int
    champion: bool  # whether the new version holds the alias now
    champion_version: int | None  # which version holds it after this call
    previous_champion: int | None
    previous_champion_metric: float | None


def _is_missing(exc: MlflowException) -> bool:
    missing = {ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), ErrorCode.Name(INVALID_PARAMETER_VALUE)}
    return exc.error_code in missing


def current_champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version that holds `champion`, or None (no such model, or no alias yet)."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise


def version_metric(client: MlflowClient, version: ModelVersion, metric: str) -> float | None:
    """A version's test metric: from its run (the source of truth), else from its tags."""
    if version.run_id:
        with contextlib.suppress(MlflowException):
            value = client.get_run(version.run_id).data.metrics.get(metric)
            if value is not None:
                return float(value)
    tagged = (version.tags or {}).get(metric)
    try:
        return float(tagged) if tagged is not None else None
    except ValueError:
        return None


def has_versions(client: MlflowClient, name: str) -> int | None:
    """The highest registered version number of `name`, or None when it has none."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise
    numbers = [int(v.version) for v in versions]
    return max(numbers) if numbers else None


def _create_registered_model(client: MlflowClient, name: str) -> bool:
    """Create the registered model unless it exists; True when this call created it."""
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code in {ErrorCode.Name(RESOURCE_ALREADY_EXISTS), ErrorCode.Name(ALREADY_EXISTS)}:
            return False
        raise
    return True


def register(
    client: MlflowClient,
    *,
    name: str,
    run_id: str,
    model_uri: str,
    model_id: str | None,
    metrics: dict[str, float],
    tags: dict[str, Any],
    selection_metric: str,
    better: Any,
) -> Registration:
    """Create a new version of `name` from `model_uri` (the run's logged model) and move `champion`.

    `better(candidate, incumbent)` decides on `selection_metric`. The first version always gets
    the alias; a champion whose metric cannot be found keeps it (it was chosen by someone).
    """
    incumbent = current_champion(client, name)
    incumbent_metric = version_metric(client, incumbent, selection_metric) if incumbent else None
    candidate = metrics[selection_metric]
    if incumbent is None:
        wins = True
    elif incumbent_metric is None:
        wins = False
    else:
        wins = better(candidate, incumbent_metric)

    created_model = _create_registered_model(client, name)
    version_tags = {"run_id": run_id, **{k: _tag(v) for k, v in metrics.items()}, **tags}
    try:
        version = client.create_model_version(
            name,
            source=model_uri,
            run_id=run_id,
            tags=version_tags,
            model_id=model_id,
            await_creation_for=AWAIT_REGISTRATION_SECONDS,
        )
    except BaseException:
        if created_model:
            with contextlib.suppress(Exception):
                client.delete_registered_model(name)
        raise
    number = int(version.version)
    try:
        if wins:
            client.set_registered_model_alias(name, CHAMPION_ALIAS, str(number))
    except BaseException:
        _unregister(client, name, number, created_model)
        raise
    previous = int(incumbent.version) if incumbent else None
    return Registration(
        version=number,
        champion=wins,
        champion_version=number if wins else previous,
        previous_champion=previous,
        previous_champion_metric=incumbent_metric,
    )


def _unregister(client: MlflowClient, name: str, version: int, created_model: bool) -> None:
    """Best effort: the original error is what the user must see, not a cleanup failure."""
    with contextlib.suppress(Exception):
        client.delete_model_version(name, str(version))
    if created_model:
        with contextlib.suppress(Exception):
            client.delete_registered_model(name)


def _tag(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else str(value)
