"""`diabetes train`: the worked example, tracked in MLflow and registered.

The handler imports the trainer (and through it MLflow and scikit-learn) only when it runs, so
that `diabetes --help` stays fast and the client-only install still starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any

from diabetes_cli.errors import CommandError

TASKS = ("regression", "classification", "pipeline")
DEFAULT_EXPERIMENT = "experiment_with_mlflow"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `diabetes train` and its flags."""
    parser = subparsers.add_parser(
        "train",
        help="train the worked example, log it to MLflow and register it",
        description=(
            "Fit the worked example on scikit-learn's diabetes data (80/20 split, random_state=0), log"
            " params, test metrics, model.pkl, an MLflow sklearn model and a predicted-vs-actual plot"
            " to MLflow, register a new version and move the 'champion' alias to it when it beats the"
            " current champion on the test set."
        ),
    )
    parser.add_argument(
        "--task",
        default="regression",
        metavar="{regression,classification,pipeline}",
        help="regression: Ridge on the disease progression, registered as diabetes_model (default);"
        " classification: LogisticRegression on 'progression above the training median',"
        " registered as diabetes_classifier; pipeline: the same Ridge in a pipeline that one-hot encodes"
        " sex given as female/male and takes age in whole years, registered as diabetes_pipeline",
    )
    parser.add_argument(
        "--alpha",
        nargs="+",
        metavar="ALPHA",
        help="regularisation strength, > 0 (Ridge's alpha; the classifier's C is 1/alpha);"
        " several values run one nested run each under a parent run and register the best on the"
        " test set (default: 0.03 for regression, 1.0 for classification)",
    )
    parser.add_argument(
        "--model-name",
        metavar="NAME",
        help="registered model name (default: diabetes_model, or diabetes_classifier for classification)",
    )
    parser.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        metavar="NAME",
        help=f"MLflow experiment to log to (default: {DEFAULT_EXPERIMENT})",
    )
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking store: an http(s) server, sqlite:///file.db, ... (default:"
        " $DIABETES_TRACKING_URI, else $MLFLOW_TRACKING_URI, else the embedded SQLite store"
        " mlruns.db in the project folder, $DIABETES_HOME or the working directory)",
    )
    store.add_argument(
        "--workspace-config",
        metavar="CONFIG_JSON",
        type=Path,
        help="track and register in the Azure ML workspace described by this config.json (needs the 'azure' extra)",
    )
    parser.add_argument(
        "--if-empty",
        action="store_true",
        help="do nothing (exit 0) when the model name already has a registered version in the store",
    )
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on standard output")
    parser.add_argument(
        "--verbose", action="store_true", help="let MLflow's own logs and warnings through to standard error"
    )
    parser.set_defaults(handler=run)


def parse_alphas(values: list[str] | None) -> list[float]:
    """The `--alpha` values as finite positive floats, duplicates dropped; CommandError otherwise."""
    alphas: list[float] = []
    for text in values or []:
        try:
            value = float(text)
        except ValueError:
            raise CommandError(f"--alpha must be a positive number, got {text!r}", exit_code=2) from None
        if not math.isfinite(value) or value <= 0:
            raise CommandError(f"--alpha must be a positive number, got {text!r}", exit_code=2)
        if value not in alphas:
            alphas.append(value)
    return alphas


def run(args: argparse.Namespace) -> int:
    """The handler: validate, train, print the summary or the JSON object."""
    if args.task not in TASKS:
        raise CommandError(f"unknown --task {args.task!r} (choose from {', '.join(TASKS)})", exit_code=2)
    alphas = parse_alphas(args.alpha)
    if args.model_name is not None and not args.model_name.strip():
        raise CommandError("--model-name must not be empty", exit_code=2)

    from diabetes_trainer.errors import TrainerError, short_reason
    from diabetes_trainer.training import TrainOptions, train

    options = TrainOptions(
        task=args.task,
        alphas=alphas,
        model_name=args.model_name,
        experiment=args.experiment,
        tracking_uri=args.tracking_uri,
        workspace_config=args.workspace_config,
        if_empty=args.if_empty,
        verbose=args.verbose,
    )
    # Whatever a library prints goes to standard error: standard output holds only our answer.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = train(options)
    except TrainerError as exc:
        raise CommandError(str(exc)) from exc
    except Exception as exc:
        # Anything the trainer did not foresee still ends as one line, not a traceback.
        raise CommandError(f"training failed: {short_reason(exc)}") from exc

    if args.json:
        print(json.dumps(result.as_json()))
    elif result.skipped:
        print(
            f"{result.model_name} already has version {result.model_version} in {result.tracking_uri};"
            " nothing to train (--if-empty)"
        )
    else:
        print(summary(result))
    return 0


def summary(result: Any) -> str:
    """A few lines for a human: what was registered, how good it is, where to look."""
    metrics = ", ".join(f"{name} {value:.4g}" for name, value in result.metrics.items())
    stays = f"'champion' stays on version {result.champion_version}"
    champion = "it is now 'champion'" if result.champion else stays
    lines = [
        f"registered {result.model_name} version {result.model_version} ({champion})",
        f"  test {metrics}",
        f"  alpha {result.params.get('alpha')}, run {result.run_id} in experiment {result.experiment}",
    ]
    if result.sweep:
        tried = ", ".join(f"{entry['alpha']:g}" for entry in result.sweep)
        lines.append(f"  best of alphas {tried} by test {result.selection_metric} (parent run {result.parent_run_id})")
    lines.append(f"  tracking store {result.tracking_uri}")
    return "\n".join(lines)
