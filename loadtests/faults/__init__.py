"""The fault-injection suite: `diabetes serve` on loopback, hurt on purpose, its figures measured.

`python -m loadtests.faults` (from the repository's root) runs every case and prints its figures and
verdicts; tests/faults runs the same cases under pytest. Every case starts its own service on a
free loopback port, sends a bounded load for a bounded time and stops everything it started.
"""
