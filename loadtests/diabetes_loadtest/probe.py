"""`DIABETES_LOADTEST_PROBA=auto`: ask the service once whether its model has `predict_proba`.

The Ridge regressor has none and the contract makes `predict_proba` on it a 4xx. Rather than count
every such call as a failure (or as a success it is not), the master (or the single local
process) sends one `predict_proba` request at start-up and, on a 4xx, leaves `PredictProbaUser`
out of the run. Workers take the user classes the master hands them, so they do not probe.

The same listener warns when the run's key cannot match the service's keys (preflight.py): a plain
`locust -f loadtests/locustfile.py` run then says why its key checks fail before they do.
`diabetes loadtest` stops on it before starting Locust at all.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from diabetes_loadtest.preflight import PreflightError, check_keys
from diabetes_loadtest.settings import auth_headers, score_url
from diabetes_loadtest.users import ROWS, SETTINGS, PredictProbaUser

log = logging.getLogger(__name__)
PROBE_TIMEOUT_SECONDS = 10.0


def has_predict_proba(host: str, api_key: str | None) -> bool | None:
    """True / False when the service answers 200 / a 4xx (other than 401/403); None when it cannot tell."""
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own --host
        score_url(host),
        data=json.dumps({"data": ROWS[:1], "method": "predict_proba"}).encode(),
        headers=auth_headers(api_key),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_SECONDS) as answer:  # noqa: S310
            return answer.status == 200
    except urllib.error.HTTPError as exc:
        return False if 400 <= exc.code < 500 and exc.code not in (401, 403) else None
    except (urllib.error.URLError, OSError):
        return None


@events.init.add_listener
def warn_when_the_key_cannot_match(environment: Environment, **_: object) -> None:
    """On the master or a local run, say at once when the run's key cannot match the service's keys."""
    if isinstance(environment.runner, WorkerRunner) or not environment.host:
        return
    try:
        check_keys(environment.host, SETTINGS.api_key)
    except PreflightError as exc:
        log.warning("%s", exc)


@events.init.add_listener
def drop_proba_user_when_unsupported(environment: Environment, **_: object) -> None:
    """On the master or a local run, drop `PredictProbaUser` when the model has no `predict_proba`."""
    if SETTINGS.proba != "auto" or isinstance(environment.runner, WorkerRunner) or not environment.host:
        return
    if PredictProbaUser not in environment.user_classes:
        return
    supported = has_predict_proba(environment.host, SETTINGS.api_key)
    if supported is False and len(environment.user_classes) > 1:
        environment.user_classes.remove(PredictProbaUser)
        log.warning("the model has no predict_proba (the service answered 4xx): PredictProbaUser skipped")
    elif supported is None:
        log.warning("could not tell whether the model has predict_proba: PredictProbaUser kept")
