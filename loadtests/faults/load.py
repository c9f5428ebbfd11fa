"""Load generators, each run in a process of its own so that one's timing never waits on another's GIL.

Every generator runs from `start_at` to `until` (time.monotonic() values: the clock is the same
in every process of the machine), so that several start together and the case can place its fault
at a known moment. Each returns its calls as plain tuples `(sent, done, outcome)`: `outcome` is the
HTTP status, or the name of the exception that ended the call (`ConnectionResetError`,
`TimeoutError`...).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from loadtests.faults.stats import Summary, summarize

Call = tuple[float, float, int | str]

# Failures a caller can safely retry at once: the connection went away or was refused, or the
# service said so (503/504). A timeout is not among them: the caller has already waited.
RETRYABLE_ERRORS = frozenset(
    {
        "ConnectionRefusedError",
        "ConnectionResetError",
        "RemoteDisconnected",
        "BrokenPipeError",
        "ConnectionAbortedError",
    }
)
RETRYABLE_STATUSES = frozenset({503, 504})
# After a failed call, before the next: a service that is gone must not turn a loop into a spin.
ERROR_PAUSE_SECONDS = 0.01
# How far behind its schedule a paced generator may fall and still catch up.
CATCH_UP_SECONDS = 0.05
# Fresh-connection calls under way at once, at most.
FRESH_CALL_THREADS = 64
# Time for spawned generators to import their libraries before the common start.
SPAWN_SECONDS = 2.5


def is_retryable(outcome: int | str) -> bool:
    return outcome in RETRYABLE_ERRORS or outcome in RETRYABLE_STATUSES


def score_body(rows: list[list[float]]) -> bytes:
    return json.dumps({"data": rows, "method": "predict"}).encode()


def _sleep_until(moment: float) -> None:
    pause = moment - time.monotonic()
    if pause > 0:
        time.sleep(pause)


def _post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> int:
    conn.request("POST", "/score", body, headers)
    answer = conn.getresponse()
    answer.read()
    if answer.will_close:
        conn.close()
    return answer.status


def keepalive_calls(
    port: int,
    body: bytes,
    start_at: float,
    until: float,
    *,
    rate: float | None = None,
    timeout: float = 10.0,
    key: str = "",
    stop_when_refused: bool = False,
) -> list[Call]:
    """POST /score on one kept-alive connection (a new one after an error), closed loop or at `rate` per second.

    `stop_when_refused`: end at the first refused connection (the service has gone).
    """
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    calls: list[Call] = []
    _sleep_until(start_at)
    next_at = start_at
    while True:
        if rate:
            # Open loop: calls late for their slots are sent at once, but a backlog older than
            # CATCH_UP_SECONDS is dropped rather than sent in a burst.
            next_at = max(next_at + 1 / rate, time.monotonic() - CATCH_UP_SECONDS)
            _sleep_until(next_at)
        sent = time.monotonic()
        if sent >= until:
            break
        try:
            outcome: int | str = _post(conn, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
            conn.close()
            time.sleep(ERROR_PAUSE_SECONDS)
        calls.append((sent, time.monotonic(), outcome))
        if stop_when_refused and outcome == "ConnectionRefusedError":
            break
    conn.close()
    return calls


def fresh_connection_calls(
    port: int, body: bytes, start_at: float, until: float, *, rate: float, timeout: float = 5.0, limit: int = 0
) -> list[Call]:
    """POST /score on a new connection each time, `rate` per second (at most `limit` calls if given).

    A new connection lands on any worker's socket: the kernel picks one by a hash of its addresses.
    Each call runs in a thread of its own, so that one left waiting does not hold back the next.
    """
    headers = {"Content-Type": "application/json", "Connection": "close"}

    def call() -> Call:
        sent = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            outcome: int | str = _post(conn, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
        finally:
            conn.close()
        return sent, time.monotonic(), outcome

    futures = []
    with ThreadPoolExecutor(FRESH_CALL_THREADS) as pool:
        next_at = start_at
        while next_at < until and (not limit or len(futures) < limit):
            _sleep_until(next_at)
            futures.append(pool.submit(call))
            next_at = max(next_at + 1 / rate, time.monotonic())
    return [future.result() for future in futures]


def client_calls(url: str, rows: list[list[float]], start_at: float, until: float, key: str = "") -> list[Call]:
    """`diabetes_client.Client.predict` in a closed loop, one row a call, with its default retries.

    Outcome 200 for an answer of one number, else the exception's name (or `wrong answer`).
    """
    from diabetes_client import Client, ScoringError

    calls: list[Call] = []
    with Client(url, api_key=key or None) as client:
        _sleep_until(start_at)
        index = 0
        while (sent := time.monotonic()) < until:
            row = rows[index % len(rows)]
            index += 1
            try:
                answer = client.predict([row])
                outcome: int | str = 200 if len(answer) == 1 and isinstance(answer[0], float) else "wrong answer"
            except ScoringError as exc:
                outcome = f"{type(exc).__name__}: {exc}"[:300]
            calls.append((sent, time.monotonic(), outcome))
    return calls


def soak_calls(port: int, body: bytes, start_at: float, until: float, *, rate: float) -> Summary:
    """`keepalive_calls` at `rate`, summed up in the generator's process: a long soak's calls do not travel."""
    calls = keepalive_calls(port, body, start_at, until, rate=rate)
    return summarize(calls)


class Generators:
    """Generators in spawned processes: `add` them (each waits for its `start_at`), fault meanwhile, `results()`."""

    def __init__(self, count: int) -> None:
        # Spawned, not forked: the caller may be a test process with threads of its own.
        self.pool = ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn"))
        self.futures: list[Future] = []

    def add(self, generator: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.futures.append(self.pool.submit(generator, *args, **kwargs))

    def results(self, timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        return [future.result(timeout=max(0.0, deadline - time.monotonic())) for future in self.futures]

    def __enter__(self) -> Generators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
