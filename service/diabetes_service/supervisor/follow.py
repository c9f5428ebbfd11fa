"""The served model's versions, from the supervisor's side: the first one, and the ones it follows.

The first preparation must succeed, or the service never serves. After that, with `--follow`
every `follow_interval_seconds` (and at once on SIGHUP or a signed webhook delivery, with or
without `--follow`) the URI is resolved again in a preparation child, off the serving path. A
version the workers have, or one refused before, is skipped before anything is downloaded, so a
refused version is not retried until the alias moves again; versions are told apart by their
content (diabetes_store.identity), so a version number the registry gives again to another model
is a new version. A new version that prepares (loads,
answers its warm-up, compiles) with the same features is announced: each worker loads it and
swaps it in between requests. One that fails, or whose features differ (unless
`follow_schema_changes`), is refused: the old version keeps serving, and the log and
`diabetes_model_swaps_total{outcome}` say why.

A first start may serve a provisional model (model/provisional.py) until the first preparation has
verified it: until then a failure stops the service as a first one does, and a verified form that
answers differently replaces it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from diabetes_service.board import WorkerBoard
from diabetes_service.errors import ModelLoadError
from diabetes_service.model.preparation import Preparation
from diabetes_service.model.resolution import ResolvedModel, Unchanged, announce, needs_mlflow
from diabetes_service.model.trust import TrustPolicy
from diabetes_service.observability.metrics import Metrics
from diabetes_service.settings import ServiceSettings

log = logging.getLogger("diabetes_service.supervisor")


class ModelFollower:
    def __init__(self, settings: ServiceSettings, workdir: Path, board: WorkerBoard, metrics: Metrics) -> None:
        self.settings = settings
        self.workdir = workdir
        self.board = board
        self.metrics = metrics
        self.generation = 0
        self.current: ResolvedModel | None = None
        self.unverified: ResolvedModel | None = None  # the provisional model served, until verified
        self.refused: set[str] = set()
        self.preparation: Preparation | None = None
        self.check_requested = False
        self.next_check = float("inf")
        self.policy = TrustPolicy.from_settings(settings)

    def start(self) -> None:
        self.preparation = Preparation(
            self.settings.model_uri, self.settings.tracking_uri, self.workdir / "gen-0", self.policy
        )

    def request_check(self) -> None:
        """SIGHUP or a webhook delivery: resolve again as soon as the current preparation is done."""
        self.check_requested = True

    def stop(self) -> None:
        if self.preparation is not None:
            self.preparation.stop()
            self.preparation = None

    def poll(self, now: float) -> None:
        """Advance: collect a finished preparation, or start a due one. ModelLoadError: the first failed."""
        if self.preparation is not None:
            self._collect()
        elif self.current is not None and (self.check_requested or now >= self.next_check):
            self.check_requested = False
            # By content where known: a version number given again to another model is a new version.
            have = self.current.content or self.current.version
            skip = (have, *sorted(self.refused)) if needs_mlflow(self.settings.model_uri) else ()
            self.preparation = Preparation(
                self.settings.model_uri,
                self.settings.tracking_uri,
                self.workdir / f"gen-{self.generation + 1}",
                self.policy,
                skip=skip,
            )

    def _collect(self) -> None:
        assert self.preparation is not None
        first = self.current is None or self.unverified is not None
        try:
            resolved = self.preparation.outcome()
        except Unchanged:
            resolved = None
            self.preparation = None
        except ModelLoadError as exc:
            self.preparation = None
            if first:
                raise
            self._refuse(exc.version, str(exc), exc.content)
            resolved = None
        if resolved is None:
            if self.preparation is None:
                self._schedule()
            return
        settings = self.settings
        resolved = replace(
            resolved, name=settings.model_name or resolved.name, version=settings.model_version or resolved.version
        )
        if resolved.provisional:  # the preparation goes on: its outcome is the verification
            log.info("%s version %s: artifact sha256 %s", resolved.name, resolved.version, resolved.sha256)
            self._announce(resolved)
            self.unverified = self.current
            return
        self.preparation = None
        if self.unverified is not None:
            self._verify(resolved)
            return
        if first:
            log.info("%s version %s: artifact sha256 %s", resolved.name, resolved.version, resolved.sha256)
            self._announce(resolved)
            return
        assert self.current is not None
        if list(resolved.features) != list(self.current.features) and not settings.follow_schema_changes:
            self._refuse(
                resolved.version,
                f"its features {list(resolved.features)} differ from the served {list(self.current.features)}"
                " (--follow-schema-changes allows it)",
                resolved.content,
            )
        else:
            log.info(
                "swapping in %s version %s (was version %s)", resolved.name, resolved.version, self.current.version
            )
            log.info("%s version %s: artifact sha256 %s", resolved.name, resolved.version, resolved.sha256)
            self._count("swapped")
            self._announce(resolved)
        self._schedule()

    def _verify(self, verified: ResolvedModel) -> None:
        from diabetes_service.model.provisional import same_answers

        provisional, self.unverified = self.unverified, None
        assert provisional is not None
        if same_answers(provisional, verified):
            log.info("%s version %s: verified, scikit-learn gives the answers served", verified.name, verified.version)
            return
        log.error(
            "%s version %s: scikit-learn's answers differ from those read from the artifact's arrays;"
            " swapping in the verified form",
            verified.name,
            verified.version,
        )
        self._count("swapped")
        self._announce(verified)

    def _announce(self, resolved: ResolvedModel) -> None:
        if self.current is None:
            self._schedule()
        self.generation += 1
        self.current = replace(resolved, generation=self.generation)
        announce(self.current, Path(self.settings.prepared_file or self.workdir / "prepared.json"))
        self.board.announce_generation(self.generation)

    def _refuse(self, version: str | None, reason: str, content: str | None = None) -> None:
        assert self.current is not None
        key = content or version  # its content where known: the number may be given again
        if key is not None:
            self.refused.add(key)
        what = f"version {version}" if version else "the new version"
        log.error(
            "refused %s of %s: %s; version %s keeps serving", what, self.current.name, reason, self.current.version
        )
        self._count("refused")

    def _count(self, outcome: str) -> None:
        swaps = self.metrics.totals.model_swaps
        swaps[outcome] = swaps.get(outcome, 0) + 1
        self.metrics.save()

    def _schedule(self) -> None:
        if self.settings.follow:
            self.next_check = time.monotonic() + self.settings.follow_interval_seconds
