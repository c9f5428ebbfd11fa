"""`diabetes batch`: score datasets (Parquet or CSV) with a registered model, off the HTTP path.

The model is resolved, trusted and prepared as `diabetes serve` does it (the same flags and
DIABETES_* variables, read by the same settings), and scored by the service's own core
(service/diabetes_batch). The exit status is 0 when the job is done, 4 when more rows were refused
than --max-rejected allows, 1 with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diabetes_cli.errors import CommandError

EXIT_TOO_MANY_REJECTED = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="score Parquet or CSV files with a registered model",
        description="Score datasets with one model, resolved and checked as `diabetes serve` does: Parquet files "
        "(a file, a folder, a glob) or CSV files in, Parquet out under --output, one file per input file. Rows the "
        "service would refuse go to OUTPUT/_rejected/ with its message; a rerun after a kill finishes the job "
        "with every row once.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="a Parquet or CSV file, a folder or a glob of them")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="where the scored files go")
    parser.add_argument(
        "--model-uri",
        help="models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest, runs:/..., a local MLflow model "
        "folder or a joblib model.pkl (default: models:/diabetes_model@champion)",
    )
    parser.add_argument("--tracking-uri", help="where models:/ URIs are resolved (default: as for `diabetes train`)")
    parser.add_argument(
        "--method",
        choices=("predict", "predict_proba", "decision_function"),
        help="the model's method (default: what MLflow's pyfunc calls, predict unless the model was logged otherwise)",
    )
    parser.add_argument(
        "--keep",
        action="append",
        metavar="COLS",
        help="input columns carried into the output, e.g. an id (comma-separated, repeatable)",
    )
    parser.add_argument("--engine", choices=("local", "spark"), default="local", help="where to score (default: local)")
    parser.add_argument("--spark-master", metavar="URL", help="the Spark master for --engine spark (default: local[*])")
    parser.add_argument("--workers", type=int, metavar="N", help="local engine: processes (default: the CPUs)")
    parser.add_argument(
        "--max-rejected",
        type=int,
        metavar="N",
        help=f"exit with status {EXIT_TOO_MANY_REJECTED} when more than N rows are refused (the job still completes)",
    )
    parser.add_argument("--overwrite", action="store_true", help="start over: drop what an earlier run wrote to DIR")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object on standard output")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        default=None,
        help="load pickle-based artifacts (loading a pickle runs whatever code it holds: only for artifacts you trust)",
    )
    parser.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        default=None,
        help="load a model saved with another major scikit-learn version",
    )
    parser.add_argument("--model-sha256", metavar="HEX", help="the artifact file's sha256: a matching pickle loads")
    parser.add_argument(
        "--trust-type",
        dest="trusted_types",
        action="append",
        metavar="NAME",
        help="a type a skops artifact may name beyond scikit-learn, numpy and scipy (repeatable)",
    )
    parser.set_defaults(handler=run, spec=None)


def _keep(given: list[str] | None) -> tuple[str, ...]:
    names = [name.strip() for value in given or () for name in value.split(",") if name.strip()]
    return tuple(dict.fromkeys(names))


def _progress(total: int | None) -> Any:
    """A progress bar on a terminal only (tqdm stays silent when standard error is not one)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="rows", unit_scale=True, disable=None, leave=False, file=sys.stderr)
    return bar.update


def run(args: argparse.Namespace) -> int:
    from diabetes_cli.serve import build_settings

    if args.workers is not None and args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.max_rejected is not None and args.max_rejected < 0:
        raise CommandError("--max-rejected must be 0 or more")
    if args.spark_master and args.engine != "spark":
        raise CommandError("--spark-master needs --engine spark")
    settings = build_settings(args)  # the same flags and DIABETES_* variables as `serve`, validated alike
    try:
        from diabetes_batch.errors import BatchError
        from diabetes_batch.job import BatchOptions, run_job
        from diabetes_batch.model import prepared_model
        from diabetes_service.model.trust import TrustPolicy
    except ImportError as exc:
        raise CommandError(f"diabetes batch needs the batch extra (diabetes-scoring[batch]): {exc}") from None
    options = BatchOptions(
        inputs=tuple(args.inputs),
        output=Path(args.output),
        method=args.method,
        keep=_keep(args.keep),
        engine=args.engine,
        spark_master=args.spark_master,
        workers=args.workers,
        max_rejected=args.max_rejected,
        overwrite=args.overwrite,
    )
    try:
        with prepared_model(settings.model_uri, settings.tracking_uri, TrustPolicy.from_settings(settings)) as ready:
            summary = run_job(options, ready, progress=_progress)
    except BatchError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(summary.as_dict()))
    print(f"diabetes batch: {summary.line()}", file=sys.stderr)
    if args.max_rejected is not None and summary.rejected > args.max_rejected:
        raise CommandError(
            f"{summary.rejected} rows rejected, more than --max-rejected {args.max_rejected}"
            f" (see {Path(summary.output) / '_rejected'})",
            exit_code=EXIT_TOO_MANY_REJECTED,
        )
    return 0
