"""Failures that stop the service before it serves, shared by the supervisor and its workers."""

from __future__ import annotations

# Exit status of a worker whose model cannot be loaded: the supervisor then stops the service.
EXIT_MODEL_LOAD_FAILED = 3


class ModelLoadError(Exception):
    """The model cannot be served; the message is one line, fit for a log."""

    version: str | None = None  # the registered version that failed, when it was resolved
    content: str | None = None  # and its content's identity (model/resolution.py ResolvedModel.content)
