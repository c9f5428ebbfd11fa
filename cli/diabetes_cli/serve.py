"""`diabetes serve`: serve one registered model over HTTP (Azure ML no-code protocol and more)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from diabetes_cli.errors import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a registered model over HTTP",
        description="Serve one model: resolve it once, then score it over HTTP with several workers. "
        "Every flag can also come from a DIABETES_* environment variable (DIABETES_MODEL_URI, DIABETES_PORT, ...); "
        "DIABETES_API_KEYS holds the API keys, comma-separated, primary first.",
    )
    parser.add_argument(
        "--model-uri",
        help="models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest, runs:/..., a local MLflow model "
        "folder or a joblib model.pkl (default: models:/diabetes_model@champion)",
    )
    parser.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: 8080)")
    parser.add_argument(
        "--grpc-port", type=int, help="Open Inference Protocol (V2) over gRPC on this port (default: 8081; 0: off)"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="Prometheus /metrics on this port, with no key: keep it inside the cluster "
        "(default: 8082; 0: on the scoring port, behind the key)",
    )
    parser.add_argument("--workers", type=int, help="worker processes (default: the container's CPU limit)")
    parser.add_argument("--spec", help="a no-code deployment spec (service/deployment.yaml): model, name, auth")
    parser.add_argument("--tracking-uri", help="where models:/ URIs are resolved (default: as for `diabetes train`)")
    parser.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help="serve without API keys on an address that is not loopback (refused otherwise: anyone who can "
        "reach it could score); also DIABETES_NO_AUTH=1 or the spec's auth: none",
    )
    parser.add_argument(
        "--rate-limit",
        metavar="RATE",
        help="at most RATE calls per API key (per client address without keys) on this replica, e.g. 50/s or "
        "3000/min; past it 429 with Retry-After (gRPC: RESOURCE_EXHAUSTED). A cluster-wide limit belongs at the "
        "ingress",
    )
    parser.add_argument(
        "--log-payloads",
        metavar="DIR",
        help="payload logging: one Parquet record per scored row and per refused call under DIR, partitioned "
        "model=/version=/date=/hour=; written off the request path, flushed at least every 10 s and on shutdown",
    )
    parser.add_argument(
        "--log-sample-rate",
        type=float,
        metavar="R",
        help="the share of calls payload logging keeps, 0 to 1 (default: 1)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        default=None,
        help="load pickle-based artifacts (model.pkl, joblib, MLflow's pickle and cloudpickle formats): "
        "loading a pickle runs whatever code it holds, so only for artifacts you trust",
    )
    parser.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        default=None,
        help="serve a model saved with another major scikit-learn version (refused otherwise: pickles across "
        "major versions break); a different minor version only logs a warning",
    )
    parser.add_argument(
        "--model-sha256",
        metavar="HEX",
        help="the artifact file's sha256: a pickle that matches loads without --allow-pickle; any mismatch refuses",
    )
    parser.add_argument(
        "--trust-type",
        dest="trusted_types",
        action="append",
        metavar="NAME",
        help="a type a skops artifact may name beyond scikit-learn, numpy and scipy (repeatable)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        default=None,
        help="follow an @alias or latest URI: prepare each new version off the serving path and swap it in "
        "with no failed request (SIGHUP re-resolves at once, with or without --follow)",
    )
    parser.add_argument(
        "--follow-interval",
        dest="follow_interval_seconds",
        type=float,
        metavar="SECONDS",
        help="how often --follow asks the registry (default: 30)",
    )
    parser.add_argument(
        "--follow-schema-changes",
        action="store_true",
        default=None,
        help="let --follow swap in a version whose features differ from the served one's",
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one JSON line per request on standard output (default: off on an interactive terminal, "
        "on otherwise, as in containers; DIABETES_ACCESS_LOG=1/0)",
    )
    _rollout_flags(parser)
    parser.set_defaults(handler=run)


def _rollout_flags(parser: argparse.ArgumentParser) -> None:
    """Safe rollout (docs/rollout.md): a challenger beside the champion, guardrails, rollback, promotion."""
    group = parser.add_argument_group("safe rollout")
    group.add_argument("--challenger", metavar="URI", help="a second version, e.g. models:/NAME@challenger")
    group.add_argument(
        "--rollout",
        choices=("shadow", "canary"),
        help="shadow: the champion answers, the challenger scores a copy off the request path; "
        "canary: the challenger answers --canary-percent of calls (a call it fails is answered by the champion)",
    )
    group.add_argument("--canary-percent", type=float, metavar="P", help="share of calls for the challenger (10)")
    group.add_argument(
        "--routing-header", metavar="NAME", help="a header whose value's hash keeps a caller on one version"
    )
    group.add_argument(
        "--rollback-alias", action="store_true", default=None, help="on rollback, remove the challenger's alias"
    )
    group.add_argument(
        "--promote-after",
        metavar="DURATION",
        help="once the guardrails held this long (e.g. 30m) and over --guard-min-calls, move the champion alias "
        "to the challenger's version",
    )
    group.add_argument("--guard-error-rate", type=float, metavar="R", help="rollback past this failed share (0.01)")
    group.add_argument("--guard-p99-ms", type=float, metavar="MS", help="rollback past this challenger p99")
    group.add_argument(
        "--guard-divergence", type=float, metavar="R", help="rollback past this share of rows far from the champion"
    )
    group.add_argument("--guard-min-calls", type=int, metavar="N", help="challenger calls a decision needs (50)")


def _from_spec(path: str) -> dict[str, Any]:
    """The settings the spec decides, named as ServiceSettings names them."""
    try:
        from diabetes_deploy.spec import SpecError, load_spec, serving_settings
    except ImportError:
        raise CommandError("--spec needs the deployment package (diabetes_deploy)") from None
    try:
        spec = load_spec(path)
    except SpecError as exc:
        raise CommandError(str(exc)) from None
    if spec.auth.enabled and not os.environ.get("DIABETES_API_KEYS"):
        raise CommandError(f"{path}: auth is enabled but DIABETES_API_KEYS holds no key")
    return serving_settings(spec)


def build_settings(args: argparse.Namespace) -> Any:
    """Flags over DIABETES_* variables over the spec over defaults."""
    from pydantic import ValidationError

    from diabetes_service.settings import ServiceSettings

    values: dict[str, Any] = {}
    if args.spec or os.environ.get("DIABETES_SPEC"):
        spec_values = _from_spec(args.spec or os.environ["DIABETES_SPEC"])
        values.update({k: v for k, v in spec_values.items() if f"DIABETES_{k.upper()}" not in os.environ})
    flags = (
        "model_uri",
        "host",
        "port",
        "grpc_port",
        "metrics_port",
        "workers",
        "spec",
        "tracking_uri",
        "follow",
        "follow_interval_seconds",
        "follow_schema_changes",
        "allow_pickle",
        "allow_version_mismatch",
        "model_sha256",
        "trusted_types",
        "no_auth",
        "rate_limit",
        "log_payloads",
        "log_sample_rate",
        "access_log",
        "challenger",
        "rollout",
        "canary_percent",
        "routing_header",
        "rollback_alias",
        "promote_after",
        "guard_error_rate",
        "guard_p99_ms",
        "guard_divergence",
        "guard_min_calls",
    )
    values.update({name: getattr(args, name, None) for name in flags if getattr(args, name, None) is not None})
    try:
        return ServiceSettings(**values)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        raise CommandError(f"invalid setting {field}: {message}" if field else message) from None


def run(args: argparse.Namespace) -> int:
    from diabetes_service.supervisor import process_env

    process_env.apply()  # before anything imports numpy or builds a pydantic model
    from diabetes_service.errors import ModelLoadError
    from diabetes_service.protocols.v2.grpc_schema import SchemaMissing
    from diabetes_service.supervisor.supervisor import serve

    settings = build_settings(args)
    try:
        return serve(settings)
    except ModelLoadError as exc:
        raise CommandError(f"cannot serve the model: {exc}") from None
    except SchemaMissing as exc:
        raise CommandError(f"cannot serve gRPC: {exc}") from None
    except OSError as exc:
        others = [port for port in (settings.grpc_port, settings.metrics_port) if port]
        ports = " or ".join(map(str, [settings.port, *others]))
        raise CommandError(f"cannot listen on {settings.host}:{ports}: {exc.strerror or exc}") from None
