"""The image `diabetes deploy local` builds, built the same way, and the `docker run` that starts it."""

from __future__ import annotations

import os
from pathlib import Path

SPEC = """\
name: {name}
model: {{name: diabetes_model, version: 1, framework: ScikitLearn}}
resources: {{cpu_cores: {cpus}, memory_gb: 1}}
scale: {{replicas: 1}}
auth: {{enabled: false}}
"""


def build(model: Path, workdir: Path, *, name: str, cpus: int) -> tuple[str, Path]:
    """Build the image for the model folder `model` with `deploy local`'s own steps; its tag and spec."""
    from diabetes_deploy import docker

    spec = workdir / "deployment.yaml"
    spec.write_text(SPEC.format(name=name, cpus=cpus))
    tag = f"{name}:bench"
    with docker.build_context(spec, str(model)) as ctx:
        docker.build_image(ctx, tag, base_image=os.environ.get("DIABETES_BASE_IMAGE"))
    return tag, spec


def run_command(tag: str, spec_path: Path, port: int) -> list[str]:
    """`docker run` in the foreground with `deploy local`'s arguments (resources, read-only root...)."""
    from diabetes_deploy import docker
    from diabetes_deploy.spec import load_spec

    args = [arg for arg in docker.run_args(load_spec(spec_path), tag, port=port) if arg != "--detach"]
    return [docker.docker_bin(), *args]


def constant_command(tag: str, spec_path: Path, port: int, repo: Path, workers: int) -> list[str]:
    """The same `docker run`, but the container runs the constant-reply app (the repository's
    loadtests mounted read-only) after the same byte-code seeding as the image's own command."""
    command = run_command(tag, spec_path, port)
    image = command.pop()
    script = (
        "cp -R /opt/pycache/. /tmp/pycache/ 2>/dev/null; "
        f"exec /opt/venv/bin/python3 -m loadtests.bench.constant_server --host 0.0.0.0 --port 8080 --workers {workers}"
    )
    return [
        *command,
        "--volume", f"{repo / 'loadtests'}:/bench/loadtests:ro",
        "--env", "PYTHONPATH=/bench",
        "--entrypoint", "/bin/sh",
        image, "-c", script,
    ]  # fmt: skip
