"""A safe rollout from the supervisor's side: the challenger's versions, and the registry decisions.

The challenger is prepared as the model is (supervisor/follow.py: trust, version check, the
prepared-model cache, `--follow`), announced beside it, and refused before any worker takes traffic
when its features are not the champion's: a challenger must take the champion's inputs.

The workers decide a rollback (scoring/rollout.py's guardrails) and write it on the heartbeat board;
the supervisor sees it on its tick and acts once, for the whole replica: a log line,
`diabetes_rollout_state{state="rolled_back"}`, and with `--rollback-alias` the challenger's alias
removed in the registry so every replica and person sees it. With `--promote-after`, once the
guardrails have held that long over at least `guard_min_calls` challenger calls, both counted from
when the challenger is live (warm in every worker taking connections, as each says on the board;
not from its announcement: preparing and warming it can take minutes), the champion's alias is
moved to the challenger's version and the model re-resolved at once (as on SIGHUP): this replica,
and every following one, swaps it in the usual way. Registry writes run in a child process
(diabetes_store.aliases), never blocking the supervisor's loop. A new challenger version (its alias
moved) starts a new rollout.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from diabetes_service import board
from diabetes_service.board import WorkerBoard
from diabetes_service.errors import ModelLoadError
from diabetes_service.model.resolution import ResolvedModel, announce, challenger_announcement
from diabetes_service.observability.metrics import Metrics
from diabetes_service.settings import ALIASED, FOLLOWABLE, ServiceSettings
from diabetes_service.supervisor.follow import ModelFollower

log = logging.getLogger("diabetes_service.supervisor")


class ChallengerFollower(ModelFollower):
    """The challenger's versions: prepared and followed as the model's are, announced beside them."""

    def __init__(
        self, settings: ServiceSettings, workdir: Path, workers: WorkerBoard, metrics: Metrics, champion: ModelFollower
    ) -> None:
        uri = settings.challenger or ""
        own = settings.model_copy(
            update={
                "model_uri": uri,
                "model_name": None,
                "model_version": None,
                "model_sha256": None,  # pins the champion's artifact
                "prepared_file": str(challenger_announcement(settings.prepared_file or workdir / "prepared.json")),
                "follow": settings.follow and bool(FOLLOWABLE.match(uri)),
            }
        )
        super().__init__(own, workdir / "challenger", workers, metrics)
        self.champion = champion

    def poll(self, now: float) -> None:
        if self.champion.current is not None:  # what the challenger's features are checked against
            super().poll(now)

    def _announce(self, resolved: ResolvedModel) -> None:
        champion = self.champion.current
        assert champion is not None
        mine, theirs = list(resolved.features), list(champion.features)
        if self.current is None and mine and theirs and mine != theirs:
            raise ModelLoadError(
                f"the challenger {self.settings.model_uri} (version {resolved.version}) takes the features {mine}, "
                f"not the champion's {theirs}: a challenger must take the champion's inputs (the same signature)"
            )
        if self.current is None:
            self._schedule()
        self.generation += 1
        self.current = replace(resolved, generation=self.generation)
        announce(self.current, Path(self.settings.prepared_file or ""))
        self.board.announce_challenger(self.generation)


class RolloutControl:
    """The rollout's state for the replica: its metrics, rollback and promotion in the registry."""

    def __init__(
        self, settings: ServiceSettings, workers: WorkerBoard, metrics: Metrics, champion: ModelFollower
    ) -> None:
        self.settings = settings
        self.board = workers
        self.metrics = metrics
        self.champion = champion
        self.challenger: ChallengerFollower | None = None
        self.state = settings.rollout or "off"
        self.seen = 0  # the challenger generation this rollout is about
        self.started: float | None = None  # when it went live in every worker: --promote-after's clock
        self.baseline = 0  # challenger calls before it
        self.change: tuple[subprocess.Popen, str, Callable[[], None] | None] | None = None
        self._publish()

    def follower(self, workdir: Path) -> ChallengerFollower:
        self.challenger = ChallengerFollower(self.settings, workdir, self.board, self.metrics, self.champion)
        return self.challenger

    def poll(self, now: float) -> None:
        challenger = self.challenger
        if challenger is None:
            return
        self._collect_change()
        if challenger.generation != self.seen:  # a first, or a new challenger version: a new rollout
            if self.seen and self.board.rollout_state() != board.ACTIVE:
                log.info("rollout: new challenger version %s: the rollout starts again", challenger.current.version)  # type: ignore[union-attr]
            self.seen = challenger.generation
            self.started, self.baseline = None, self.board.challenger_calls()
            self.board.set_rollout_state(board.ACTIVE)
            self.state = self.settings.rollout or "off"
            self._publish()
            return
        state = self.board.rollout_state()
        if self.started is None and state == board.ACTIVE and self.board.challenger_live(self.seen):
            # Warm in every worker and taking its share: the guardrails' time starts now, not at the
            # announcement (preparing and warming a version can take minutes).
            self.started, self.baseline = now, self.board.challenger_calls()
            if self.settings.promote_after:
                log.info("rollout: the challenger is live in every worker; --promote-after counts from now")
        if state == board.ROLLED_BACK and self.state != "rolled_back":
            self.state = "rolled_back"
            self._publish()
            version = challenger.current.version if challenger.current else "?"
            log.error("rollout: challenger version %s rolled back; the champion answers every call", version)
            aliased = ALIASED.match(self.settings.challenger or "")
            if self.settings.rollback_alias and aliased:
                self._change(aliased.group(1), aliased.group(2), None, f"removed alias @{aliased.group(2)}")
        elif state == board.ACTIVE and self._promotion_due(now):
            champion = ALIASED.match(self.settings.model_uri)
            assert champion is not None  # settings.py checks the URI
            assert challenger.current is not None
            version = challenger.current.version
            self.board.set_rollout_state(board.PROMOTED)
            self.state = "promoted"
            self._publish()
            log.info(
                "rollout: challenger version %s held its guardrails for %s over %d calls: promoting it",
                version,
                self.settings.promote_after,
                self.board.challenger_calls() - self.baseline,
            )
            self._change(
                champion.group(1),
                champion.group(2),
                version,
                f"moved alias @{champion.group(2)} to version {version}",
                then=self.champion.request_check,
            )

    def _promotion_due(self, now: float) -> bool:
        after = self.settings.promote_after_seconds
        return (
            after is not None
            and self.started is not None
            and now - self.started >= after
            and self.board.challenger_calls() - self.baseline >= self.settings.guard_min_calls
        )

    def _change(
        self, name: str, alias: str, version: str | None, done: str, then: Callable[[], None] | None = None
    ) -> None:
        from diabetes_store.tracking_uri import resolve_tracking_uri

        command = [sys.executable, "-m", "diabetes_store.aliases", resolve_tracking_uri(self.settings.tracking_uri)]
        command += [name, alias, *([version] if version else [])]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.change = (process, f"{done} of {name}", then)

    def _collect_change(self) -> None:
        if self.change is None or self.change[0].poll() is None:
            return
        process, done, then = self.change
        self.change = None
        error = process.stderr.read().strip() if process.stderr else ""
        if process.returncode:
            log.error("rollout: the registry change failed (%s): %s", done, error)
            return
        log.info("rollout: %s in the registry", done)
        if then is not None:
            then()

    def _publish(self) -> None:
        self.metrics.totals.rollout_state = self.state
        self.metrics.save()

    def stop(self) -> None:
        if self.change is not None:
            self.change[0].wait(timeout=30)
            self._collect_change()
