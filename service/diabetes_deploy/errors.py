"""The one exception the deployment code raises for a failure to report in one line."""

from __future__ import annotations


class DeployError(Exception):
    """A deployment step that failed; the message says which and why, without secrets."""
