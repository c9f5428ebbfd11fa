"""`diabetes train`: fit the worked example, log it to MLflow and register it.

One alpha: one run, which is the registered version's run. Several alphas: a parent run with one
nested run per alpha; the child with the best test metric is registered. A run that fails is
marked FAILED by MLflow's run context, and nothing is registered.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diabetes_trainer import tracking
from diabetes_trainer.errors import TrainerError, short_reason
from diabetes_trainer.tasks import TASKS, Fitted, Task

DEFAULT_EXPERIMENT = "experiment_with_mlflow"
MODEL_ARTIFACT = "model"  # the MLflow sklearn model's name in the run
PICKLE_ARTIFACT = "model.pkl"  # the classic Azure example's joblib dump, at the run's artifact root
PLOT_ARTIFACT = "predicted_vs_actual.png"
# The training data's reference profile (reference.py): in the MLflow model's folder, so that every
# download of the registered version brings it, and at the run's root beside model.pkl.
PROFILE_ARTIFACT = "reference_profile.json"
DATASET_NAME = "sklearn-diabetes"
AZUREML_SCHEME = "azureml:"
# MLflow speaks to `azureml://` tracking URIs only through Microsoft's plugin, which pins an older
# MLflow: the `azure-train` extra brings it with the MLflow it allows, the base install stays current.
AZUREML_PLUGIN_HINT = (
    "MLflow has no tracking store for the workspace's URI {uri}: install the azureml-mlflow plugin"
    " with the MLflow it allows: pip install 'diabetes-scoring[azure-train]'"
)
NOISY_LOGGERS = ("mlflow", "alembic", "sqlalchemy", "urllib3", "azure", "azureml", "skops")


def _azureml_plugin_installed() -> bool:
    """Whether MLflow can find a tracking store for azureml:// (the plugin registers one by entry point)."""
    from importlib.metadata import entry_points

    return bool(entry_points(group="mlflow.tracking_store", name="azureml"))


@dataclass(frozen=True)
class TrainOptions:
    """What `diabetes train` was asked to do (already validated by the CLI)."""

    task: str = "regression"
    alphas: Sequence[float] = ()  # empty: the task's default alpha
    model_name: str | None = None  # None: the task's default model name
    experiment: str = DEFAULT_EXPERIMENT
    tracking_uri: str | None = None  # None: resolved as the contract says
    workspace_config: Path | None = None  # an Azure ML config.json instead of a tracking URI
    if_empty: bool = False
    verbose: bool = False


@dataclass
class TrainResult:
    """What the CLI prints; `as_json()` is the contract's object."""

    experiment: str
    model_name: str
    tracking_uri: str  # redacted
    run_id: str | None = None
    experiment_id: str | None = None
    model_version: int | None = None
    champion: bool = False
    champion_version: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    task: str = "regression"
    selection_metric: str = "mse"
    parent_run_id: str | None = None
    sweep: list[dict[str, Any]] = field(default_factory=list)
    skipped: bool = False

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "champion": self.champion,
            "params": self.params,
            "metrics": self.metrics,
            "task": self.task,
            "champion_version": self.champion_version,
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
        }
        if self.sweep:
            data["sweep"] = self.sweep
        if self.skipped:
            data["skipped"] = True
        return data


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Turn any library failure inside into one line that says what was being done."""
    try:
        yield
    except TrainerError:
        raise
    except Exception as exc:
        raise TrainerError(f"{what} failed: {short_reason(exc)}") from exc


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """Keep MLflow's and its dependencies' info logs, notices and warnings off standard error.

    Called after MLflow is imported: MLflow sets its logger's level when it is imported.
    """
    if verbose:
        yield
        return
    from mlflow.utils import logging_utils

    saved = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # MLflow's own notices ("Created version ...") go through its logging stream, not a logger.
    logging_utils.disable_logging()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging_utils.enable_logging()
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def resolve_store(options: TrainOptions) -> str:
    """The tracking URI: the workspace's when a config is given, else the contract's rule."""
    if options.workspace_config is not None:
        from diabetes_trainer.azure import workspace_tracking_uri

        return workspace_tracking_uri(options.workspace_config)
    return tracking.resolve_tracking_uri(options.tracking_uri)


def prepare_store(uri: str) -> None:
    """Fail fast on a dead server; make the embedded store's folder."""
    try:
        tracking.check_reachable(uri)
    except ConnectionError as exc:
        raise TrainerError(str(exc)) from exc
    if tracking.is_embedded(uri):
        home = tracking.project_dir()
        with step(f"creating the store folder {home}"):
            home.mkdir(parents=True, exist_ok=True)
    try:
        tracking.check_sqlite_writable(uri)
    except PermissionError as exc:
        raise TrainerError(str(exc)) from exc


def train(options: TrainOptions) -> TrainResult:
    """Run `diabetes train`; raises TrainerError with a one-line reason on any failure."""
    if options.task not in TASKS:
        raise TrainerError(f"unknown task {options.task!r} (choose from {', '.join(TASKS)})")
    task = TASKS[options.task]
    alphas = list(dict.fromkeys(options.alphas)) or [task.default_alpha]
    model_name = options.model_name or task.default_model_name

    tracking.bound_mlflow_client_env()
    uri = resolve_store(options)
    shown_uri = tracking.redact(uri)
    prepare_store(uri)

    with step("loading MLflow"):
        import mlflow
        from mlflow import MlflowClient

        from diabetes_trainer import registry

    with quiet(options.verbose):
        try:
            with step(f"opening the tracking store {shown_uri}"):
                mlflow.set_tracking_uri(uri)
                mlflow.set_registry_uri(uri)
                client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        except TrainerError as exc:
            if uri.startswith(AZUREML_SCHEME) and not _azureml_plugin_installed():
                raise TrainerError(AZUREML_PLUGIN_HINT.format(uri=shown_uri)) from exc
            raise
        result = TrainResult(options.experiment, model_name, shown_uri, task=task.name)
        result.selection_metric = task.selection_metric

        if options.if_empty:
            with step(f"looking up {model_name!r} in {shown_uri}"):
                latest = registry.has_versions(client, model_name)
            if latest is not None:
                result.skipped = True
                result.model_version = latest
                return result

        with step(f"opening experiment {options.experiment!r} in {shown_uri}"):
            experiment_id = ensure_experiment(client, options.experiment, tracking.artifact_location_for(uri))
        result.experiment_id = experiment_id

        from diabetes_trainer.data import load_split

        split = load_split()
        _run(mlflow, client, registry, task, alphas, split, experiment_id, model_name, result)
    return result


def ensure_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it (with its artifact location) when it does not exist."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location)
    if experiment.lifecycle_stage != "active":
        raise TrainerError(
            f"experiment {name!r} is deleted in this store: restore it (mlflow experiments restore"
            f" --experiment-id {experiment.experiment_id}) or pick another with --experiment"
        )
    return experiment.experiment_id


def _run(
    mlflow: Any,
    client: Any,
    registry: Any,
    task: Task,
    alphas: list[float],
    split: Any,
    experiment_id: str,
    model_name: str,
    result: TrainResult,
) -> None:
    """One run, or a parent with nested runs; register the winner inside the parent's context."""
    sweep = len(alphas) > 1
    run_name = f"{task.name}-sweep" if sweep else f"{task.name}-alpha-{alphas[0]:g}"
    with step("starting the run"):
        parent = mlflow.start_run(experiment_id=experiment_id, run_name=run_name)
    # The run context marks the run FAILED on any exception and FINISHED otherwise.
    with parent:
        winner_id: str | None = None
        try:
            if sweep:
                mlflow.set_tag("sweep", "true")
                with step("logging the sweep's parameters"):
                    mlflow.log_params(_split_params(task, split) | {"alphas": ",".join(f"{a:g}" for a in alphas)})
                children = []
                for alpha in alphas:
                    with mlflow.start_run(experiment_id=experiment_id, run_name=f"alpha-{alpha:g}", nested=True):
                        run_id, model, fitted = _log_model_run(mlflow, task, split, alpha)
                    children.append((run_id, model, alpha, fitted))
                    result.sweep.append({"run_id": run_id, "alpha": alpha, "metrics": fitted.metrics})
                winner_id, model, alpha, fitted = min(
                    children, key=lambda c: _sort_key(c[3].metrics[task.selection_metric])
                )
                with step("logging the sweep's winner"):
                    mlflow.log_param("best_alpha", alpha)
                    mlflow.set_tag("best_run_id", winner_id)
                    mlflow.log_metrics(fitted.metrics)
                result.parent_run_id = parent.info.run_id
            else:
                winner_id, model, fitted = _log_model_run(mlflow, task, split, alphas[0])

            with step(f"registering {model_name!r}"):
                registration = registry.register(
                    client,
                    name=model_name,
                    run_id=winner_id,
                    model_uri=model.model_uri,
                    model_id=getattr(model, "model_id", None),
                    metrics=fitted.metrics,
                    tags={"task": task.name, "alpha": repr(fitted.params["alpha"])},
                    selection_metric=task.selection_metric,
                    better=task.better,
                )
        except BaseException:
            if sweep and winner_id is not None:
                with contextlib.suppress(Exception):
                    client.set_terminated(winner_id, "FAILED")
            raise

    result.run_id = winner_id
    result.model_version = registration.version
    result.champion = registration.champion
    result.champion_version = registration.champion_version
    result.params = {**_split_params(task, split), **fitted.params}
    result.metrics = fitted.metrics


def _sort_key(value: float) -> float:
    import math

    return value if math.isfinite(value) else math.inf


def _split_params(task: Task, split: Any) -> dict[str, Any]:
    return {
        "task": task.name,
        "test_size": split.test_size,
        "random_state": split.random_state,
        "train_rows": len(split.x_train),
        "test_rows": len(split.x_test),
    }


def _log_model_run(mlflow: Any, task: Task, split: Any, alpha: float) -> tuple[str, Any, Fitted]:
    """Fit one model in the active run and log its params, metrics, data identity and artifacts."""
    import joblib
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from diabetes_trainer.data import FEATURES, SOURCE, TARGET
    from diabetes_trainer.plots import predicted_vs_actual
    from diabetes_trainer.reference import write_profile

    run_id = mlflow.active_run().info.run_id
    with step(f"fitting {task.name} with alpha={alpha:g}"):
        fitted = task.fit(split, alpha)
    with step("logging parameters and metrics"):
        mlflow.log_params({**_split_params(task, split), **fitted.params})
        mlflow.log_metrics(fitted.metrics)
        mlflow.set_tags({"task": task.name, "data.source": SOURCE, "data.sha256": split.sha256})
    with step("logging the data sets"):
        _log_datasets(mlflow, split, TARGET)
    with tempfile.TemporaryDirectory(prefix="diabetes-train-") as tmp:
        folder = Path(tmp)
        pickle_path = folder / PICKLE_ARTIFACT
        joblib.dump(fitted.estimator, pickle_path)
        title = f"{type(fitted.estimator).__name__}(alpha={alpha:g}) on the test rows"
        predicted_vs_actual(
            split.y_test.to_numpy(), fitted.y_score, folder / PLOT_ARTIFACT, title=title, ylabel=fitted.score_label
        )
        inputs = task.inputs(split.x_train)
        with step("profiling the training data"):
            profile = write_profile(fitted.estimator, inputs, folder, source=f"{SOURCE} (training rows)")
        with step("logging the run's artifacts"):
            mlflow.log_artifact(str(pickle_path))
            mlflow.log_artifact(str(folder / PLOT_ARTIFACT))
            mlflow.log_artifact(str(profile))
        profile_bytes = profile.read_bytes()
    with step("logging the MLflow model"):
        signature = infer_signature(inputs, fitted.estimator.predict(inputs))
        assert list(signature.inputs.input_names()) == list(FEATURES)
        model_info = mlflow.sklearn.log_model(
            fitted.estimator,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=inputs.head(5),
            # Explicit requirements: inferring them would spawn a slow subprocess for nothing.
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
    with step("logging the reference profile with the model"), tempfile.TemporaryDirectory() as tmp:
        # Into the logged model's own folder, before it is registered: a download of the version has it.
        kept = Path(tmp) / PROFILE_ARTIFACT
        kept.write_bytes(profile_bytes)
        mlflow.MlflowClient().log_model_artifact(model_info.model_id, str(kept))
    return run_id, model_info, fitted


def _log_datasets(mlflow: Any, split: Any, target: str) -> None:
    """The training and test sets as MLflow datasets (digest, schema, source) on the run."""
    import mlflow.data

    for context in ("train", "test"):
        dataset = mlflow.data.from_pandas(split.frame(context), name=f"{DATASET_NAME}-{context}", targets=target)
        mlflow.log_input(dataset, context="training" if context == "train" else "testing")
