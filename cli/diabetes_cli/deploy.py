"""`diabetes deploy`: the no-code deployment spec as a local container, Kubernetes manifests or Azure ML.

diabetes deploy local [--spec service/deployment.yaml] [--port 8080]     # build, run, wait ready
diabetes deploy local --down                                             # stop and remove
diabetes deploy kubernetes --out k8s/                                    # manifests + kustomization, no keys
diabetes deploy kubernetes --kserve --out k8s/                           # a KServe InferenceService
diabetes deploy azureml --workspace-config config.json --cluster aks     # Azure ML v1 (azureml-core)
diabetes deploy azureml --dry-run --out azureml/ --cluster aks           # deploymentconfig.json + v2 YAML
diabetes deploy azureml --delete --workspace-config config.json          # the example's clean-up
diabetes deploy azureml --v2 --model-version 1                           # Azure ML v2: managed online endpoint
diabetes deploy azureml --v2 --kubernetes-compute aks --serving container --image REG/NAME:TAG
diabetes deploy azureml --v2 --delete                                    # endpoint and deployments removed
diabetes deploy azureml --v2 --batch --compute cpu-cluster --keep id     # Azure ML v2: batch endpoint (Parquet)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from diabetes_cli.errors import CommandError

DEFAULT_SPEC = "service/deployment.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="deploy the spec's model: local Docker, Kubernetes manifests, Azure ML",
        description="Turn the no-code deployment spec into a running or deployable scoring service. "
        "API keys come from DIABETES_API_KEYS ('primary,secondary'), never from the spec.",
    )
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)

    local = targets.add_parser(
        "local",
        help="build the image and run it in local Docker",
        description="Build the scoring image (the spec's model resolved on this machine and baked in), run it "
        "with the spec's CPU and memory and the keys from DIABETES_API_KEYS, wait until it is ready and print "
        "the scoring URI. --down stops and removes it.",
    )
    _spec_arg(local)
    local.add_argument("--down", action="store_true", help="stop and remove the container, then exit")
    local.add_argument("--port", type=int, default=8080, help="host port on 127.0.0.1 (default: 8080)")
    local.add_argument(
        "--grpc-port",
        type=int,
        default=8081,
        help="host port for the spec's gRPC port (default: 8081; 0: not published)",
    )
    local.add_argument("--model-uri", help="serve this instead of the spec's model (models:/..., folder, model.pkl)")
    local.add_argument("--tracking-uri", help="where models:/ URIs are resolved (default: as for `diabetes train`)")
    local.add_argument("--image", help="image tag (default: NAME:local)")
    local.add_argument(
        "--base-image",
        default=os.environ.get("DIABETES_BASE_IMAGE"),
        help="base image build arg (default: $DIABETES_BASE_IMAGE, else the Dockerfile's python:3.11-slim)",
    )
    local.add_argument(
        "--no-wheels",
        action="store_true",
        help="let pip inside the build reach the package index instead of installing wheels this machine downloads",
    )
    local.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness (default: 180)")
    local.set_defaults(handler=run_local)

    k8s = targets.add_parser(
        "kubernetes",
        help="write Kubernetes manifests (Deployment, Service, HPA, PDB, kustomization)",
        description="Write complete manifests into --out with a kustomization.yaml beside them "
        "(`kubectl apply -k DIR`). No key is ever written there: the command prints the `kubectl create "
        "secret` line that makes the keys' Secret from DIABETES_API_KEYS, or --secret-out writes it to a "
        "file outside --out and outside any git working tree.",
    )
    _spec_arg(k8s)
    k8s.add_argument("--out", required=True, help="folder to write the manifests into")
    k8s.add_argument("--image", help="container image (default: NAME:local, the tag `deploy local` builds)")
    k8s.add_argument(
        "--secret-out",
        type=Path,
        metavar="FILE",
        help="also write the Secrets (keys from DIABETES_API_KEYS) to FILE, private to you: not inside --out "
        "or a git working tree; apply it with `kubectl apply -f FILE`",
    )
    k8s.add_argument(
        "--service-type", default="ClusterIP", choices=["ClusterIP", "LoadBalancer", "NodePort"], help="Service type"
    )
    k8s.add_argument(
        "--kserve",
        action="store_true",
        help="a KServe InferenceService (serving.kserve.io/v1beta1, protocolVersion v2) instead of Deployment+Service",
    )
    k8s.set_defaults(handler=run_kubernetes)

    azure = targets.add_parser(
        "azureml",
        help="deploy to Azure ML: an online endpoint (--v2, azure-ai-ml) or AKS (v1 SDK), or write its files",
        description="--v2: an online endpoint and deployment with azure-ai-ml's MLClient (managed, or Kubernetes "
        "with --kubernetes-compute), serving the registered MLflow model (--serving mlflow) or our image "
        "(--serving container --image); --v2 --batch: a batch endpoint whose deployment scores Parquet or CSV "
        "files with `diabetes batch`'s code. Without --v2, Azure ML v1's no-code path: Model.deploy with "
        "AksWebservice.deploy_configuration onto an AKS compute target. --dry-run --out DIR writes "
        "deploymentconfig.json (`az ml model deploy --dc`) and v2/endpoint.yaml + v2/deployment.yaml and sends "
        "nothing. --delete removes the service (v1) or the endpoint (v2, online or --batch).",
    )
    _spec_arg(azure)
    azure.add_argument("--workspace-config", default="config.json", help="Azure ML workspace config.json")
    azure.add_argument("--cluster", default="aks-cluster", help="AKS compute target name (default: aks-cluster)")
    azure.add_argument("--model-version", type=int, help="registered version (Azure ML has no MLflow aliases)")
    mode = azure.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="write the deployment files into --out only")
    mode.add_argument("--delete", action="store_true", help="delete the service (the registered model stays)")
    azure.add_argument("--out", help="folder for --dry-run")
    azure.add_argument("--v2", action="store_true", help="Azure ML v2 (azure-ai-ml): an online endpoint (or --batch)")
    azure.add_argument(
        "--kubernetes-compute", metavar="NAME", help="v2: a Kubernetes online endpoint on this attached AKS compute"
    )
    azure.add_argument(
        "--serving",
        choices=["mlflow", "container"],
        default="mlflow",
        help="v2: Azure's no-code serving of the registered MLflow model (default), or our image as a custom container",
    )
    azure.add_argument("--image", help="v2 --serving container: the image, in a registry the workspace can pull from")
    azure.add_argument("--instance-type", help="v2: VM size (managed) or the cluster's instance type (Kubernetes)")
    batch = azure.add_argument_group("v2 --batch: a batch endpoint scoring Parquet or CSV files with `diabetes batch`")
    batch.add_argument("--batch", action="store_true", help="v2: a batch endpoint and deployment instead of online")
    batch.add_argument("--compute", default="cpu-cluster", help="the compute cluster (default: cpu-cluster)")
    batch.add_argument("--instance-count", type=int, default=1, help="cluster nodes per job (default: 1)")
    batch.add_argument("--mini-batch-size", type=int, default=4, help="files per scoring call (default: 4)")
    batch.add_argument("--max-concurrency", type=int, default=1, help="scoring processes per node (default: 1)")
    batch.add_argument(
        "--output-action", choices=["summary_only", "append_row"], default="summary_only", help="Azure's summary file"
    )
    batch.add_argument("--max-retries", type=int, default=3, help="retries of a failed mini-batch (default: 3)")
    batch.add_argument("--retry-timeout", type=int, default=300, help="seconds per mini-batch (default: 300)")
    batch.add_argument("--error-threshold", type=int, default=-1, help="failed files before the job fails (-1: any)")
    batch.add_argument("--method", choices=["predict", "predict_proba", "decision_function"], help="(default: predict)")
    batch.add_argument("--keep", default="", metavar="COLS", help="comma-separated columns carried into the output")
    azure.set_defaults(handler=run_azureml)


def _spec_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        default=os.environ.get("DIABETES_SPEC") or DEFAULT_SPEC,
        help=f"the deployment spec (default: $DIABETES_SPEC, else {DEFAULT_SPEC})",
    )


def _load(path: str) -> Any:
    from diabetes_deploy.spec import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as exc:
        raise CommandError(str(exc)) from None


def _deploy_errors() -> type[Exception]:
    from diabetes_deploy.errors import DeployError

    return DeployError


def run_local(args: argparse.Namespace) -> int:
    from diabetes_deploy import docker

    spec = _load(args.spec)
    try:
        if args.down:
            removed = docker.remove(spec.name, spec.probes.termination_grace_period_seconds)
            print(f"removed {spec.name}" if removed else f"no container named {spec.name}")
            return 0
        keys = os.environ.get("DIABETES_API_KEYS", "")
        if spec.auth.enabled and not keys.strip(", "):
            raise CommandError(f"{args.spec}: auth is enabled: set DIABETES_API_KEYS='primary,secondary'")
        if not 0 < args.port < 65536:
            raise CommandError(f"--port {args.port}: must be 1-65535")
        if not 0 <= args.grpc_port < 65536:
            raise CommandError(f"--grpc-port {args.grpc_port}: must be 0-65535")
        _check_ports(spec, args)
        docker.require_daemon()  # before the model, the wheels and the build: seconds, not minutes
        image = args.image or local_image(spec)
        model_uri = args.model_uri or spec.model_uri
        with docker.build_context(
            Path(args.spec), model_uri, tracking_uri=args.tracking_uri, wheels=not args.no_wheels
        ) as ctx:
            print(f"building {image} with {model_uri} ...", file=sys.stderr)
            docker.build_image(ctx, image, base_image=args.base_image)
        # A previous run of the same service is replaced, as `az ml model deploy --overwrite` does.
        docker.remove(spec.name, spec.probes.termination_grace_period_seconds)
        docker.docker(*docker.run_args(spec, image, port=args.port, grpc_port=args.grpc_port))
        url = f"http://127.0.0.1:{args.port}"
        try:
            docker.wait_ready(spec.name, url, args.timeout)
        except _deploy_errors():
            docker.remove(spec.name, 5)
            raise
    except _deploy_errors() as exc:
        raise CommandError(str(exc)) from None
    print(f"{url}/score")
    return 0


def local_image(spec: Any) -> str:
    """The tag `deploy local` builds, and the image `deploy kubernetes` names without --image."""
    return f"{spec.name}:local"


def _check_ports(spec: Any, args: argparse.Namespace) -> None:
    """A host port something else holds is a clear error before the build; one held by this service's
    own earlier container is not (it is replaced), which only a daemon that answers can tell."""
    from diabetes_deploy import docker

    wanted = [("--port", args.port)]
    if spec.grpc_port and args.grpc_port:
        wanted.append(("--grpc-port", args.grpc_port))
    taken = [(flag, port) for flag, port in wanted if docker.port_taken(port)]
    if not taken:
        return
    if docker.daemon_problem() is None and docker.container_state(spec.name) is not None:
        return  # our own earlier container: `deploy local` replaces it
    flag, port = taken[0]
    raise CommandError(
        f"port {port} on 127.0.0.1 is taken (is `make run` still serving there? Ctrl+C stops it); "
        f"stop what listens there, or choose another host port with {flag}"
    )


def run_kubernetes(args: argparse.Namespace) -> int:
    from diabetes_deploy import kubernetes

    spec = _load(args.spec)
    image = args.image or local_image(spec)
    keys = os.environ.get(kubernetes.KEYS_ENV) or None
    out = Path(args.out)
    try:
        secret_file = kubernetes.write_secrets(spec, args.secret_out, out, keys) if args.secret_out else None
        written = kubernetes.write(spec, out, image, service_type=args.service_type, kserve=args.kserve)
    except _deploy_errors() as exc:
        raise CommandError(str(exc)) from None
    for path in written:
        print(path)
    if secret_file is not None:
        print(f"the Secrets are in {secret_file} (not in {out}): `kubectl apply -f {secret_file}`", file=sys.stderr)
    elif commands := kubernetes.secret_commands(spec):
        print(f"no key is written into {out}: before `kubectl apply -k {out}`, create the Secrets:", file=sys.stderr)
        for command in commands:
            print(f"  {command}", file=sys.stderr)
    return 0


def run_azureml(args: argparse.Namespace) -> int:
    from diabetes_deploy import azureml

    spec = _load(args.spec)
    if args.batch and (not args.v2 or args.dry_run):
        raise CommandError("--batch needs --v2 (a batch endpoint is an Azure ML v2 resource) and no --dry-run")
    try:
        if args.dry_run:
            if not args.out:
                raise CommandError("--dry-run needs --out DIR")
            for path in azureml.write_dry_run(spec, Path(args.out), cluster=args.cluster, version=args.model_version):
                print(path)
            return 0
        if args.v2:
            return _run_azureml_v2(args, spec)
        if args.delete:
            azureml.delete_v1(spec, workspace_config=args.workspace_config)
            print(f"deleted {spec.name}")
            return 0
        uri = azureml.deploy_v1(
            spec, workspace_config=args.workspace_config, cluster=args.cluster, version=args.model_version
        )
    except _deploy_errors() as exc:
        raise CommandError(str(exc)) from None
    print(uri)
    return 0


def _run_azureml_v2(args: argparse.Namespace, spec: Any) -> int:
    from diabetes_deploy import azureml_v2

    if args.batch:
        return _run_azureml_batch(args, spec)

    options = azureml_v2.V2Options(
        serving=args.serving,
        kubernetes_compute=args.kubernetes_compute,
        image=args.image,
        instance_type=args.instance_type,
        version=args.model_version,
    )
    if args.delete:
        azureml_v2.delete_v2(spec, azureml_v2.ml_client_from_config(args.workspace_config))
        print(f"deleted endpoint {spec.name}")
        return 0
    # The entities are built (and the spec checked) before the workspace is opened.
    azureml_v2.deployment_entity(spec, options)
    print(azureml_v2.deploy_v2(spec, azureml_v2.ml_client_from_config(args.workspace_config), options))
    return 0


def _run_azureml_batch(args: argparse.Namespace, spec: Any) -> int:
    import tempfile

    from diabetes_deploy import azureml_batch, azureml_v2

    options = azureml_batch.BatchOptions(
        compute=args.compute,
        instance_count=args.instance_count,
        mini_batch_size=args.mini_batch_size,
        max_concurrency_per_instance=args.max_concurrency,
        output_action=args.output_action,
        max_retries=args.max_retries,
        retry_timeout_seconds=args.retry_timeout,
        error_threshold=args.error_threshold,
        method=args.method,
        keep=tuple(name.strip() for name in args.keep.split(",") if name.strip()),
        version=args.model_version,
    )
    if args.delete:
        azureml_batch.delete_batch(spec, azureml_v2.ml_client_from_config(args.workspace_config))
        print(f"deleted batch endpoint {spec.name}")
        return 0
    with tempfile.TemporaryDirectory(prefix="diabetes-azureml-batch-") as work:
        # The entities are built (and the spec and flags checked) before the workspace is opened.
        azureml_batch.deployment_entity(spec, options, azureml_batch.code_folder(Path(work) / "code"))
        client = azureml_v2.ml_client_from_config(args.workspace_config)
        print(azureml_batch.deploy_batch(spec, client, options, Path(work)))
    return 0
