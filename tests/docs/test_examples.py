"""Every example of the README and the docs that talks to the local service, run against a live one.

The service is a default `diabetes serve` (no flags but the ports) on the example model, trained into
a temporary embedded store, as `make run` leaves it. It listens on free ports, not 8080-8082 (other
checkouts' suites share the machine): the test rewrites `127.0.0.1:808x` in an example to those ports,
adds `--url` to a `diabetes score` that has none and sets `DIABETES_LOADTEST_HOST`, and names them
8080-8082 again in the output before comparing it; nothing else of the example changes. examples.py
holds the convention (skip markers, answer blocks, loose matching).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_train
from tests.docs.examples import LOCAL, PYTHON, SHELL, Example, blocks, matches, pages
from tests.support.processes import BIN, DIABETES, REPO, free_port, stop, wait_http

pytestmark = pytest.mark.slow

EXAMPLES = [example for page in pages(REPO) for example in blocks(page)]
SERVICE_EXAMPLES = [example for example in EXAMPLES if example.talks_to_service or example.skip]


@dataclass(frozen=True)
class Live:
    http: int
    grpc: int
    metrics: int
    bin: Path  # holds the curl that fails on a 4xx/5xx, for examples without an answer block

    def restore(self, output: str) -> str:
        """The example's output with the free ports named as the page names them (8080, 8081, 8082)."""
        for page_port, port in (("8080", self.http), ("8081", self.grpc), ("8082", self.metrics)):
            output = re.sub(rf"\b(127\.0\.0\.1|localhost):{port}\b", rf"\g<1>:{page_port}", output)
        return output

    def rewrite(self, code: str) -> str:
        ports = {"8080": self.http, "8081": self.grpc, "8082": self.metrics}
        code = LOCAL.sub(lambda m: f"{m[0].split(':')[0]}:{ports[m[0][-4:]]}", code)
        return re.sub(r"\bdiabetes score\b(?![^\n]*--url)", f"diabetes score --url http://127.0.0.1:{self.http}", code)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("docs-home")
    run_train(home)
    ports = Live(free_port(), free_port(), free_port(), tmp_path_factory.mktemp("docs-bin"))
    real_curl = shutil.which("curl")
    assert real_curl, "the docs' examples need curl"
    shim = ports.bin / "curl"
    shim.write_text(f'#!/bin/sh\nexec {real_curl} --fail-with-body "$@"\n')
    shim.chmod(0o755)
    # A default start: the suite's own defaults (pickles allowed, gRPC and metrics ports off) are not a
    # user's, and no key is configured.
    suite_defaults = ("DIABETES_ALLOW_PICKLE", "DIABETES_GRPC_PORT", "DIABETES_METRICS_PORT", "DIABETES_API_KEYS")
    env = {k: v for k, v in os.environ.items() if k not in suite_defaults}
    env["DIABETES_HOME"] = str(home)
    args = [DIABETES, "serve", "--port", str(ports.http), "--grpc-port", str(ports.grpc)]
    args += ["--metrics-port", str(ports.metrics)]
    log = home / "serve.log"
    proc = subprocess.Popen(
        args, env=env, cwd=home, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_http(f"http://127.0.0.1:{ports.http}/health/ready", timeout=120, proc=proc)
        yield ports
    finally:
        stop(proc)


def run(example: Example, live: Live) -> subprocess.CompletedProcess[str]:
    code = live.rewrite(example.code)
    path = [str(BIN), os.environ.get("PATH", "")]
    if example.answer is None:
        path.insert(0, str(live.bin))
    env = {**os.environ, "PATH": os.pathsep.join(path), "DIABETES_LOADTEST_HOST": f"http://127.0.0.1:{live.http}"}
    env.pop("DIABETES_API_KEYS", None)
    env.pop("DIABETES_API_KEY", None)
    cmd = ["bash", "-e", "-o", "pipefail", "-c", code] if example.lang in SHELL else [sys.executable, "-c", code]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.parametrize("example", SERVICE_EXAMPLES, ids=[e.id for e in SERVICE_EXAMPLES])
def test_example_answers_as_the_page_says(example: Example, live: Live) -> None:
    if example.skip:
        pytest.skip(f"{example.id}: {example.skip}")
    assert example.lang in SHELL | PYTHON, f"{example.id}: a {example.lang or 'plain'} fence is not run"
    done = run(example, live)
    shown = f"{example.id} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
    shown += f"\n--- stderr\n{done.stderr[-3000:]}"
    assert done.returncode == 0, shown
    if example.answer is not None:
        assert matches(example.answer, live.restore(done.stdout)), (
            f"{example.id} answered otherwise than the page says\n{shown}"
        )


def test_skip_markers_give_a_reason_and_precede_a_fence() -> None:
    errors = [e.marker_error for e in EXAMPLES if e.marker_error]
    for page in pages(REPO):
        lines = page.read_text().split("\n")
        for n, line in enumerate(lines):
            if line.strip().startswith("<!--") and "docs-test:" in line:
                rest = [text for text in lines[n + 1 :] if text.strip()]
                if not rest or not rest[0].lstrip().startswith("```"):
                    errors.append(f"{page.name}:{n + 1}: a skip marker must sit right before a fence")
    assert not errors, "\n".join(errors)


def test_the_pages_have_service_examples() -> None:
    """The glob reads the README and every docs page, and the run covers the protocols and the client."""
    run_pages = {e.page.name for e in SERVICE_EXAMPLES if not e.skip}
    assert {"README.md", "getting-started.md", "serving.md", "client.md"} <= run_pages, run_pages
    assert all(e.answer for e in SERVICE_EXAMPLES if e.page.name == "README.md" and not e.skip)
