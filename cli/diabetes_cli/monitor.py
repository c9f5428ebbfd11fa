"""`diabetes monitor`: drift of the logged payloads against the model's training reference.

`diabetes monitor --payloads DIR --model-uri URI --out report.html` reads the payload log of the
version URI names (an alias is resolved to its version now), compares every feature and output with
the reference profile kept next to the model (service/diabetes_monitor), and writes one HTML page
(and with --json, the figures). Exit status 0, or 3 with --fail-on-drift when a column drifts, so
that a nightly job can alert; 1 with a one-line reason on bad input or missing data.

`diabetes monitor reference --model-uri URI --data FILE` makes the profile for a model trained
elsewhere: the data scored by the model exactly as `diabetes batch` scores it, so the reference's
outputs are what the service answers. The model is resolved by the service's own resolver (the same
cache and tracking-URI rule as `serve`); the monitor package itself never imports the service.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from diabetes_cli.errors import CommandError

EXIT_DRIFT = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="drift of logged payloads against the model's training reference",
        description="Compare the payloads `diabetes serve --log-payloads DIR` logged for one model version with the "
        "reference profile of its training data: per feature and output the population stability index, a "
        "Kolmogorov-Smirnov (numbers) or chi-squared (categories) test and a drift flag, with null and refusal "
        "rates, as one self-contained HTML page. `diabetes monitor reference` makes a profile for a model "
        "trained elsewhere.",
    )
    parser.add_argument("--payloads", metavar="DIR", help="the payload log's folder (as given to --log-payloads)")
    _model_arguments(parser)
    parser.add_argument("--since", metavar="T", help="only records at or after T (ISO 8601, UTC unless it says)")
    parser.add_argument("--until", metavar="T", help="only records before T (ISO 8601, UTC unless it says)")
    parser.add_argument("--out", metavar="FILE", help="the HTML report to write")
    parser.add_argument("--json", metavar="FILE", dest="json_out", help="also write the figures as JSON")
    parser.add_argument(
        "--fail-on-drift", action="store_true", help=f"exit with status {EXIT_DRIFT} when any feature or output drifts"
    )
    parser.set_defaults(handler=run_report, spec=None)
    commands = parser.add_subparsers(dest="monitor_command", metavar="[reference]")
    reference = commands.add_parser(
        "reference",
        help="make the reference profile of a model trained elsewhere",
        description="Profile FILE (the model's training data, Parquet or CSV, with the model's feature columns) and "
        "the model's outputs on it, and keep the profile next to the model: in the model's folder for a local "
        "model, as an artifact of the registered version for a models:/ URI. --out writes it elsewhere.",
    )
    _model_arguments(reference)
    reference.add_argument("--data", metavar="FILE", help="the training data: a Parquet or CSV file")
    reference.add_argument("--out", metavar="FILE", help="write the profile here instead of next to the model")
    reference.add_argument(
        "--method",
        choices=("predict", "predict_proba", "decision_function"),
        help="the method whose outputs the service logs (default: as `diabetes serve` chooses)",
    )
    reference.add_argument(
        "--allow-pickle",
        action="store_true",
        default=None,
        help="load pickle-based artifacts (loading a pickle runs whatever code it holds: only for artifacts you trust)",
    )
    reference.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        default=None,
        help="load a model saved with another major scikit-learn version",
    )
    reference.add_argument("--model-sha256", metavar="HEX", help="the artifact file's sha256: a matching pickle loads")
    reference.add_argument(
        "--trust-type",
        dest="trusted_types",
        action="append",
        metavar="NAME",
        help="a type a skops artifact may name beyond scikit-learn, numpy and scipy (repeatable)",
    )
    reference.set_defaults(handler=run_reference, spec=None)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-uri",
        metavar="URI",
        help="models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest, a local MLflow model folder or a "
        "joblib model.pkl",
    )
    parser.add_argument("--tracking-uri", help="where models:/ URIs are resolved (default: as for `diabetes train`)")


def _quiet_mlflow() -> None:
    """Keep MLflow's info lines (a new embedded store's "Creating initial MLflow database tables") off
    standard error, which holds our one line; its children (the model's preparation) inherit it."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def _required(args: argparse.Namespace, *flags: str) -> None:
    for flag in flags:
        if not getattr(args, flag.removeprefix("--").replace("-", "_"), None):
            raise CommandError(f"{flag} is required")


def locate(uri: str, tracking_uri: str | None) -> tuple[Path, str, str]:
    """(the model's local folder or file, its name, its version) as `diabetes serve` names them."""
    from diabetes_store.uris import in_store

    if not in_store(uri):
        path = Path(uri).expanduser().resolve()
        if not path.exists():
            raise CommandError(f"--model-uri {uri}: no model there")
        # As the service names the records of a model served from a file or folder: the image's
        # DIABETES_MODEL_NAME/VERSION (the registered version baked into it) when set, else the
        # file's or folder's name and version `none` (docs/payload-logging.md).
        name = os.environ.get("DIABETES_MODEL_NAME") or (path.stem if path.is_file() else path.name)
        return path, name, os.environ.get("DIABETES_MODEL_VERSION") or "none"
    if not uri.startswith("models:/"):
        raise CommandError(f"--model-uri {uri}: name a registered version (models:/NAME/VERSION or models:/NAME@ALIAS)")
    from diabetes_service.deploy_api import ModelLoadError, resolve_registered

    try:
        registered = resolve_registered(uri, tracking_uri)
    except ModelLoadError as exc:
        raise CommandError(f"--model-uri {uri}: {exc}") from None
    except Exception as exc:  # an unreachable store, a library's own failure: one line, no traceback
        raise CommandError(f"--model-uri {uri}: {_first_line(exc)}") from None
    return registered.path, registered.name, registered.version


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", exc)).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def profile_path(model: Path) -> Path:
    """Where a model's reference profile is kept: in its folder, or beside a single-file model."""
    from diabetes_monitor.profile import PROFILE_FILE

    return (model if model.is_dir() else model.parent) / PROFILE_FILE


def run_report(args: argparse.Namespace) -> int:
    _required(args, "--payloads", "--model-uri", "--out")
    _quiet_mlflow()
    try:
        from diabetes_monitor import html, profile, reader, report
        from diabetes_monitor.errors import MonitorError
    except ImportError as exc:
        raise CommandError(f"diabetes monitor needs the monitor extra (diabetes-scoring[monitor]): {exc}") from None
    out = Path(args.out)
    try:
        since = reader.parse_time(args.since, "--since") if args.since else None
        until = reader.parse_time(args.until, "--until") if args.until else None
        if since and until and since >= until:
            raise MonitorError(f"--since {args.since} is not before --until {args.until}")
        payloads = Path(args.payloads)
        if not payloads.is_dir():
            raise MonitorError(f"--payloads {payloads}: no such folder")
        model, name, version = locate(args.model_uri, args.tracking_uri)
        reference = profile.load(profile_path(model))
        columns = [*reference["features"], *reference["outputs"]]
        table = reader.read(payloads, name, version, columns, since, until)
        figures, plots = report.build(reference, table, model=name, version=version, since=since, until=until)
        page = html.render(figures, plots)
    except MonitorError as exc:
        raise CommandError(str(exc)) from None
    _write(out, page)
    if args.json_out:
        import json

        _write(Path(args.json_out), json.dumps(figures, indent=1, allow_nan=False))
    drifting = [*figures["drifting"], *(["prediction"] if figures["prediction"]["drift"] else [])]
    verdict = f"drift in {', '.join(drifting)}" if drifting else "no drift"
    print(f"diabetes monitor: {figures['rows']} rows of {name} version {version}: {verdict}; report in {out}")
    if args.fail_on_drift and figures["drift"]:
        return EXIT_DRIFT
    return 0


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a temporary file beside it, renamed into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
            file.write(text)
        Path(file.name).replace(path)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None


def run_reference(args: argparse.Namespace) -> int:
    _required(args, "--model-uri", "--data")
    _quiet_mlflow()
    from diabetes_cli.serve import build_settings

    data = Path(args.data)
    if not data.is_file():
        raise CommandError(f"--data {data}: no such file")
    settings = build_settings(args)
    try:
        from diabetes_monitor import profile
        from diabetes_monitor.errors import MonitorError
    except ImportError as exc:
        raise CommandError(f"diabetes monitor needs the monitor extra (diabetes-scoring[monitor]): {exc}") from None
    features, outputs = _score(data, settings, args.method)
    try:
        made = profile.build_profile(features, outputs, source=str(data), model=args.model_uri)
    except MonitorError as exc:
        raise CommandError(str(exc)) from None
    version = ""
    if args.out:
        target = Path(args.out)
    else:
        model, _, version = locate(args.model_uri, args.tracking_uri)
        target = profile_path(model)
    try:
        profile.save(made, target)
    except OSError as exc:
        raise CommandError(f"cannot write {target}: {exc.strerror or exc}") from None
    if not args.out and args.model_uri.startswith("models:/"):
        _log_to_registry(args.model_uri, version, args.tracking_uri, target)
    print(f"diabetes monitor reference: {made['rows']} rows profiled; profile in {target}")
    return 0


def _score(data: Path, settings: Any, method: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data's feature columns and the model's outputs on them, under the payload log's names,
    scored by `diabetes batch`'s job (the service's core); refused rows are left out of both."""
    import pyarrow.dataset as ds

    try:
        from diabetes_batch.errors import BatchError
        from diabetes_batch.job import BatchOptions, run_job
        from diabetes_batch.model import prepared_model
        from diabetes_service.model.trust import TrustPolicy
    except ImportError as exc:
        raise CommandError(f"diabetes monitor reference needs the batch extra: {exc}") from None
    policy = TrustPolicy.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="diabetes-reference-") as work:
        try:
            with prepared_model(settings.model_uri, settings.tracking_uri, policy) as ready:
                features = list(ready.resolved.features)
                options = BatchOptions(inputs=(str(data),), output=Path(work), method=method, keep=tuple(features))
                run_job(options, ready)
        except BatchError as exc:
            raise CommandError(str(exc)) from None
        table = ds.dataset(work, format="parquet", exclude_invalid_files=True).to_table()
    if table.num_rows == 0:
        raise CommandError(f"--data {data}: the model refused every row")
    outputs = [name for name in table.column_names if name not in features]
    names = {name: name if name == "prediction" else f"proba_{name}" for name in outputs}
    return (
        {name: table[name].to_numpy(zero_copy_only=False) for name in features},
        {names[name]: table[name].to_numpy(zero_copy_only=False) for name in outputs},
    )


def _log_to_registry(uri: str, version: str, tracking_uri: str | None, profile_file: Path) -> None:
    """Keep the profile with the registered version in the store (its logged model's folder, where
    `diabetes train` puts it), so that every later download of the version brings it."""
    from diabetes_store.tracking_uri import resolve_tracking_uri
    from diabetes_store.uris import parse_registered

    try:
        from mlflow import MlflowClient
    except ImportError:
        raise CommandError(
            "keeping a profile with a registered version needs MLflow (diabetes-scoring[trainer]); or write it"
            " elsewhere with --out FILE"
        ) from None
    store = resolve_tracking_uri(tracking_uri)
    ref = parse_registered(uri)
    assert ref is not None  # locate() accepted it
    try:
        client = MlflowClient(tracking_uri=store, registry_uri=store)
        found = client.get_model_version(ref.name, version)
        source = str(found.source or "")
        # MLflow 3 registers a logged model (source models:/m-<id>); MLflow 2 a run's folder (runs:/<run>/<path>).
        model_id = getattr(found, "model_id", None) or (
            source[len("models:/") :] if source.startswith("models:/m-") else None
        )
        if model_id:
            client.log_model_artifact(model_id, str(profile_file))
        elif source.startswith("runs:/") and source.count("/") >= 2:
            run_id, _, path = source[len("runs:/") :].partition("/")
            client.log_artifact(run_id, str(profile_file), artifact_path=path.strip("/") or None)
        else:
            raise CommandError(f"{uri}: its files ({source}) are not a logged model or a run's folder: use --out FILE")
    except CommandError:
        raise
    except Exception as exc:
        raise CommandError(f"keeping the profile with {uri} failed: {_first_line(exc)}") from None
