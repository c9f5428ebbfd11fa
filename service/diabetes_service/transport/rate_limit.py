"""`--rate-limit RATE`: a token bucket per API key (per client address without keys), per replica.

One client must not take every slot of a replica (Azure ML endpoints answer 429 past their limits;
MLServer and KServe have none). The limit is per replica and shared by all of its workers: the
buckets live in anonymous shared memory the supervisor creates before it forks them (as board.py's
do), so a client whose connections land on different workers still has one bucket.

Each bucket is the generic cell rate algorithm's form of a token bucket: one number, the time at
which the bucket would be full again ("theoretical arrival time"). A call is admitted while that
time is at most a burst's worth of intervals ahead of now, and pushes it one interval further. A
full bucket holds a tenth of a second's calls (at least one): `50/s` lets 5 calls through at once,
then one every 20 ms, so no second admits more than 10% over the rate (a bucket of a whole second's
calls would let twice the rate through in the second it empties).

One number per bucket needs no lock: two workers admitting the same bucket within the same few
hundred nanoseconds may both take its last token (a call too many, not a call refused), and no
worker killed at the wrong moment can leave a lock held for the others. Measured with three forked
processes trying one key at ~6x its rate (tests/service/test_rate_limit.py): 319 calls admitted
for 320 due over 1.5 s at 200/s.

Without keys, clients are told apart by their address, hashed into ADDRESS_SLOTS buckets: two
addresses that hash alike share one (stricter for them, never looser). Behind a proxy every client
has the proxy's address: a limit for the whole cluster, or per user behind an ingress, belongs at
the ingress.
"""

from __future__ import annotations

import ctypes
import math
import time
import zlib
from multiprocessing.sharedctypes import RawArray

from diabetes_service.protocols.http import HTTPError
from diabetes_service.settings import per_second

ADDRESS_SLOTS = 4096
BURST_SECONDS = 0.1  # a full bucket holds this long's worth of calls (at least one)


class RateLimited(HTTPError):
    """429 with Retry-After (whole seconds); each protocol answers it in its own error form."""

    def __init__(self, rate: str, whose: str, retry_after: int) -> None:
        super().__init__(
            429,
            f"over the rate limit of {rate} for {whose}; retry after {retry_after} s",
            headers=[(b"retry-after", b"%d" % retry_after)],
        )
        self.retry_after = retry_after


class RateLimiter:
    def __init__(self, rate: str, keys: int) -> None:
        self.rate = rate
        self.keys = keys
        calls_per_second = per_second(rate)
        self.interval = 1.0 / calls_per_second
        burst = max(1.0, math.floor(calls_per_second * BURST_SECONDS))
        self.tolerance = (burst - 1) * self.interval
        # Key buckets first (0: primary, 1: secondary), then the addresses'. 0.0: full (long ago).
        # Read through a memoryview: ~0.2 µs a call less than ctypes' indexing of the RawArray.
        self._full_at = memoryview(RawArray(ctypes.c_double, keys + ADDRESS_SLOTS)).cast("B").cast("d")

    def matches(self, rate: str, keys: int) -> bool:
        return self.rate == rate and self.keys == keys

    def admit(self, key: int | None, client: tuple | None) -> None:
        """Take a token from the key's bucket (the client address's without a key: ASGI's `client`,
        or a socket's peer name), or raise RateLimited."""
        if key is not None:
            slot, whose = key, "this API key"
        else:
            address = str(client[0]) if client else ""
            slot = self.keys + zlib.crc32(address.encode()) % ADDRESS_SLOTS
            whose = "this client address"
        now = time.monotonic()  # one clock for every process
        full_at = self._full_at[slot]
        if full_at < now:
            full_at = now
        ahead = full_at - now - self.tolerance
        if ahead > 0:
            raise RateLimited(self.rate, whose, max(1, math.ceil(ahead)))
        self._full_at[slot] = full_at + self.interval


# Created by the supervisor before it forks its workers, which inherit it (supervisor.serve).
current: RateLimiter | None = None


def for_settings(rate: str | None, keys: int) -> RateLimiter | None:
    """The replica's limiter for `rate` (None: no limit): the inherited one, else a new one, kept."""
    global current
    if rate is None:
        return None
    if current is None or not current.matches(rate, keys):
        current = RateLimiter(rate, keys)
    return current
