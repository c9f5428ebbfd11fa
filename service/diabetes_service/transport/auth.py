"""API keys: a primary and a secondary, either accepted, so keys rotate without downtime."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from diabetes_service.protocols.http import HTTPError

UNAUTHORIZED_HEADERS = [(b"www-authenticate", b'Bearer realm="diabetes-service"')]
# `Authorization: <key>` (the scheme left out) is the commonest mistake: say so.
_NO_BEARER = "invalid API key: did you mean 'Authorization: Bearer <key>'? (the Bearer scheme is missing)"


class KeyChecker:
    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: bytes | None) -> int | None:
        """Raise 401 unless `authorization` is `Bearer <one of the keys>`; the key's index (0: primary),
        which the rate limit counts by, or None when no keys are configured."""
        if not self._keys:
            return None
        if not authorization:
            raise HTTPError(401, "missing API key: send 'Authorization: Bearer <key>'", headers=UNAUTHORIZED_HEADERS)
        scheme, _, presented = authorization.partition(b" ")
        # Compare against every key, without stopping at the first match, in constant time each.
        matched = None
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(presented.strip(), key):
                matched = index
        if scheme.lower() != b"bearer" or matched is None:
            # The hint depends on the header's form only, never on whether the key would have matched.
            message = "invalid API key" if scheme.lower() == b"bearer" else _NO_BEARER
            raise HTTPError(401, message, headers=UNAUTHORIZED_HEADERS)
        return matched
