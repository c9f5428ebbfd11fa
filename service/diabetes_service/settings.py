"""Every setting of the scoring service, in one typed place.

Values come from `diabetes serve` flags, else `DIABETES_*` environment variables, else the
deployment spec (`--spec`), else the defaults below. The object validated once is the only source:
the supervisor hands it to every worker it forks as it is, completed only with what the supervisor
itself decides (worker count, bound port, the files it shares with its workers).

Off loopback, the settings are refused without API keys unless `no_auth` (`--no-auth`,
`DIABETES_NO_AUTH=1`, the spec's `auth: none`) says so: an open door is never a default.

The environment is read by one validator here rather than by pydantic-settings: its import cost
every start ~70 ms before the first worker could fork, for the one source we use (prefixed
variables, names case-insensitive, a keyword argument winning over a variable).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

ENV_PREFIX = "DIABETES_"
DEFAULT_MODEL_URI = "models:/diabetes_model@champion"
PLACEHOLDER_KEY_PREFIX = "REPLACE-ME"
FOLLOWABLE = re.compile(r"^models:/[^/@]+(@[^/]+|/latest)/?$")
# `--rate-limit`'s form (the limiter itself is transport/rate_limit.py).
UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")
RATE_RULE = "must be a count per unit: N/s, N/min or N/h, e.g. 50/s or 3000/min"
# Payload logging's per-column redaction (observability/payloads.py), as a variable holds it: `age=hash,sex=drop`.
REDACTIONS = ("drop", "hash")
# `--promote-after`'s form: seconds, or a count of s, m, h or d.
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
ALIASED = re.compile(r"^models:/([^/@]+)@([^/]+)/?$")


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address; any other name or address (`0.0.0.0`, `::`) may be reachable."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def seconds_of(duration: str) -> float:
    """`90` or `90s` -> 90.0, `30m` -> 1800.0, `2h`, `1d`; ValueError naming the form otherwise."""
    match = DURATION.match(duration.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError("must be a duration: seconds, or a count of s, m, h or d, e.g. 30m")
    return float(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]


def per_second(rate: str) -> float:
    """`50/s` -> 50.0, `3000/min` -> 50.0; ValueError naming the form otherwise."""
    match = RATE.match(rate.lower())
    if match is None or match.group(2) not in UNITS or float(match.group(1)) <= 0:
        raise ValueError(RATE_RULE)
    return float(match.group(1)) / UNITS[match.group(2)]


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    model_uri: str = DEFAULT_MODEL_URI
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int = Field(
        default=8081, ge=0, le=65535, description="Open Inference Protocol over gRPC (KServe's port); 0: off"
    )
    metrics_port: int = Field(
        default=8082, ge=0, le=65535, description="/metrics here, with no key; 0: on the scoring port, behind the key"
    )
    workers: int | None = Field(default=None, ge=1, le=64, description="default: the container's CPU limit")
    spec: str | None = None
    service_name: str = "diabetes-service"
    tracking_uri: str | None = None

    # Set by the supervisor (or the image) for a model that is not in a registry.
    model_path: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    prepared_file: str | None = None  # where the supervisor announces the prepared model to its workers
    metrics_dir: str | None = None  # where each worker leaves a snapshot of its metrics for the others

    # Primary first, then secondary; comma-separated in DIABETES_API_KEYS.
    api_keys: tuple[SecretStr, ...] = ()
    private_docs: bool = Field(default=False, description="require a key for /swagger.json and /docs too")
    no_auth: bool = Field(default=False, description="serve without keys on an address that is not loopback")

    rate_limit: str | None = Field(
        default=None,
        description="per API key (per client address without keys), per replica: N/s, N/min or N/h; over it 429",
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_rows: int = Field(default=10_000, ge=1)
    max_concurrent_requests: int | None = Field(
        default=None, ge=1, description="per replica; more at once are answered 503 (retryable)"
    )
    scoring_timeout_seconds: float | None = Field(
        default=None, gt=0, description="a prediction run off the event loop that takes longer is answered 504"
    )
    gather_requests: bool = Field(
        default=True, description="score concurrent requests in one estimator call where that is cheaper (runner.py)"
    )
    access_log: bool | None = Field(
        default=None,
        description="one JSON line per request on standard output; left out: on unless standard output is "
        "a terminal (off for `make run` in a shell, on in containers and under a process manager)",
    )
    graceful_timeout_seconds: float = Field(default=30.0, ge=0)
    allow_pickle: bool = Field(default=False, description="load pickle-based artifacts (they run code when loaded)")
    model_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="the artifact file's sha256: a pickle that matches loads",
    )
    trusted_types: tuple[str, ...] = Field(
        default=(), description="types a skops artifact may name beyond scikit-learn, numpy and scipy"
    )
    allow_version_mismatch: bool = Field(
        default=False, description="serve a model saved with another major scikit-learn version than the installed one"
    )
    follow: bool = Field(default=False, description="re-resolve an @alias or latest URI and swap in new versions")
    follow_interval_seconds: float = Field(default=30.0, gt=0, description="how often --follow asks the registry")
    follow_schema_changes: bool = Field(
        default=False, description="let --follow swap in a version whose features differ from the served one's"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="MLflow webhook secret: enables POST /hooks/mlflow (signed deliveries re-resolve)"
    )
    log_payloads: str | None = Field(
        default=None, description="payload logging: one Parquet record per scored row and per refusal under this folder"
    )
    log_sample_rate: float = Field(default=1.0, ge=0, le=1, description="the share of calls payload logging keeps")
    log_redact: dict[str, Literal["drop", "hash"]] = Field(
        default_factory=dict, description="payload logging: columns left out (drop) or logged as their sha256 (hash)"
    )
    heartbeat_timeout_seconds: float = Field(
        default=5.0, gt=0, description="a worker whose event loop is silent this long is killed and replaced"
    )

    # Safe rollout (scoring/rollout.py, supervisor/rollout.py): a second registered version beside the champion.
    challenger: str | None = Field(default=None, description="the challenger's URI, e.g. models:/NAME@challenger")
    rollout: Literal["shadow", "canary"] | None = Field(
        default=None, description="shadow: the challenger scores a copy; canary: it answers canary_percent of calls"
    )
    canary_percent: float = Field(default=10.0, ge=0, le=100, description="share of calls the challenger answers")
    routing_header: str = Field(
        default="x-routing-key", min_length=1, description="its value's hash picks the version, sticky (canary)"
    )
    rollback_alias: bool = Field(default=False, description="on rollback, remove the challenger's alias")
    promote_after: str | None = Field(
        default=None, description="move the champion alias to the challenger once the guardrails held this long"
    )
    guard_error_rate: float = Field(default=0.01, ge=0, le=1, description="rollback past this share of failed calls")
    guard_p99_ms: float | None = Field(default=None, gt=0, description="rollback past this challenger p99")
    guard_divergence: float | None = Field(
        default=None, ge=0, le=1, description="rollback past this share of rows far from the champion's answers"
    )
    guard_min_calls: int = Field(default=50, ge=1, description="challenger calls a guardrail decision needs")
    divergence_tolerance: float = Field(
        default=0.1, ge=0, description="a row diverges when further than this, relative to the champion's answer"
    )
    shadow_queue: int = Field(default=256, ge=1, description="shadow copies waiting at most; a full queue drops")

    @model_validator(mode="before")
    @classmethod
    def _environment_under_arguments(cls, values: Any) -> Any:
        """Each field not given as an argument from its `DIABETES_<NAME>` variable, if set (any case).

        Variables hold strings, validated as the arguments are (the comma-separated lists by their
        own validators below); unknown `DIABETES_*` variables are ignored, as unknown arguments are.
        """
        if not isinstance(values, dict):
            return values
        found: dict[str, str] = {}
        for name, value in os.environ.items():
            field = name.upper().removeprefix(ENV_PREFIX).lower()
            if name.upper().startswith(ENV_PREFIX) and field in cls.model_fields:
                found[field] = value
        return {**found, **values}

    @field_validator("model_sha256", mode="before")
    @classmethod
    def _no_pin_when_empty(cls, value: object) -> object:
        return None if value == "" else value  # an image built without a pin sets the variable empty

    @field_validator("rate_limit")
    @classmethod
    def _rate_has_a_unit(cls, value: str | None) -> str | None:
        if not value:
            return None  # an image built without a limit sets the variable empty
        per_second(value)  # ValueError: names the form
        return value.strip()

    @field_validator("trusted_types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("log_payloads", mode="before")
    @classmethod
    def _no_payloads_when_empty(cls, value: object) -> object:
        return None if value == "" else value  # an image built without payload logging sets the variable empty

    @field_validator("log_redact", mode="before")
    @classmethod
    def _split_redactions(cls, value: object) -> object:
        # DIABETES_LOG_REDACT and the spec's environment: `column=drop,column=hash`.
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for part in filter(None, (part.strip() for part in value.split(","))):
            column, sep, how = part.partition("=")
            if not sep or not column.strip() or how.strip() not in REDACTIONS:
                raise ValueError(f"{part!r} must be COLUMN=drop or COLUMN=hash")
            pairs[column.strip()] = how.strip()
        return pairs

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(key.strip() for key in value.split(",") if key.strip())
        for key in value if isinstance(value, tuple) else ():
            secret = key.get_secret_value() if isinstance(key, SecretStr) else str(key)
            # The placeholders earlier versions wrote into the Kubernetes Secret must never become working keys.
            if secret.startswith(PLACEHOLDER_KEY_PREFIX):
                raise ValueError("holds a placeholder key (REPLACE-ME...): set real keys")
        return value

    @model_validator(mode="after")
    def _follow_needs_a_moving_uri(self) -> ServiceSettings:
        if self.follow and not FOLLOWABLE.match(self.model_uri):
            raise ValueError(
                f"--follow needs a models:/NAME@ALIAS or models:/NAME/latest URI, not {self.model_uri}"
                " (a fixed version never moves)"
            )
        return self

    @field_validator("challenger", "rollout", "promote_after", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value  # an image built without a rollout sets the variables empty

    @field_validator("promote_after")
    @classmethod
    def _a_duration(cls, value: str | None) -> str | None:
        if value is not None:
            seconds_of(value)  # ValueError: names the form
        return value

    @model_validator(mode="after")
    def _rollout_is_whole(self) -> ServiceSettings:
        if (self.challenger is None) != (self.rollout is None):
            raise ValueError("--challenger and --rollout shadow|canary go together")
        if self.challenger is None and (self.rollback_alias or self.promote_after):
            raise ValueError("--rollback-alias and --promote-after need --challenger and --rollout")
        if self.rollback_alias and not (self.challenger and ALIASED.match(self.challenger)):
            raise ValueError(f"--rollback-alias needs a models:/NAME@ALIAS challenger, not {self.challenger}")
        if self.promote_after:
            champion = ALIASED.match(self.model_uri)
            same_model = champion and re.match(rf"^models:/{re.escape(champion.group(1))}[/@]", self.challenger or "")
            if not same_model:
                raise ValueError(
                    "--promote-after moves the champion's alias: it needs a models:/NAME@ALIAS model URI and a "
                    f"challenger of the same registered model NAME (not {self.model_uri} and {self.challenger})"
                )
        return self

    @property
    def promote_after_seconds(self) -> float | None:
        return None if self.promote_after is None else seconds_of(self.promote_after)

    @model_validator(mode="after")
    def _payloads_need_pyarrow(self) -> ServiceSettings:
        # Found, not imported: pyarrow's import (~100 ms) is paid by the workers that log, not by every start.
        if self.log_payloads and importlib.util.find_spec("pyarrow") is None:
            raise ValueError("--log-payloads needs pyarrow: pip install 'diabetes-scoring[payloads]'")
        return self

    @model_validator(mode="after")
    def _no_open_door_by_accident(self) -> ServiceSettings:
        # Anyone who can reach a non-loopback address could score (and read /metrics) with no key:
        # the defaults that left TorchServe's and `mlflow models serve`'s doors open (issue 27).
        if not self.api_keys and not self.no_auth and not is_loopback(self.host):
            raise ValueError(
                f"serving on {self.host} without API keys: set DIABETES_API_KEYS='primary,secondary', "
                "or pass --no-auth (DIABETES_NO_AUTH=1, the spec's auth: none) to serve without keys"
            )
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def describe(self) -> str:
        """The settings in force, for the start-up log: keys only counted, never shown."""
        shown = self.model_dump(exclude={"api_keys", "webhook_secret", "prepared_file", "metrics_dir", "model_path"})
        shown["api_keys"] = len(self.api_keys)
        shown["webhook"] = self.webhook_secret is not None
        return " ".join(f"{name}={value}" for name, value in shown.items())
