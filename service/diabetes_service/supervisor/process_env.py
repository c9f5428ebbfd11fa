"""Defaults for the environment of the serving processes, set before the libraries reading it load.

Each is a library's own variable, set only when the operator has not set it:
- OPENBLAS_NUM_THREADS=1: the service runs one worker per core, so BLAS threads inside a worker
  would only compete with the other workers; and OpenBLAS starting them (threads and buffers) when
  numpy is first imported cost ~60 ms of every start on 2 cores.
- PYDANTIC_DISABLE_PLUGINS=__all__: the service uses no pydantic plugin, and looking for them (every
  installed distribution's entry points, the first time a model class is built) cost ~50 ms.
Both are read once, when numpy loads and when pydantic builds its first model: `apply()` must run
before either happens, which is why `diabetes serve` calls it first.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "OPENBLAS_NUM_THREADS": "1",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
}


def apply() -> None:
    """Set each default the environment does not already set (children inherit them)."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
