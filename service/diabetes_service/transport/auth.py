"""API keys: a primary and a secondary, either accepted, so keys rotate without downtime."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from diabetes_service.protocols.http import HTTPError

UNAUTHORIZED_HEADERS = [(b"www-authenticate", b'Bearer realm="diabetes-service"')]


class KeyChecker:
    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: bytes | None) -> None:
        """Raise 401 unless `authorization` is `Bearer <one of the keys>`."""
        if not self._keys:
            return
        if not authorization:
            raise HTTPError(401, "missing API key: send 'Authorization: Bearer <key>'", headers=UNAUTHORIZED_HEADERS)
        scheme, _, presented = authorization.partition(b" ")
        # Compare against every key, without stopping at the first match, in constant time each.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented.strip(), key)
        if scheme.lower() != b"bearer" or not matched:
            raise HTTPError(401, "invalid API key", headers=UNAUTHORIZED_HEADERS)
