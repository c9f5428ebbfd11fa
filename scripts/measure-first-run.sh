#!/usr/bin/env bash
# Issue 22's newcomer measurement: a fresh clone of this checkout's branch, an empty HOME, `make run`;
# prints the seconds to the first correct `POST /score` answer and the installed environment's size.
#   bash scripts/measure-first-run.sh [WORKDIR]     # default /tmp/first-run; needs ports 8080 and 8081 free
set -u
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/first-run}"
branch="$(git -C "$here" branch --show-current)"
rm -rf "$work" && mkdir -p "$work/home"
git clone -q -b "$branch" "$here" "$work/clone" || exit 1
cd "$work/clone"
if (echo > /dev/tcp/127.0.0.1/8080) 2>/dev/null; then echo "port 8080 is taken: not measuring" >&2; exit 1; fi
start=$(date +%s.%N)
HOME="$work/home" setsid make run > "$work/run.log" 2>&1 < /dev/null &
pid=$!
trap 'kill -TERM -- -$pid 2>/dev/null' EXIT
body='{"data": [[0.04, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0, 0.02, -0.02]]}'
check='import json, sys; v = json.loads(sys.argv[1]); assert isinstance(v, list) and len(v) == 1 and isinstance(v[0], float)'
while :; do
  now=$(date +%s.%N)
  if ! kill -0 "$pid" 2>/dev/null; then echo "make run ended first; see $work/run.log" >&2; exit 1; fi
  if python3 -c "import sys; sys.exit($now - $start < 1200)"; then echo "no answer within 1200 s" >&2; exit 1; fi
  out=$(curl -s -m 2 -H 'Content-Type: application/json' -d "$body" http://127.0.0.1:8080/score)
  if python3 -c "$check" "$out" 2>/dev/null && grep -q "^ready: " "$work/run.log"; then break; fi
  sleep 0.5
done
echo "first correct answer: $(python3 -c "print(round($now - $start, 1))") s ($out)"
echo "installed environment: $(du -sm .venv | cut -f1) MB"
echo "setuptools warning lines in make run's output: $(grep -c 'BuildBackendWarning\|\*\*\*\*\*\*\*\*\*\*' "$work/run.log")"
