"""The Locust users: one class per scoring method, each mixing valid batches and a tagged share of invalid requests.

Request names group the statistics: `/score predict x10`, `/score predict_proba x100`,
`/score [invalid] short row`. Invalid requests carry the tag `invalid` (`--exclude-tags invalid`
leaves them out); answered with their 4xx they count as successes, answered otherwise as failures.
A failure the service did not cause by shedding load is marked a wrong answer (`checks.failure_text`).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

from locust import FastHttpUser, TaskSet, between, tag

from diabetes_loadtest.checks import check_predict, check_predict_proba, check_rejected, failure_text
from diabetes_loadtest.data import Body, build_bodies, load_rows
from diabetes_loadtest.invalid import InvalidRequest, invalid_requests
from diabetes_loadtest.settings import Settings, auth_headers, score_url

SETTINGS = Settings.from_env()
ROWS = load_rows(SETTINGS.data_path)
# Sampling, not secrecy: a seedable generator makes a run's bodies reproducible.
_RNG = random.Random(SETTINGS.seed)  # noqa: S311
BODIES = {method: build_bodies(ROWS, SETTINGS.batch_sizes, method, rng=_RNG) for method in ("predict", "predict_proba")}
# Round-robin rather than random: even a short run sends every kind of invalid request.
_INVALID = itertools.cycle(invalid_requests(SETTINGS.api_key))
VALID_WEIGHT, INVALID_WEIGHT = SETTINGS.task_weights

Check = Callable[[int, str, int], "str | None"]


def _post(user: ScoringUser, name: str, payload: str, headers: dict[str, str], judge: Callable) -> None:
    with user.client.post(user.score_url, data=payload, headers=headers, name=name, catch_response=True) as answer:
        status = answer.status_code or 0
        problem = judge(status, answer.text or "")
        if problem:
            answer.failure(failure_text(status, problem))
        else:
            answer.success()


def score_valid(user: ScoringUser) -> None:
    """Score one batch of example rows of a configured size and check the answer's shape."""
    size = _RNG.choice(SETTINGS.batch_sizes)
    body: Body = _RNG.choice(BODIES[user.method][size])
    _post(
        user,
        f"/score {user.method} x{size}",
        body.payload,
        user.headers,
        lambda status, text: user.check(status, text, body.rows),
    )


@tag("invalid")
def score_invalid(user: ScoringUser) -> None:
    """Send one invalid request; only a 4xx with a JSON message is a success."""
    case: InvalidRequest = next(_INVALID)
    _post(
        user,
        f"/score [invalid] {case.name}",
        case.payload,
        case.headers,
        lambda status, text: check_rejected(status, text, case.status, SETTINGS.api_key),
    )


def _weighted_tasks() -> list[TaskSet | Callable[..., Any]]:
    """Valid and invalid tasks repeated by their weight in percent, as Locust expands `{task: weight}`."""
    tasks: list[TaskSet | Callable[..., Any]] = []
    tasks += [score_valid] * VALID_WEIGHT
    tasks += [score_invalid] * INVALID_WEIGHT
    return tasks


class ScoringUser(FastHttpUser):
    """Shared behaviour: POST to `<--host>/score` (any path prefix kept) with the bearer key."""

    abstract = True
    method: str  # set by each concrete class, with its answer check
    check: Check
    wait_time = between(*SETTINGS.wait_seconds)
    tasks = _weighted_tasks()

    def on_start(self) -> None:
        """Resolve the URL and headers once per user."""
        self.score_url = score_url(self.host or "")
        self.headers = auth_headers(SETTINGS.api_key)


class PredictUser(ScoringUser):
    """Calls `predict`: answers are one number per row."""

    weight = SETTINGS.predict_weight
    method = "predict"
    check = staticmethod(check_predict)


class PredictProbaUser(ScoringUser):
    """Calls `predict_proba`: answers are one list of class probabilities per row.

    Skipped with `DIABETES_LOADTEST_PROBA=0`, or (the default, `auto`) when the service refuses
    `predict_proba` because its model has none (the Ridge regressor): see `diabetes_loadtest.probe`.
    """

    weight = 0 if SETTINGS.proba == "0" else SETTINGS.proba_weight
    method = "predict_proba"
    check = staticmethod(check_predict_proba)
