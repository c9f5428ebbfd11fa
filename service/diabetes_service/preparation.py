"""The model's preparation child, run beside the supervisor's loop instead of blocking it.

Resolving a registry URI and importing MLflow and scikit-learn takes seconds; while it runs the
supervisor must still take a stop signal and stop at once, so it polls this child like a worker.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from diabetes_service.errors import ModelLoadError
from diabetes_service.resolution import ResolvedModel, preparation_command, preparation_outcome
from diabetes_service.trust import TrustPolicy

PREPARE_TIMEOUT_SECONDS = 120


class Preparation:
    def __init__(
        self, uri: str, tracking_uri: str | None, workdir: Path, policy: TrustPolicy, skip: tuple[str, ...] = ()
    ) -> None:
        """Prepare `uri` into `workdir` (a folder of its own), unless it resolves to a version in `skip`."""
        self.uri = uri
        workdir.mkdir(parents=True, exist_ok=True)
        cmd, env = preparation_command(uri, tracking_uri, workdir / "compiled", policy, skip=skip)
        # Files, not pipes: nobody reads while the child runs, and a pipe could fill and stall it.
        self._out = (workdir / "prepare.out").open("w+")
        self._err = (workdir / "prepare.err").open("w+")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err)
        self.deadline = time.monotonic() + PREPARE_TIMEOUT_SECONDS

    @property
    def pid(self) -> int:
        return self.proc.pid

    def outcome(self) -> ResolvedModel | None:
        """The prepared model once the child is done, None while it runs.

        Raises ModelLoadError if it failed, Unchanged if the URI resolved to a skipped version.
        """
        code = self.proc.poll()
        if code is None:
            if time.monotonic() < self.deadline:
                return None
            self.stop()
            raise ModelLoadError(f"resolving {self.uri} took over {PREPARE_TIMEOUT_SECONDS}s")
        try:
            return preparation_outcome(self.uri, code, _read(self._out), _read(self._err))
        finally:
            self._close()

    def stop(self) -> None:
        """End the child now: the service is stopping, or has given up on it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self._out.close()
            self._err.close()


def _read(file: object) -> str:
    file.seek(0)  # type: ignore[attr-defined]
    return file.read()  # type: ignore[attr-defined]
