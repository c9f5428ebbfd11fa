"""Before a load: ask the service whether it checks keys, and say when the run's key cannot match.

A key setting that cannot match spoils the whole run: with keys on and no key (or a wrong one)
every valid request is a 401; with keys off and a key given, the missing-key and wrong-key bodies
are answered 200 (issue 22: 30 silent seconds, failures, then "all 4 SLOs met"). Two requests tell,
before anything starts: `POST <host>/score` with an empty `data`, without a key and with the run's
key. The service checks the key before it reads the body, so a 401 means "keys on" (or "this key
is refused"), and any other 4xx (the empty data refused) means the call got past the key check.
Standard library only, like the other modules Locust loads.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from diabetes_loadtest.settings import auth_headers, score_url

TIMEOUT_SECONDS = 10.0
_EMPTY = json.dumps({"data": []}).encode()


class PreflightError(RuntimeError):
    """The service cannot be load-tested with these settings; the message says why and what to do."""


@dataclass(frozen=True)
class KeyCheck:
    """What the service said about keys: `keys_on`, and whether the run's key got through."""

    keys_on: bool
    key_given: bool

    def line(self) -> str:
        """One line for the console."""
        if not self.keys_on:
            return "keys: the service checks no API key; none sent"
        return "keys: the service checks API keys; the given key is accepted"


def _status(host: str, api_key: str | None) -> int:
    """The status of an empty-data `/score` call; 0 when there is no HTTP answer."""
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own --host
        score_url(host), data=_EMPTY, headers=auth_headers(api_key), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PreflightError(
            f"no answer from {score_url(host)} ({reason}): is the service running? (`make run` starts it)"
        ) from None


def _refused(status: int) -> bool:
    return status in (401, 403)


def check_keys(host: str, api_key: str | None) -> KeyCheck:
    """Ask the service; raise PreflightError when the run's key setting cannot match its keys."""
    without = _status(host, None)
    if without >= 500:
        raise PreflightError(f"{score_url(host)} answered {without} to an empty request: is the service healthy?")
    keys_on = _refused(without)
    if not keys_on and api_key:
        raise PreflightError(
            f"the service at {host} checks no API key, but a key was given: its missing-key and wrong-key "
            "checks would fail. Leave out --key and DIABETES_API_KEY, or start the service with "
            "DIABETES_API_KEYS=primary,secondary"
        )
    if keys_on and not api_key:
        raise PreflightError(
            f"the service at {host} requires an API key (it answered {without} without one): "
            "pass --key or set DIABETES_API_KEY"
        )
    if keys_on and _refused(_status(host, api_key)):
        raise PreflightError(f"the service at {host} refused the given key: check --key or DIABETES_API_KEY")
    return KeyCheck(keys_on=keys_on, key_given=bool(api_key))
