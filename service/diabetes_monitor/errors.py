"""The one exception the monitor raises: a one-line reason the CLI prints (never a traceback)."""

from __future__ import annotations


class MonitorError(Exception):
    """Bad input or missing data for a profile or a drift report, said in one line."""
