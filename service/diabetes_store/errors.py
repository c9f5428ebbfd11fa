"""What the store package raises: one type, whose message is written for the user.

The store sits below the trainer and the service and knows neither: each maps a StoreError to its
own error (the service to ModelLoadError, word for word), so the message a user reads does not
depend on which layer noticed the problem.
"""

from __future__ import annotations


class StoreError(Exception):
    """A registry URI, lookup or download that failed; str() is the whole message, fit for the user."""


class Unsupported(Exception):
    """Not an error: the files are where only MLflow's own client can fetch them (the caller falls back)."""
