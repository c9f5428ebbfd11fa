"""The load test's knobs, read from the environment (the same in a master and its workers)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROBA_MODES = ("auto", "1", "0")


class SettingsError(ValueError):
    """An environment variable holds a value the load test cannot use."""


def _floats(env: Mapping[str, str], name: str, default: str) -> tuple[float, ...]:
    raw = env.get(name, default)
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected comma-separated numbers") from None
    if not values:
        raise SettingsError(f"{name} is empty")
    return values


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value}: must be at least {minimum}")
    return value


def _api_key(env: Mapping[str, str]) -> str | None:
    """`DIABETES_API_KEY`, else the primary of the service's own `DIABETES_API_KEYS`.

    The fallback lets a Locust pod take its key from the service's Kubernetes Secret, which holds
    "primary,secondary".
    """
    key = env.get("DIABETES_API_KEY", "").strip()
    if not key:
        key = env.get("DIABETES_API_KEYS", "").split(",")[0].strip()
    return key or None


@dataclass(frozen=True)
class Settings:
    """Everything the users need besides Locust's own options (`--host`, `-u`, `-r`, `-t`, tags)."""

    api_key: str | None
    batch_sizes: tuple[int, ...]
    invalid_share: float
    predict_weight: int
    proba: str  # "auto": probe the service once; "1": always; "0": never
    proba_weight: int
    wait_seconds: tuple[float, float]
    data_path: Path | None
    seed: int | None
    worker_report: Path | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read `DIABETES_API_KEY` and the `DIABETES_LOADTEST_*` variables (see the README).

        `env` defaults to the process environment; `diabetes loadtest` passes the one it will give
        Locust, to refuse a bad value before starting anything.
        """
        env = os.environ if env is None else env
        sizes = _floats(env, "DIABETES_LOADTEST_BATCH_SIZES", "1,10,100")
        if any(size < 1 or size != int(size) for size in sizes):
            raise SettingsError("DIABETES_LOADTEST_BATCH_SIZES: row counts must be whole numbers >= 1")
        share = _floats(env, "DIABETES_LOADTEST_INVALID_SHARE", "0.05")[0]
        if not 0 <= share < 1:
            raise SettingsError("DIABETES_LOADTEST_INVALID_SHARE must be in [0, 1)")
        wait = _floats(env, "DIABETES_LOADTEST_WAIT", "0.05,0.25")
        low, high = (wait[0], wait[0]) if len(wait) == 1 else (wait[0], wait[1])
        if not 0 <= low <= high:
            raise SettingsError("DIABETES_LOADTEST_WAIT: expected MIN,MAX seconds with 0 <= MIN <= MAX")
        proba = env.get("DIABETES_LOADTEST_PROBA", "auto").strip().lower()
        if proba not in PROBA_MODES:
            raise SettingsError(f"DIABETES_LOADTEST_PROBA={proba!r}: expected one of {', '.join(PROBA_MODES)}")
        seed = env.get("DIABETES_LOADTEST_SEED")
        data = env.get("DIABETES_LOADTEST_DATA")
        report = env.get("DIABETES_LOADTEST_WORKER_REPORT")
        return cls(
            api_key=_api_key(env),
            batch_sizes=tuple(int(size) for size in sizes),
            invalid_share=share,
            predict_weight=_int(env, "DIABETES_LOADTEST_PREDICT_WEIGHT", 3),
            proba=proba,
            proba_weight=_int(env, "DIABETES_LOADTEST_PROBA_WEIGHT", 1),
            wait_seconds=(low, high),
            data_path=Path(data) if data else None,
            seed=_int(env, "DIABETES_LOADTEST_SEED", 0) if seed else None,
            worker_report=Path(report) if report else None,
        )

    @property
    def task_weights(self) -> tuple[int, int]:
        """(valid, invalid) task weights in percent: Locust task weights are whole numbers."""
        invalid = round(self.invalid_share * 100)
        if self.invalid_share > 0:
            invalid = max(invalid, 1)
        return 100 - invalid, invalid


def score_url(host: str) -> str:
    """`<host>/score`, keeping any path prefix (an AKS scoring URI's `/api/v1/service/<name>`)."""
    return host.rstrip("/") + "/score"


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The request headers: JSON, and the bearer key when one is set."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers
