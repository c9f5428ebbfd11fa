"""Per-worker request counts in distributed runs, so a run can show every worker did its share.

Each worker adds its running total to the reports it sends the master; the master keeps the
latest total per worker, logs them at the end and writes them as JSON to
`DIABETES_LOADTEST_WORKER_REPORT` when that is set.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner

from diabetes_loadtest.users import SETTINGS

log = logging.getLogger(__name__)
REPORT_KEY = "diabetes_requests"

_sent = 0  # requests this process has made (a worker's running total)
_per_worker: dict[str, int] = {}  # on the master: the latest total reported by each worker


@events.request.add_listener
def count_request(**_: Any) -> None:
    """Count every request this process makes."""
    global _sent
    _sent += 1


@events.report_to_master.add_listener
def add_total_to_report(client_id: str, data: dict[str, Any]) -> None:
    """On a worker: attach the running total to the periodic report."""
    data[REPORT_KEY] = _sent


@events.worker_report.add_listener
def keep_worker_total(client_id: str, data: dict[str, Any]) -> None:
    """On the master: remember each worker's latest total."""
    if REPORT_KEY in data:
        _per_worker[client_id] = int(data[REPORT_KEY])


@events.quitting.add_listener
def write_worker_totals(environment: Environment, **_: Any) -> None:
    """On the master: log and (optionally) write the per-worker totals."""
    if not isinstance(environment.runner, MasterRunner):
        return
    log.info("requests per worker: %s", json.dumps(_per_worker, sort_keys=True))
    if SETTINGS.worker_report:
        SETTINGS.worker_report.write_text(json.dumps(_per_worker, indent=2, sort_keys=True) + "\n")
