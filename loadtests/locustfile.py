"""Locust load test of the diabetes scoring service: `locust -f loadtests/locustfile.py --host URL ...`.

Runs from any working directory (Locust puts this folder on `sys.path`, where the
`diabetes_loadtest` package and its data live). `--host` may carry a path prefix, such as an
Azure ML scoring URI's `/api/v1/service/<name>`: requests go to `<host>/score`. The key comes from
`DIABETES_API_KEY`; the other knobs from `DIABETES_LOADTEST_*` (see the README). Exits 0 when no
request failed: the SLO gate is `diabetes loadtest`.
"""

from diabetes_loadtest import probe, workers  # noqa: F401 - their event listeners register on import
from diabetes_loadtest.users import PredictProbaUser, PredictUser

__all__ = ["PredictProbaUser", "PredictUser"]
