#!/usr/bin/env bash
# `make test`'s two phases (docs/testing.md): every test but the `timing` and `docker` ones on N
# pytest-xdist workers, then those (benchmarks, load tests, faults, the containers) alone on the machine. Both phases always run,
# so one run shows every failure; the exit status is the first phase's failure, else the second's.
# Each phase prints its 30 slowest steps (`--durations=30`), so a CI log shows where the time went.
# Usage: test-phases.sh PYTHON WORKERS [pytest args...]
set -uo pipefail
python=$1 workers=$2
shift 2
"$python" -m pytest -n "$workers" --dist loadgroup -m "not timing and not docker" --durations=30 "$@"
parallel=$?
"$python" -m pytest -p no:xdist -m "timing or docker" --durations=30 "$@"
serial=$?
# pytest's 5: no test selected (a -k that picks none of one phase's tests) is not a failure here.
[ "$parallel" -eq 5 ] && parallel=0
[ "$serial" -eq 5 ] && serial=0
[ "$parallel" -ne 0 ] && exit "$parallel"
exit "$serial"
