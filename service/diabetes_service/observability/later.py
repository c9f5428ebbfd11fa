"""Work done once per short window instead of once per request.

A request only records what happened (a counter, a log line); the first record after a flush asks
for the next one `delay` seconds later on the worker's event loop. Under load one flush then
carries many requests' worth of records, at the price of that much delay before they show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class FlushLater:
    def __init__(self, flush: Callable[[], None], delay: float) -> None:
        self._flush = flush
        self._delay = delay
        self._pending = False

    def request(self) -> None:
        """Ask for a flush within `delay` seconds; outside an event loop, flush at once."""
        if self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        self._pending = True
        loop.call_later(self._delay, self._run)

    def _run(self) -> None:
        self._pending = False
        self._flush()
