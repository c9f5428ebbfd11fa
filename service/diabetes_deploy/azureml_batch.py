"""`diabetes deploy azureml --v2 --batch`: the registered MLflow model as an Azure ML batch endpoint.

Azure's no-code MLflow batch deployment reads CSV only (Parquet is "not supported" without a
scoring script) and calls `predict` once per whole file (issue 23). So the deployment runs our
scoring entry (azureml_batch_entry/score.py), which scores each file of a mini-batch with
`diabetes batch`'s own code: bounded Arrow batches, the service's checks on every row, Parquet out,
bad rows set aside. The code folder uploaded with it holds the entry and copies of the packages it
imports (diabetes_batch, diabetes_service, diabetes_store), found without importing them:
diabetes_deploy and diabetes_batch are independent siblings (pyproject's import-linter contracts).
Everything is built as azure-ai-ml's own entities and sent through ``MLClient``, as azureml_v2.py does.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from diabetes_deploy.azureml import V2_DEPLOYMENT_NAME, model_version
from diabetes_deploy.azureml_v2 import _first_line  # one wording of Azure's errors for both endpoints
from diabetes_deploy.errors import DeployError
from diabetes_deploy.spec import DeploymentSpec

OutputAction = Literal["summary_only", "append_row"]

ENTRY = Path(__file__).with_name("azureml_batch_entry") / "score.py"
# What the entry imports, copied next to it into the uploaded code folder.
PACKAGES = ("diabetes_batch", "diabetes_service", "diabetes_store")
# The project's extras the entry needs installed in the job's environment.
EXTRAS = ("service", "batch")
# Azure's batch driver itself needs azureml-core in the job's environment (Azure ML's guide to
# deploying a custom model to a batch endpoint).
DRIVER_REQUIREMENTS = ("azureml-core",)
# Azure ML's curated base image for batch jobs (conda and the batch driver's MPI).
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


@dataclass(frozen=True)
class BatchOptions:
    """What the command line adds to the spec for a batch deployment."""

    compute: str = "cpu-cluster"  # an Azure ML compute cluster (AmlCompute) of the workspace
    instance_count: int = 1
    mini_batch_size: int = 4  # files per run() call
    max_concurrency_per_instance: int = 1
    output_action: OutputAction = "summary_only"  # the entry writes the Parquet files itself
    max_retries: int = 3
    retry_timeout_seconds: int = 300
    error_threshold: int = -1  # failed files tolerated before the job fails (-1: any)
    method: str | None = None  # predict (default), predict_proba, decision_function
    keep: tuple[str, ...] = ()  # columns carried into the output (an id)
    version: int | None = None


def _check(options: BatchOptions) -> None:
    positive = {
        "instance_count": options.instance_count,
        "mini_batch_size": options.mini_batch_size,
        "max_concurrency_per_instance": options.max_concurrency_per_instance,
        "retry_timeout_seconds": options.retry_timeout_seconds,
    }
    for name, value in positive.items():
        if value < 1:
            raise DeployError(f"--{name.replace('_', '-')}: {value} must be at least 1")
    if options.max_retries < 0:
        raise DeployError(f"--max-retries: {options.max_retries} must be 0 or more")
    if options.error_threshold < -1:
        raise DeployError(f"--error-threshold: {options.error_threshold} must be -1 (no limit) or more")
    if not options.compute:
        raise DeployError("--compute: a batch deployment needs a compute cluster of the workspace")


def endpoint_entity(spec: DeploymentSpec) -> Any:
    from azure.ai.ml.entities import BatchEndpoint

    return BatchEndpoint(
        name=spec.name,
        description=f"{spec.model.name} batch scoring (Parquet or CSV) from the no-code deployment spec",
        tags={"part-of": "diabetes-scoring"},
    )


def pip_requirements() -> list[str]:
    """The requirements of the project's service and batch extras, as installed here."""
    found: dict[str, None] = {}  # in order, once (the batch extra repeats the service's)
    for requirement in importlib.metadata.requires("diabetes-scoring") or []:
        marker = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", requirement)
        if marker is None or marker.group(1) not in EXTRAS or requirement.startswith("diabetes-scoring"):
            continue
        found[requirement.split(";")[0].strip() + _platform(requirement)] = None
    return list(found)


def _platform(requirement: str) -> str:
    rest = re.sub(r"(and\s+)?extra\s*==\s*['\"][\w-]+['\"]", "", requirement.split(";", 1)[1]).strip()
    return f"; {rest}" if rest else ""


def code_folder(into: Path) -> Path:
    """The entry and the packages it imports, copied into `into` (what Azure ML uploads)."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ENTRY, into / ENTRY.name)
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)  # a top-level package is found without being imported
        if spec is None or not spec.submodule_search_locations:
            raise DeployError(f"{name} is not installed: pip install 'diabetes-scoring[batch]'")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    return into


def deployment_entity(spec: DeploymentSpec, options: BatchOptions, code: Path) -> Any:
    from azure.ai.ml.constants import BatchDeploymentOutputAction
    from azure.ai.ml.entities import (
        BatchRetrySettings,
        CodeConfiguration,
        Environment,
        ModelBatchDeployment,
        ModelBatchDeploymentSettings,
    )

    _check(options)
    trust = spec.model
    env = {
        "DIABETES_BATCH_KEEP": ",".join(options.keep),
        # The spec's trust policy, read by the entry as the service reads its settings.
        "DIABETES_ALLOW_PICKLE": "1" if trust.allow_pickle else "0",
        "DIABETES_TRUSTED_TYPES": ",".join(trust.trusted_types),
        "DIABETES_ALLOW_VERSION_MISMATCH": "1" if trust.allow_version_mismatch else "0",
    }
    if trust.sha256:
        env["DIABETES_MODEL_SHA256"] = trust.sha256
    if options.method:
        env["DIABETES_BATCH_METHOD"] = options.method
    action = (
        BatchDeploymentOutputAction.SUMMARY_ONLY
        if options.output_action == "summary_only"
        else BatchDeploymentOutputAction.APPEND_ROW
    )
    return ModelBatchDeployment(
        name=V2_DEPLOYMENT_NAME,
        endpoint_name=spec.name,
        description=f"{spec.model.name}: Parquet-capable scoring with diabetes_batch",
        model=f"azureml:{spec.model.name}:{model_version(spec, options.version)}",
        code_configuration=CodeConfiguration(code=str(code), scoring_script=ENTRY.name),
        environment=Environment(
            name=f"{spec.name}-batch",
            image=BASE_IMAGE,
            conda_file={
                "name": "diabetes-batch",
                "channels": ["conda-forge"],
                "dependencies": ["python=3.11", "pip", {"pip": [*pip_requirements(), *DRIVER_REQUIREMENTS]}],
            },
        ),
        compute=options.compute,
        settings=ModelBatchDeploymentSettings(
            instance_count=options.instance_count,
            mini_batch_size=options.mini_batch_size,
            max_concurrency_per_instance=options.max_concurrency_per_instance,
            output_action=action,
            # append_row: run()'s lines gathered into one file; the predictions are the entry's Parquet files.
            output_file_name="summary.txt" if options.output_action == "append_row" else None,
            retry_settings=BatchRetrySettings(max_retries=options.max_retries, timeout=options.retry_timeout_seconds),
            error_threshold=options.error_threshold,
            logging_level="info",
            environment_variables=env,
        ),
    )


def deploy_batch(spec: DeploymentSpec, ml_client: Any, options: BatchOptions, work: Path) -> str:
    """Create or update the batch endpoint, then its deployment, then make it the default; the invocation URI."""
    endpoint = endpoint_entity(spec)
    deployment = deployment_entity(spec, options, code_folder(work / "code"))  # checked before anything is sent
    try:
        ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
        ml_client.batch_deployments.begin_create_or_update(deployment).result()
        # The default moves once the deployment is up, so a failed update leaves the old one in charge.
        endpoint.defaults = {"deployment_name": V2_DEPLOYMENT_NAME}
        ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
        uri = ml_client.batch_endpoints.get(spec.name).scoring_uri
    except DeployError:
        raise
    except Exception as exc:  # azure-core's HttpResponseError and friends carry the service's reason
        raise DeployError(f"Azure ML batch endpoint {spec.name}: {type(exc).__name__}: {_first_line(exc)}") from None
    if not uri:
        raise DeployError(f"Azure ML batch endpoint {spec.name} has no invocation URI: see its deployment logs")
    return str(uri)


def delete_batch(spec: DeploymentSpec, ml_client: Any) -> None:
    """Delete the batch endpoint and its deployments; the registered model stays."""
    try:
        ml_client.batch_endpoints.begin_delete(name=spec.name).result()
    except Exception as exc:
        raise DeployError(f"Azure ML batch endpoint {spec.name}: {type(exc).__name__}: {_first_line(exc)}") from None
