"""A real `mlflow server` on loopback, with the worked example registered through it.

What a team's registry is: versions registered over REST, files behind the server's artifact proxy
(`mlflow-artifacts:/`), which `diabetes serve` reads without MLflow (diabetes_store.registry_rest).
The start-up bench times a first start from it beside the embedded store's.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loadtests.bench.processes import free_port
from loadtests.bench.store import BIN, Store, clean_env

READY_TIMEOUT_SECONDS = 180.0


@dataclass(frozen=True)
class ServerStore(Store):
    """The worked example registered on the tracking server at `uri` (trained from `home`)."""

    uri: str = ""

    @property
    def tracking_uri(self) -> str:
        return self.uri


@contextlib.contextmanager
def running(folder: Path) -> Iterator[str]:
    """`mlflow server` with its own SQLite backend and artifact folder in `folder`; its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    with open(folder / "server.log", "ab") as log:
        proc = subprocess.Popen(
            cmd, env=clean_env(), cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: see {folder / 'server.log'}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def train(home: Path, uri: str) -> ServerStore:
    """`diabetes train --json --tracking-uri uri`: the worked example registered on the server."""
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(BIN / "diabetes"), "train", "--json", "--tracking-uri", uri],
        env=clean_env(DIABETES_HOME=str(home)),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"diabetes train --tracking-uri {uri} failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    return ServerStore(home, result["model_name"], int(result["model_version"]), uri=uri)
