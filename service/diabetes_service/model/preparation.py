"""The model's preparation, run beside the supervisor's loop instead of blocking it.

First the prepared-model cache (resolution.plan): a model prepared before is ready at once, with
no child at all. Otherwise a child resolves a registry URI and imports MLflow and scikit-learn,
which takes seconds; while it runs the supervisor must still take a stop signal and stop at once,
so it polls this child like a worker. Meanwhile a linear model read from its artifact's arrays
(model/provisional.py) is served at once, until the child has verified it.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from diabetes_service.errors import ModelLoadError
from diabetes_service.model.resolution import (
    Plan,
    ResolvedModel,
    plan,
    preparation_command,
    preparation_outcome,
    report,
)
from diabetes_service.model.trust import TrustPolicy

log = logging.getLogger("diabetes_service.model")

PREPARE_TIMEOUT_SECONDS = 120


class Preparation:
    def __init__(
        self, uri: str, tracking_uri: str | None, workdir: Path, policy: TrustPolicy, skip: tuple[str, ...] = ()
    ) -> None:
        """Prepare `uri` into `workdir` (a folder of its own), unless it resolves to a version in `skip`."""
        self.uri = uri
        self.deadline = time.monotonic() + PREPARE_TIMEOUT_SECONDS
        self.proc: subprocess.Popen | None = None
        self.provisional: ResolvedModel | None = None  # handed out once, before the child's outcome
        # The cache for a start; a check for a new version (`skip`) always asks, in the child.
        self.plan = Plan(None, uri) if skip else plan(uri, tracking_uri, policy)
        if self.plan.ready is not None:
            return
        workdir.mkdir(parents=True, exist_ok=True)
        cmd, env = preparation_command(self.plan.child_uri, tracking_uri, workdir / "compiled", policy, skip=skip)
        # Files, not pipes: nobody reads while the child runs, and a pipe could fill and stall it.
        self._out = (workdir / "prepare.out").open("w+")
        self._err = (workdir / "prepare.err").open("w+")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err)
        if not skip:  # a first preparation: the child has started, the arrays are read meanwhile
            from diabetes_service.model.provisional import provisional_model

            self.provisional = provisional_model(self.plan, workdir / "provisional", policy)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def outcome(self) -> ResolvedModel | None:
        """The prepared model once the child is done, None while it runs.

        Raises ModelLoadError if it failed, Unchanged if the URI resolved to a skipped version. A
        provisional model comes first, while the child still runs: its outcome follows.
        """
        if self.provisional is not None:
            resolved, self.provisional = self.provisional, None
            log.info(
                "model %s: served from its artifact's arrays (sha256 %s) while scikit-learn verifies them",
                self.uri,
                resolved.sha256,
            )
            return resolved
        if self.proc is None:
            assert self.plan.ready is not None
            report(self.uri, self.plan.ready)
            return self.plan.ready
        code = self.proc.poll()
        if code is None:
            if time.monotonic() < self.deadline:
                return None
            self.stop()
            raise ModelLoadError(f"resolving {self.uri} took over {PREPARE_TIMEOUT_SECONDS}s")
        try:
            resolved = preparation_outcome(self.uri, code, _read(self._out), _read(self._err))
        finally:
            self._close()
        if self.plan.identity is not None:  # the child prepared a local copy of a registered version
            content = None if self.plan.located is None else self.plan.located.content
            resolved = replace(resolved, name=self.plan.identity[0], version=self.plan.identity[1], content=content)
        report(self.uri, resolved)
        return resolved

    def stop(self) -> None:
        """End the child now: the service is stopping, or has given up on it."""
        if self.proc is None:
            return
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


def prepare_into(model_path: Path, cache: Path, policy: TrustPolicy) -> ResolvedModel:
    """Prepare a local model now, in a child whose model cache is `cache`: what an image bakes.

    The entry lands in `cache/prepared/` (nothing, for a model that does not compile); a model that
    cannot be served raises ModelLoadError, as `diabetes serve` would stop on it.
    """
    with tempfile.TemporaryDirectory(prefix="diabetes-prepare-") as tmp:
        cmd, env = preparation_command(
            str(model_path), None, Path(tmp) / "compiled", policy, env={"DIABETES_MODEL_CACHE": str(cache)}
        )
        try:
            done = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=PREPARE_TIMEOUT_SECONDS, check=False
            )
        except subprocess.TimeoutExpired:
            raise ModelLoadError(f"preparing {model_path} took over {PREPARE_TIMEOUT_SECONDS}s") from None
        return preparation_outcome(str(model_path), done.returncode, done.stdout, done.stderr)


def _read(file: object) -> str:
    file.seek(0)  # type: ignore[attr-defined]
    return file.read()  # type: ignore[attr-defined]
