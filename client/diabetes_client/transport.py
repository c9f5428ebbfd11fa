"""The HTTP plumbing: one pooled session, retried by urllib3's ``Retry``.

Scoring is idempotent (the same rows always get the same answer), so a ``POST /score`` is safe to
send again after a connection error or a 429/502/503/504. A read timeout is *not* retried: the
caller's timeout is a promise about how long a call may take, and a service too slow to answer
once will not be quicker the second time.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import ReadTimeoutError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from diabetes_client.errors import UNAVAILABLE_STATUSES

# The longest single wait between two attempts, whether computed or asked for by Retry-After.
MAX_WAIT_SECONDS = 30.0


class ScoringRetry(Retry):
    """urllib3's ``Retry``, except that a read timeout ends the call at once."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        """Count one more attempt; a read timeout is re-raised instead of retried."""
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def parse_retry_after(self, retry_after: str) -> float:
        """The wait a ``Retry-After`` asks for, capped at ``backoff_max``: a server asking for an hour
        must not hang the caller for an hour."""
        return min(super().parse_retry_after(retry_after), self.backoff_max)


def retry_policy(retries: int, backoff: float) -> Retry:
    """Up to ``retries`` further attempts, sleeping ``backoff * 2**n`` (plus jitter) in between.

    ``Retry-After`` on a 429/503 is honoured in place of the computed sleep (up to 30 s).
    """
    return ScoringRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        redirect=0,
        status_forcelist=UNAVAILABLE_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD", "POST"}),
        backoff_factor=backoff,
        backoff_jitter=backoff,
        backoff_max=MAX_WAIT_SECONDS,
        respect_retry_after_header=True,
        # Hand the last 503 back rather than raising: its body says why, and becomes the error.
        raise_on_status=False,
    )


def retrying_adapter(retries: int, backoff: float, pool_size: int = 10) -> HTTPAdapter:
    """A pooled adapter applying ``retry_policy``."""
    return HTTPAdapter(max_retries=retry_policy(retries, backoff), pool_connections=1, pool_maxsize=pool_size)


def probe_adapter() -> HTTPAdapter:
    """An adapter that never retries: a probe reports the service's state now, not after a wait."""
    return HTTPAdapter(max_retries=Retry(total=0, read=False, redirect=0, raise_on_status=False))
