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
