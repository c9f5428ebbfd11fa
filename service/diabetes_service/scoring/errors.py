"""Why a call was not scored, in no protocol's words: each protocol maps these to its own status.

The scoring side (the served-model state, the runner) and the request envelope raise them; the
HTTP protocols answer 503 with `Retry-After` for the first two and 408 for the third (as Azure ML
endpoints answer past their request timeout: clients do not retry it as they would a gateway's
504), gRPC UNAVAILABLE and DEADLINE_EXCEEDED. Nothing here knows HTTP or gRPC.
"""

from __future__ import annotations

# How long a caller refused with `Unavailable` should wait before retrying (HTTP's Retry-After).
RETRY_AFTER_SECONDS = 1


class Unavailable(Exception):
    """Not now, maybe in a moment: retry shortly (on this replica or another)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotReady(Unavailable):
    """The model is still loading, or the service is draining."""


class TooManyInFlight(Unavailable):
    """This worker already scores its share of the replica's concurrency limit."""


class ScoringTimeout(Exception):
    """A prediction took longer than the scoring timeout."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"scoring took longer than the {seconds:g} s scoring timeout; send fewer rows per request")
