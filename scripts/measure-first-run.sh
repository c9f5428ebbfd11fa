#!/usr/bin/env bash
# Issue 22's newcomer measurement: a fresh clone, an empty HOME (so empty pip and uv caches: every
# download counts), `make run`; prints the seconds to the first correct `POST /score` answer, where
# they went (install, train, serve) and the installed environment's size, then stops the service.
#   bash scripts/measure-first-run.sh [-n RUNS] [-r REF] [-p PORT] [-e NAME=VALUE ...] [WORKDIR]
#     -n RUNS   measure this many times, each from a fresh clone and an empty HOME (default 1)
#     -r REF    clone this commit or branch instead of this checkout's branch (an A/B baseline)
#     -p PORT   serve on PORT, PORT+1 (gRPC), PORT+2 (metrics) through DIABETES_PORT and friends
#               instead of 8080-8082 (a machine where they are taken; the same work either way)
#     -e NAME=VALUE  set this for `make run` (e.g. UV_COMPILE_BYTECODE=1 to compare installer settings)
#     WORKDIR   default /tmp/first-run
# The environment is the caller's without what would not be a newcomer's: PIP_* and UV_* settings
# (a local mirror is not a download), XDG_CACHE_HOME, VIRTUAL_ENV, PYTHONDONTWRITEBYTECODE.
set -u
here="$(cd "$(dirname "$0")/.." && pwd)"
runs=1
port=8080
extra=()
ref="$(git -C "$here" branch --show-current)"
while getopts "n:r:p:e:" opt; do
    case $opt in
        n) runs=$OPTARG ;;
        r) ref=$OPTARG ;;
        p) port=$OPTARG ;;
        e) extra+=("$OPTARG") ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
work="${1:-/tmp/first-run}"
body='{"data": [[0.04, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0, 0.02, -0.02]]}'
check='import json, sys; v = json.loads(sys.argv[1]); assert isinstance(v, list) and len(v) == 1 and isinstance(v[0], float)'
clean=(env -u XDG_CACHE_HOME -u VIRTUAL_ENV -u PYTHONDONTWRITEBYTECODE)
for name in $(compgen -e | grep -E '^(PIP|UV)_'); do clean+=(-u "$name"); done
[ "$port" = 8080 ] || clean+=(DIABETES_PORT="$port" DIABETES_GRPC_PORT=$((port + 1)) DIABETES_METRICS_PORT=$((port + 2)))
clean+=("${extra[@]}")

elapsed() { python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 1))" "$1" "$2"; }

measure() {
    local run=$1 dir="$work/run-$1"
    rm -rf "$dir" && mkdir -p "$dir/home"
    git clone -q "$here" "$dir/clone" && git -C "$dir/clone" checkout -q "$ref" || return 1
    cd "$dir/clone" || return 1
    if (echo > /dev/tcp/127.0.0.1/"$port") 2> /dev/null; then echo "port $port is taken: not measuring (-p)" >&2; return 1; fi
    local start installed="" trained="" now out
    start=$(date +%s.%N)
    "${clean[@]}" HOME="$dir/home" setsid make run > "$dir/run.log" 2>&1 < /dev/null &
    local pid=$!
    # Stop the whole group (make, the supervisor, its workers) whatever happens next.
    trap 'kill -TERM -- -'"$pid"' 2>/dev/null' EXIT
    while :; do
        now=$(date +%s.%N)
        if ! kill -0 "$pid" 2> /dev/null; then echo "make run ended first; see $dir/run.log" >&2; return 1; fi
        if python3 -c "import sys; sys.exit(float(sys.argv[1]) - float(sys.argv[2]) < 1200)" "$now" "$start"; then
            echo "no answer within 1200 s; see $dir/run.log" >&2
            return 1
        fi
        [ -z "$installed" ] && [ -e .venv/.installed-run ] && installed=$now
        [ -z "$trained" ] && grep -q "^make run: starting the service" "$dir/run.log" && trained=$now
        out=$(curl -s -m 2 -H 'Content-Type: application/json' -d "$body" http://127.0.0.1:"$port"/score)
        if python3 -c "$check" "$out" 2> /dev/null && grep -q "^ready: " "$dir/run.log"; then break; fi
        sleep 0.5
    done
    local size
    size=$(du -sm .venv | cut -f1)
    kill -TERM -- -"$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
    trap - EXIT
    echo "run $run ($ref): first correct answer $(elapsed "$now" "$start") s (install $(elapsed "${installed:-$now}" "$start") s," \
        "schema and train $(elapsed "${trained:-$now}" "${installed:-$now}") s, serve $(elapsed "$now" "${trained:-$now}") s)," \
        "installed environment $size MB, answer $out"
    echo "  setuptools warning lines in make run's output: $(grep -c 'BuildBackendWarning\|\*\*\*\*\*\*\*\*\*\*' "$dir/run.log")"
    # Let the ports go before the next run binds them.
    for _ in $(seq 40); do (echo > /dev/tcp/127.0.0.1/"$port") 2> /dev/null || break; sleep 0.25; done
}

echo "measuring $runs fresh clone(s) of $ref${extra[*]:+ with ${extra[*]}}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$runs"); do
    measure "$run" || exit 1
done
