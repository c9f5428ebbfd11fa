"""`diabetes deploy local`: the spec's model in a local Docker container.

The build context is assembled in a temporary folder (sources, Dockerfile, the spec, the model
resolved on the host and prepared there as `diabetes serve` would, and wheels the host downloads
first), so a build needs no network and never writes into the checkout. The model is resolved,
digested and prepared through `diabetes_service.deploy_api`, the service's one public module for
deploy. The prepared form (a linear model compiled to numpy arrays and verified) is baked into the
image beside the model: a new container starts from it without importing scikit-learn. The
container gets the spec's CPU and memory, the keys from DIABETES_API_KEYS (passed by name, never on
a command line), and is ready when /health/ready is.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from diabetes_deploy.errors import DeployError
from diabetes_deploy.spec import DeploymentSpec, serving_environment
from diabetes_service import deploy_api
from diabetes_service.deploy_api import BARE_PICKLE_NAMES, model_file

CONTAINER_PORT = 8080
# The project itself is built from the sources; the build backend follows pyproject.toml's own pins.
UNPINNED = frozenset({"diabetes-scoring", "pip", "setuptools", "wheel", "hatchling"})
SOURCES = ("client", "service", "trainer", "cli", "loadtests")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "reports")
# Target of the image: CPython 3.11 on glibc x86_64 (the slim image and the Debian stand-in).
WHEEL_TARGET = (
    "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
    *(arg for minor in range(36, 16, -1) for arg in ("--platform", f"manylinux_2_{minor}_x86_64")),
    "--platform", "manylinux2014_x86_64", "--platform", "linux_x86_64",
)  # fmt: skip
# Debian bookworm's glibc is 2.36: every manylinux tag up to it runs there.


def source_root() -> Path:
    """The checkout holding pyproject.toml and docker/Dockerfile (the image builds from sources)."""
    here = Path(__file__).resolve()
    for candidate in here.parents:
        if (candidate / "pyproject.toml").is_file() and (candidate / "docker" / "Dockerfile").is_file():
            return candidate
    raise DeployError("the image builds from a source checkout: run from a clone of the repository")


def docker_bin() -> str:
    found = shutil.which("docker")
    if not found:
        raise DeployError("docker not found on PATH (install Docker, or Debian's docker.io)")
    return found


# The README's one command that starts an engine where none runs (Local Docker container).
START_ENGINE = "export $(bash scripts/docker-engine.sh start)"


def daemon_problem(timeout: float = 15) -> str | None:
    """None when a Docker daemon answers; else why not, in one line. Asked before anything slow:
    without a daemon, `deploy local` used to download wheels for 12 s before finding out."""
    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=timeout)
    except DeployError as exc:
        return str(exc).removeprefix("docker version failed: ")
    return None


def require_daemon() -> None:
    """Raise a DeployError naming the command that starts an engine when no daemon answers."""
    problem = daemon_problem()
    if problem is not None:
        raise DeployError(f"no Docker daemon answers ({problem}); start one with `{START_ENGINE}` (README)")


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Something listens on `host:port` already (a `make run`, another container)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed connection's TIME_WAIT is no owner
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def docker(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """Run one docker command; its failure becomes a one-line DeployError."""
    try:
        proc = subprocess.run(
            [docker_bin(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        raise DeployError(f"docker {args[0]} did not finish within {timeout:g}s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise DeployError(f"docker {args[0]} failed: {last[0]}")
    return proc.stdout


def image_extras(spec: DeploymentSpec) -> tuple[str, ...]:
    """The extras the image installs: `service`, plus `payloads` (pyarrow) when the spec logs payloads.
    Only then: pyarrow is ~155 MB installed (measured here, its tests and headers left out), against the
    image's 350 MB budget."""
    return ("service", "payloads") if spec.payload_logging is not None else ("service",)


def service_requirements(root: Path, extras: tuple[str, ...] = ("service",)) -> list[str]:
    """The base dependencies plus the image's extras, and the `grpc` extra the image's build stage
    writes the gRPC schema with (in a throwaway virtualenv), as pyproject.toml lists them."""
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    listed = project["optional-dependencies"]
    return [*project["dependencies"], *(req for extra in (*extras, "grpc") for req in listed[extra])]


def host_constraints() -> list[str]:
    """Pin every distribution the host has installed to the host's version.

    The model was trained and tested here: the container then unpickles it with the same
    scikit-learn, scipy and numpy, not whatever the index serves today. Constraints only pin
    what the requirements pull in; the rest of the list is ignored.
    """
    from importlib import metadata

    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and dist.version and name.lower() not in UNPINNED:
            pins[name.lower()] = f"{name}=={dist.version}"
    return sorted(pins.values())


def download_wheels(root: Path, dest: Path, *, extras: tuple[str, ...] = ("service",), timeout: float = 900) -> int:
    """`pip download` the service's wheels (and the build backend) into `dest`; returns the count."""
    dest.mkdir(parents=True, exist_ok=True)
    requirements = service_requirements(root, extras)
    constraints = dest / "constraints.txt"
    constraints.write_text("\n".join(host_constraints()) + "\n")
    build_backend = ["hatchling>=1.27"]  # pyproject.toml's build backend, for the offline build
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", *WHEEL_TARGET, "--dest", str(dest), "-c", str(constraints),
           *requirements, *build_backend]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DeployError(f"pip download did not finish within {timeout:g}s") from None
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise DeployError(f"pip download of the service's wheels failed: {last[0]}")
    constraints.unlink()
    return len(list(dest.glob("*.whl")))


def resolve_model(model_uri: str, dest: Path, tracking_uri: str | None = None) -> Path:
    """Put the model into `dest` on the host: a local folder or model.pkl is copied, a
    `models:/`/`runs:/` URI is downloaded with MLflow from the tracking store."""
    local = Path(model_uri).expanduser()
    if local.is_dir():
        if model_file(local) is None:
            raise DeployError(f"{model_uri}: neither an MLflow model folder (MLmodel) nor a folder with model.pkl")
        shutil.copytree(local, dest, ignore=SKIP)
        return dest
    if local.is_file():
        dest.mkdir(parents=True)
        shutil.copy2(local, dest / local.name if local.name in BARE_PICKLE_NAMES else dest / "model.pkl")
        return dest
    if not model_uri.startswith(("models:/", "runs:/")):
        raise DeployError(f"{model_uri}: no such file or folder, and not a models:/ or runs:/ URI")
    try:
        import mlflow  # noqa: F401 - the resolver below downloads with it
    except ImportError:
        raise DeployError("resolving a models:/ URI needs MLflow (pip install 'diabetes-scoring[trainer]')") from None
    try:  # the service's own resolver, so deploy pins and caches exactly as serve does
        registered = deploy_api.resolve_registered(model_uri, tracking_uri)
    except deploy_api.ModelLoadError as exc:
        raise DeployError(f"cannot resolve {model_uri}: {exc}") from None
    source = registered.path
    if not (source / "MLmodel").is_file():
        # Some stores nest the artifacts one folder down: take the folder holding MLmodel.
        nested = next(iter(source.rglob("MLmodel")), None)
        if nested is None:
            raise DeployError(f"{model_uri}: downloaded, but it holds no MLmodel file")
        source = nested.parent
    shutil.copytree(source, dest, ignore=SKIP)
    if registered.name:
        # The record MLflow's own download leaves, which `registered_identity` reads: the image's
        # answers name the registered version (x-model-name, x-model-version).
        meta = f"model_name: {registered.name}\nmodel_version: '{registered.version}'\n"
        (dest / "registered_model_meta").write_text(meta)
    return dest


@dataclass(frozen=True)
class BuildContext:
    path: Path
    model_dir: str  # relative to `path`
    spec_file: str
    wheels: int
    model_name: str = ""
    model_version: str = ""
    model_sha256: str = ""  # of the artifact file: baked in as the pin the service checks
    prepared_dir: str = "docker/prepared"  # relative to `path`: the prepared-model entries to bake
    extras: str = "service"  # the project's extras the image installs (image_extras)


def prepare_model(model: Path, cache: Path, digest: str, trusted_types: tuple[str, ...]) -> None:
    """Prepare the model here, as the image's `diabetes serve` would (pinned to `digest`), into `cache`.

    A model that cannot be served fails the deployment now, before the image is built.
    """
    (cache / "prepared").mkdir(parents=True)  # the image copies it even when the model did not compile
    try:
        deploy_api.prepare(model, cache, digest, trusted_types)
    except deploy_api.ModelLoadError as exc:
        raise DeployError(f"the model cannot be served: {exc}") from None
    # Entries are private to their user on this machine (0700); the image's non-root user reads them.
    for path in (cache / "prepared").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _load_spec(spec_path: Path) -> DeploymentSpec:
    from diabetes_deploy.spec import load_spec

    return load_spec(spec_path)


def registered_identity(model: Path) -> tuple[str, str]:
    """Name and version from MLflow's `registered_model_meta` file, when the model came from the registry."""
    import yaml

    meta = model / "registered_model_meta"
    if not meta.is_file():
        return "", ""
    data = yaml.safe_load(meta.read_text()) or {}
    return str(data.get("model_name") or ""), str(data.get("model_version") or "")


@contextmanager
def build_context(
    spec_path: Path, model_uri: str, *, tracking_uri: str | None = None, wheels: bool = True
) -> Iterator[BuildContext]:
    """A temporary build context: the sources, the Dockerfile, the spec, the model and wheels."""
    root = source_root()
    with tempfile.TemporaryDirectory(prefix="diabetes-image-") as tmp:
        ctx = Path(tmp)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, ctx / name)
        for name in SOURCES:
            if (root / name).is_dir():
                shutil.copytree(root / name, ctx / name, ignore=SKIP)
            else:
                (ctx / name).mkdir()
        (ctx / "docker").mkdir()
        shutil.copy2(root / "docker" / "Dockerfile", ctx / "docker" / "Dockerfile")
        # The model first: a wrong URI fails fast, before any download.
        model = resolve_model(model_uri, ctx / "model", tracking_uri)
        digest = deploy_api.artifact_digest(model)
        # Then its preparation, before the wheels: a model that cannot be served fails fast too.
        spec = _load_spec(spec_path)
        prepare_model(model, ctx / "model-cache", digest, tuple(spec.model.trusted_types))
        shutil.copy2(spec_path, ctx / "deployment.yaml")
        extras = image_extras(spec)
        count = download_wheels(root, ctx / "docker" / "wheels", extras=extras) if wheels else 0
        (ctx / "docker" / "wheels").mkdir(exist_ok=True)
        name, version = registered_identity(model)
        yield BuildContext(
            ctx,
            model.relative_to(ctx).as_posix(),
            "deployment.yaml",
            count,
            name,
            version,
            digest,
            prepared_dir="model-cache/prepared",
            extras=",".join(extras),
        )


def build_args(ctx: BuildContext, base_image: str | None = None) -> dict[str, str]:
    """The Dockerfile's build args for `ctx`."""
    values = {
        "MODEL_DIR": ctx.model_dir,
        "SPEC_FILE": ctx.spec_file,
        "MODEL_NAME": ctx.model_name,
        "MODEL_VERSION": ctx.model_version,
        "MODEL_SHA256": ctx.model_sha256,
        "PREPARED_DIR": ctx.prepared_dir,
        "EXTRAS": ctx.extras,
    }
    if base_image:
        values["BASE_IMAGE"] = base_image
    return values


def build_image(ctx: BuildContext, tag: str, *, base_image: str | None = None, timeout: float = 1200) -> None:
    args = ["build", "--file", str(ctx.path / "docker" / "Dockerfile"), "--tag", tag]
    for key, value in build_args(ctx, base_image).items():
        args += ["--build-arg", f"{key}={value}"]
    docker(*args, str(ctx.path), timeout=timeout)


def run_args(spec: DeploymentSpec, image: str, *, port: int, host: str = "127.0.0.1", grpc_port: int = 0) -> list[str]:
    """`docker run` arguments for the spec: resources, keys by name, read-only root, grace period;
    the spec's gRPC port published on `grpc_port` when both are set."""
    memory_mb = int(spec.resources.memory_limit_gb * 1024)
    args = [
        "run", "--detach", "--name", spec.name,
        "--label", f"io.diabetes.service={spec.name}",
        "--publish", f"{host}:{port}:{CONTAINER_PORT}",
        "--cpus", f"{spec.resources.cpu_limit:g}",
        "--memory", f"{memory_mb}m",
        "--memory-reservation", f"{int(spec.resources.memory_gb * 1024)}m",
        "--read-only", "--tmpfs", "/tmp:rw,size=256m",  # noqa: S108 - the container's own tmpfs
        "--stop-timeout", str(spec.probes.termination_grace_period_seconds),
    ]  # fmt: skip
    if spec.grpc_port and grpc_port:
        args += ["--publish", f"{host}:{grpc_port}:{spec.grpc_port}"]
    if spec.payload_logging is not None and spec.payload_logging.dir.startswith("/"):
        # The root is read-only: the payload log gets a tmpfs of its own, which the non-root user writes
        # (a relative dir lands in /tmp, the WORKDIR). Its records live as long as the container.
        args += ["--tmpfs", f"{spec.payload_logging.dir}:rw,mode=1777,size=256m"]
    for name, value in serving_environment(spec).items():
        args += ["--env", f"{name}={value}"]
    if spec.auth.enabled:
        # By name only: docker reads the value from its own environment, so no key is on a command line.
        args += ["--env", "DIABETES_API_KEYS"]
    return [*args, image]


def container_state(name: str) -> str | None:
    try:
        return docker("inspect", "--format", "{{.State.Status}}", name).strip()
    except DeployError:
        return None


def container_logs(name: str, lines: int = 20) -> str:
    proc = subprocess.run(
        [docker_bin(), "logs", "--tail", str(lines), name], capture_output=True, text=True, timeout=30, check=False
    )
    return (proc.stdout + proc.stderr).strip()


def wait_ready(name: str, url: str, timeout: float) -> None:
    """Poll /health/ready until 200; stop early (with the container's last log line) if it exits."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if container_state(name) not in ("running", "created"):
            last = container_logs(name, 5).splitlines()[-1:] or ["no output"]
            raise DeployError(f"container {name} stopped before it was ready: {last[0]}")
        try:
            if requests.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise DeployError(f"container {name} was not ready within {timeout:g}s (see `docker logs {name}`)")


def remove(name: str, grace_seconds: int = 30) -> bool:
    """Stop (SIGTERM, then the grace period) and remove the container; False if there was none.

    A daemon that does not answer is an error, not "no container": nothing was stopped."""
    require_daemon()
    if container_state(name) is None:
        return False
    docker("stop", "--time", str(grace_seconds), name, timeout=grace_seconds + 30)
    docker("rm", "--force", name)
    return True
