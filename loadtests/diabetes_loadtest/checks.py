"""Checks on every answer: each returns None when the answer is right, else the reason it is not.

Pure functions of (status, body text, ...), so they are tested without a load run. A failed check
is one of two things: the service shed the load or answered nothing (no answer, 408, 429, 503,
504: the `failure_ratio` SLO's budget), or it gave a wrong answer (a 200 where a 4xx was due, a
5xx for a caller mistake, a wrong shape). Wrong answers are reported with WRONG_ANSWER in front,
and the gate of `diabetes loadtest` fails on any of them, whatever the failure ratio.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Statuses of a service under too much load (or none at all): failures, but not wrong answers.
LOAD_STATUSES = frozenset({0, 408, 429, 503, 504})
WRONG_ANSWER = "wrong answer: "
# Probabilities are computed in float64 and serialised; allow rounding, not a wrong distribution.
PROBA_SUM_TOLERANCE = 1e-6


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except ValueError:
        return None, "answer is not JSON"


def _expect_list(status: int, text: str, rows: int) -> tuple[list | None, str | None]:
    if status != 200:
        return None, f"expected 200, got {status}"
    answer, problem = _json(text)
    if problem:
        return None, problem
    if not isinstance(answer, list):
        return None, f"expected a JSON list, got {type(answer).__name__}"
    if len(answer) != rows:
        return None, f"expected {rows} entries, got {len(answer)}"
    return answer, None


def check_predict(status: int, text: str, rows: int) -> str | None:
    """A `predict` answer: 200 and a list of `rows` finite numbers."""
    answer, problem = _expect_list(status, text, rows)
    if problem or answer is None:
        return problem
    for i, value in enumerate(answer):
        if not _is_number(value):
            return f"entry {i} is not a finite number"
    return None


def check_predict_proba(status: int, text: str, rows: int) -> str | None:
    """A `predict_proba` answer: 200 and `rows` lists of the same number (>= 2) of probabilities summing to 1."""
    answer, problem = _expect_list(status, text, rows)
    if problem or answer is None:
        return problem
    width = len(answer[0]) if answer and isinstance(answer[0], list) else None
    for i, probs in enumerate(answer):
        if not isinstance(probs, list) or len(probs) < 2:
            return f"entry {i} is not a list of class probabilities"
        if len(probs) != width:
            return f"entry {i} has {len(probs)} classes, entry 0 has {width}"
        if not all(_is_number(p) and 0.0 <= p <= 1.0 for p in probs):
            return f"entry {i} holds a value outside [0, 1]"
        if abs(math.fsum(probs) - 1.0) > PROBA_SUM_TOLERANCE:
            return f"entry {i} sums to {math.fsum(probs)!r}, not 1"
    return None


def check_rejected(status: int, text: str, expected_status: int | None, secret: str | None) -> str | None:
    """An invalid body's answer: a 4xx (exactly `expected_status` when given) with a JSON `message`.

    The answer must not carry `secret` (the API key): error bodies never echo keys.
    """
    if not 400 <= status < 500:
        return f"expected a 4xx, got {status}"
    if expected_status is not None and status != expected_status:
        return f"expected {expected_status}, got {status}"
    answer, problem = _json(text)
    if problem:
        return problem
    if not isinstance(answer, dict) or not isinstance(answer.get("message"), str) or not answer["message"]:
        return 'error answer has no "message"'
    if secret and secret in text:
        return "error answer echoes the API key"
    return None


def failure_text(status: int, problem: str) -> str:
    """The failure as Locust records it: marked WRONG_ANSWER unless the service only shed the load."""
    return problem if status in LOAD_STATUSES else WRONG_ANSWER + problem
