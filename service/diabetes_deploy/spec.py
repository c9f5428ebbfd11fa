"""The declarative no-code deployment spec: which registered model to serve, and how.

One pydantic model validates `service/deployment.yaml`; `load_spec` turns every problem (missing
file, bad YAML, a wrong field) into one `SpecError` whose message starts with the file and the
field, e.g. ``service/deployment.yaml: name: must be 3-32 characters ...``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Azure ML's rule for service names; Kubernetes (DNS-1035 labels) also forbids a trailing dash.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
NAME_RULE = (
    "must be 3-32 characters, only lowercase letters, digits and dashes, "
    "starting with a letter and not ending with a dash"
)
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")
# `--rate-limit`'s form (diabetes_service/transport/rate_limit.py): a positive count per second, minute or hour.
RATE_PATTERN = re.compile(r"^\s*(\d+(\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
# Keys are secrets: they come from DIABETES_API_KEYS or a Kubernetes Secret, never from this file.
KEY_FIELDS = ("keys", "api_keys", "primary_key", "secondary_key", "key")


class SpecError(ValueError):
    """A deployment spec that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    # Typos must fail loudly, not be ignored; values are never coerced from strings or booleans.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelRef(_Strict):
    """The registered model: its name plus exactly one of a version or an alias."""

    name: str
    version: int | None = Field(default=None, ge=1)
    alias: str | None = None
    framework: Literal["ScikitLearn"] = "ScikitLearn"
    follow: bool = False  # serve the alias's new versions as it moves (an alias only)
    # Where the registry is, for a pod that follows the alias: an MLflow tracking server's URL
    # (its credentials go in a Secret, never here).
    tracking_uri: str | None = Field(default=None, pattern=r"^https?://[^@\s]+$")
    allow_pickle: bool = False  # load pickle-based artifacts (they run code when loaded)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")  # pin the artifact file
    trusted_types: tuple[str, ...] = ()  # skops types beyond scikit-learn, numpy and scipy
    # Serve a model saved with another major version of scikit-learn (refused by default).
    allow_version_mismatch: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not MODEL_NAME_PATTERN.match(value):
            raise ValueError("must be a registered model name: letters, digits, '_', '.', '-' (no '/')")
        return value

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.lower() == "latest" or re.match(r"^v\d+$", value, re.IGNORECASE):
            raise ValueError("'latest' and 'v<number>' are reserved by MLflow: use version instead")
        if not ALIAS_PATTERN.match(value):
            raise ValueError("must be an MLflow alias: letters, digits, '_' and '-', not starting with a digit")
        return value

    @model_validator(mode="after")
    def _one_of_version_alias(self) -> ModelRef:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of version or alias")
        if self.follow and self.alias is None:
            raise ValueError("follow needs an alias: a fixed version never moves")
        if self.follow and self.sha256 is not None:
            raise ValueError("follow cannot keep a sha256 pin: each new version is another artifact")
        return self

    @property
    def uri(self) -> str:
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version}"


class ResourceLimits(_Strict):
    """Upper bounds for one replica (Kubernetes limits; Azure's cpu_cores_limit / memory_gb_limit)."""

    cpu_cores: float = Field(gt=0, le=64)
    memory_gb: float = Field(gt=0, le=256)


class Resources(_Strict):
    """What one replica is guaranteed (the example recommends 1 CPU core and 1 GB)."""

    cpu_cores: float = Field(default=1.0, gt=0, le=64)
    memory_gb: float = Field(default=1.0, gt=0, le=256)
    limits: ResourceLimits | None = None

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Resources:
        if self.limits is not None:
            if self.limits.cpu_cores < self.cpu_cores:
                raise ValueError("limits.cpu_cores must be at least cpu_cores")
            if self.limits.memory_gb < self.memory_gb:
                raise ValueError("limits.memory_gb must be at least memory_gb")
        return self

    @property
    def cpu_limit(self) -> float:
        return self.limits.cpu_cores if self.limits else self.cpu_cores

    @property
    def memory_limit_gb(self) -> float:
        return self.limits.memory_gb if self.limits else self.memory_gb


class Autoscale(_Strict):
    """Replicas between min and max, aiming at a target CPU utilisation (percent)."""

    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(default=3, ge=1, le=1000)
    target_utilization: int = Field(default=70, ge=1, le=100)

    @model_validator(mode="after")
    def _min_below_max(self) -> Autoscale:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class Scale(_Strict):
    """Either a fixed number of replicas or autoscaling, never both."""

    replicas: int | None = Field(default=None, ge=1, le=1000)
    autoscale: Autoscale | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> Scale:
        if self.replicas is not None and self.autoscale is not None:
            raise ValueError("give either replicas or autoscale, not both")
        if self.replicas is None and self.autoscale is None:
            raise ValueError("give replicas or autoscale")
        return self

    @property
    def autoscale_enabled(self) -> bool:
        return self.autoscale is not None

    @property
    def min_replicas(self) -> int:
        return self.autoscale.min_replicas if self.autoscale else int(self.replicas or 1)

    @property
    def max_replicas(self) -> int:
        return self.autoscale.max_replicas if self.autoscale else int(self.replicas or 1)


class Auth(_Strict):
    """Whether callers need a key. The keys themselves live in DIABETES_API_KEYS or a Secret.

    `auth: none` is short for `{enabled: false}`: the service then serves without keys on purpose
    (`diabetes serve --no-auth`); with keys on and none set it refuses to start.
    """

    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _no_keys_here(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for field in KEY_FIELDS:
                if field in data:
                    raise ValueError(
                        f"{field}: keys never go in the spec; set DIABETES_API_KEYS (or the Kubernetes Secret) instead"
                    )
        return data


class Rollout(_Strict):
    """A safe rollout (docs/rollout.md): a challenger version of the same registered model, beside it in
    every pod (`diabetes serve --challenger --rollout`); the registry must be reachable (model.tracking_uri)."""

    challenger_alias: str | None = None
    challenger_version: int | None = Field(default=None, ge=1)
    mode: Literal["shadow", "canary"]
    canary_percent: float = Field(default=10.0, ge=0, le=100)
    routing_header: str = Field(default="x-routing-key", pattern=r"^[A-Za-z0-9-]{1,64}$")
    rollback_alias: bool = False  # remove the challenger's alias when the guardrails roll it back
    promote_after: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?[smhd]?$")  # e.g. 30m
    guard_error_rate: float = Field(default=0.01, ge=0, le=1)
    guard_p99_ms: float | None = Field(default=None, gt=0)
    guard_divergence: float | None = Field(default=None, ge=0, le=1)
    guard_min_calls: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _one_challenger(self) -> Rollout:
        if (self.challenger_alias is None) == (self.challenger_version is None):
            raise ValueError("rollout: give exactly one of challenger_alias and challenger_version")
        if self.challenger_alias is not None and not ALIAS_PATTERN.match(self.challenger_alias):
            raise ValueError("rollout.challenger_alias: must be an alias name (letters, digits, '_', '-')")
        if self.rollback_alias and self.challenger_alias is None:
            raise ValueError("rollout.rollback_alias needs a challenger_alias")
        return self


class Probe(_Strict):
    """Timings of one HTTP probe (Kubernetes' field names, in seconds)."""

    initial_delay_seconds: int = Field(default=0, ge=0, le=3600)
    period_seconds: int = Field(default=5, ge=1, le=3600)
    timeout_seconds: int = Field(default=2, ge=1, le=3600)
    failure_threshold: int = Field(default=3, ge=1, le=100)
    success_threshold: int = Field(default=1, ge=1, le=100)


class Probes(_Strict):
    """Readiness on /health/ready, liveness on /, and how long a stopping replica drains."""

    readiness: Probe = Probe(initial_delay_seconds=2, period_seconds=5)
    liveness: Probe = Probe(initial_delay_seconds=10, period_seconds=10)
    # preStop sleep: lets the load balancer drop the pod before SIGTERM starts the drain.
    pre_stop_seconds: int = Field(default=5, ge=0, le=300)
    # SIGTERM to SIGKILL: must cover the preStop sleep plus in-flight requests.
    termination_grace_period_seconds: int = Field(default=45, ge=1, le=3600)

    @field_validator("liveness")
    @classmethod
    def _liveness_success_is_one(cls, value: Probe) -> Probe:
        if value.success_threshold != 1:
            raise ValueError("success_threshold must be 1 for a liveness probe (Kubernetes' rule)")
        return value

    @model_validator(mode="after")
    def _grace_covers_pre_stop(self) -> Probes:
        if self.termination_grace_period_seconds <= self.pre_stop_seconds:
            raise ValueError("termination_grace_period_seconds must be longer than pre_stop_seconds")
        return self


class DriftJob(_Strict):
    """The nightly drift job (`diabetes deploy kubernetes` renders it as a CronJob, docs/monitoring.md):
    `diabetes monitor` over the last `window_hours` of the payload log, on the volume the pods log to."""

    schedule: str = Field(default="30 2 * * *", pattern=r"^\S+( \S+){4}$")  # cron: minute hour day month weekday
    time_zone: str = "Etc/UTC"
    claim: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=253)  # a ReadWriteMany PVC
    dir: str = Field(default="/var/log/diabetes/payloads", pattern=r"^/")  # mounted here in pods and job
    window_hours: int = Field(default=24, ge=1, le=24 * 31)
    fail_on_drift: bool = True  # the Job fails (exit 3) on drift: kube_job_status_failed alerts


class PayloadLogging(_Strict):
    """`diabetes serve --log-payloads DIR --log-sample-rate R`, and per-column redaction (the spec's only)."""

    dir: str = Field(min_length=1)
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    # A column (a feature, `prediction`, `proba_<class>`) left out of the records, or logged as its sha256.
    redact: dict[str, Literal["drop", "hash"]] = {}

    @field_validator("sample_rate", mode="before")
    @classmethod
    def _rate_as_number(cls, value: Any) -> Any:
        return float(value) if type(value) is int else value  # `sample_rate: 1` is a rate too


class DeploymentSpec(_Strict):
    """`service/deployment.yaml`: one registered model served as one named service."""

    name: str
    model: ModelRef
    resources: Resources = Resources()
    scale: Scale = Scale(replicas=1)
    auth: Auth = Auth()
    scoring_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    max_concurrent_requests: int = Field(default=8, ge=1, le=1000, description="per replica")
    grpc_port: int = Field(
        default=8081, ge=0, le=65535, description="Open Inference Protocol over gRPC in the container; 0: off"
    )
    # Per API key (per client address without keys), per replica: `diabetes serve --rate-limit`.
    rate_limit: str | None = None
    payload_logging: PayloadLogging | None = None
    probes: Probes = Probes()
    monitor: DriftJob | None = None
    rollout: Rollout | None = None  # a challenger beside the model (docs/rollout.md)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(NAME_RULE)
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        match = RATE_PATTERN.match(value or "1/s")
        if match is None or float(match.group(1)) <= 0:
            raise ValueError("must be a count per unit: N/s, N/min or N/h, e.g. 50/s or 3000/min")
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_none(cls, value: Any) -> Any:
        # `auth: none` says it in two words: serve without keys, on purpose (--no-auth).
        if value == "none":
            return {"enabled": False}
        if isinstance(value, str):
            raise ValueError("must be none or {enabled: true|false}")
        return value

    @model_validator(mode="after")
    def _promotion_moves_an_alias(self) -> DeploymentSpec:
        if self.rollout is not None and self.rollout.promote_after and self.model.alias is None:
            raise ValueError("rollout.promote_after moves the model's alias: give model.alias, not model.version")
        return self

    @model_validator(mode="after")
    def _grace_covers_scoring(self) -> DeploymentSpec:
        drain = self.probes.termination_grace_period_seconds - self.probes.pre_stop_seconds
        if drain < self.scoring_timeout_seconds:
            raise ValueError(
                "probes.termination_grace_period_seconds must cover pre_stop_seconds plus "
                f"scoring_timeout_seconds ({self.scoring_timeout_seconds:g}s) so in-flight requests drain"
            )
        return self

    @model_validator(mode="after")
    def _drift_job_reads_the_payload_log(self) -> DeploymentSpec:
        # The nightly job reads the folder the pods log to: two different folders would report on nothing.
        logging, job = self.payload_logging, self.monitor
        if logging is not None and job is not None and logging.dir != job.dir:
            raise ValueError(
                f"monitor.dir ({job.dir}) must be payload_logging.dir ({logging.dir}): the drift job reads "
                "the records the pods write"
            )
        return self

    @property
    def model_uri(self) -> str:
        """`models:/name/version` or `models:/name@alias`: what `diabetes serve --model-uri` takes."""
        return self.model.uri


def _field_message(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "literal_error":
        message = f"must be {error['ctx']['expected']}"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    # A model-level check reports its own field inside the message ("min_replicas must ...").
    return f"{loc}: {message}" if loc else message


def parse_spec(data: Any, source: str = "spec") -> DeploymentSpec:
    """Validate already-parsed YAML/JSON; raises `SpecError` naming `source` and the field."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: must be a mapping of fields (name, model, resources, ...)")
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        message = _field_message(dict(errors[0]))
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise SpecError(f"{source}: {message}{more}") from None


def load_spec(path: str | Path) -> DeploymentSpec:
    """Read and validate a deployment spec; every problem becomes one `SpecError`."""
    import yaml

    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{source}: is a folder, not a spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{source}: cannot read it ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise SpecError(f"{source}: not valid YAML{where}: {problem}") from None
    return parse_spec(data, source)


def serving_settings(spec: DeploymentSpec) -> dict[str, Any]:
    """What the spec decides for one replica's scoring service, by its ServiceSettings name.

    Used by `diabetes serve --spec` (and so by the images `diabetes deploy` builds, which bake the
    spec in) and by the Kubernetes manifests' environment, so that both apply the same values.
    """
    values: dict[str, Any] = {
        "model_uri": spec.model_uri,
        "service_name": spec.name,
        "max_concurrent_requests": spec.max_concurrent_requests,
        "scoring_timeout_seconds": spec.scoring_timeout_seconds,
        "grpc_port": spec.grpc_port,
        # One worker per CPU the replica may use, as the container's cgroup would say.
        "workers": max(1, math.ceil(spec.resources.cpu_limit)),
        # What is left of the termination grace period once the preStop sleep is over.
        "graceful_timeout_seconds": spec.probes.termination_grace_period_seconds - spec.probes.pre_stop_seconds,
    }
    if not spec.auth.enabled:
        # Without keys on purpose: the container listens on every interface (--no-auth).
        values["api_keys"] = ()
        values["no_auth"] = True
    if spec.rate_limit:
        values["rate_limit"] = spec.rate_limit
    if spec.payload_logging is not None:
        values["log_payloads"] = spec.payload_logging.dir
        values["log_sample_rate"] = spec.payload_logging.sample_rate
        if spec.payload_logging.redact:  # as DIABETES_LOG_REDACT holds it
            values["log_redact"] = ",".join(f"{k}={v}" for k, v in spec.payload_logging.redact.items())
    if spec.model.follow:
        values["follow"] = True
    if spec.model.tracking_uri:
        values["tracking_uri"] = spec.model.tracking_uri
    if spec.model.allow_pickle:
        values["allow_pickle"] = True
    if spec.model.sha256:
        values["model_sha256"] = spec.model.sha256
    if spec.model.trusted_types:
        values["trusted_types"] = ",".join(spec.model.trusted_types)
    if spec.model.allow_version_mismatch:
        values["allow_version_mismatch"] = True
    if spec.rollout is not None:
        values.update(_rollout_settings(spec.model.name, spec.rollout))
    return values


def _rollout_settings(model: str, rollout: Rollout) -> dict[str, Any]:
    """The spec's `rollout` section as `diabetes serve`'s settings (and so the pods' DIABETES_* variables)."""
    at = f"@{rollout.challenger_alias}" if rollout.challenger_alias else f"/{rollout.challenger_version}"
    values: dict[str, Any] = {
        "challenger": f"models:/{model}{at}",
        "rollout": rollout.mode,
        "canary_percent": rollout.canary_percent,
        "routing_header": rollout.routing_header,
        "guard_error_rate": rollout.guard_error_rate,
        "guard_min_calls": rollout.guard_min_calls,
    }
    if rollout.rollback_alias:
        values["rollback_alias"] = True
    for name in ("promote_after", "guard_p99_ms", "guard_divergence"):
        if getattr(rollout, name) is not None:
            values[name] = getattr(rollout, name)
    return values


def serving_environment(spec: DeploymentSpec) -> dict[str, str]:
    """`serving_settings` as the container's DIABETES_* variables, for Docker and Kubernetes.

    The model is left out (the image carries it) and so are keys (a Secret or the caller's
    environment holds them, never a manifest).
    """
    values = serving_settings(spec)
    return {
        f"DIABETES_{name.upper()}": f"{value:g}" if isinstance(value, float) else str(value)
        for name, value in values.items()
        if name not in ("model_uri", "api_keys")
    }
