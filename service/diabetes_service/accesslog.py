"""One JSON line per request on standard output: who asked what, how it went. Never bodies."""

from __future__ import annotations

import os
import time

import orjson


class AccessLog:
    def __init__(self, enabled: bool, fd: int = 1) -> None:
        self.enabled = enabled
        self._fd = fd

    def write(self, **record: object) -> None:
        if not self.enabled:
            return
        record["ts"] = round(time.time(), 3)
        # One write per line keeps lines whole when several workers share the same stdout.
        os.write(self._fd, orjson.dumps(record) + b"\n")
