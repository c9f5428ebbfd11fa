#!/usr/bin/env bash
# Starts or stops a private Docker engine (Debian's docker.io) for the container tests: its own
# data root, exec root and socket under $DIABETES_DOCKER_ROOT, so it never touches a system engine.
#   bash scripts/docker-engine.sh start   # waits until the socket answers; prints DOCKER_HOST=...
#   bash scripts/docker-engine.sh stop    # SIGTERM, waits for dockerd (and its containerd) to exit
#   bash scripts/docker-engine.sh status
set -euo pipefail
root="${DIABETES_DOCKER_ROOT:-/var/tmp/diabetes-docker}"
sock="$root/docker.sock"
pidfile="$root/dockerd.pid"
log="$root/dockerd.log"
export DOCKER_HOST="unix://$sock"
timeout="${DIABETES_DOCKER_START_TIMEOUT:-90}"

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  command -v dockerd >/dev/null || { echo "dockerd not found: install Debian's docker.io" >&2; exit 1; }
  mkdir -p "$root"
  if running_pid >/dev/null && answers; then
    echo "DOCKER_HOST=$DOCKER_HOST"
    return
  fi
  # A previous engine that was killed leaves its pid file and socket behind.
  rm -f "$pidfile" "$sock"
  # No iptables rules and no masquerading: containers reach nothing outside this machine, and the
  # host's firewall is left alone. Published ports still work through docker-proxy on loopback.
  setsid dockerd \
    --data-root "$root/data" \
    --exec-root "$root/exec" \
    --pidfile "$pidfile" \
    --host "$DOCKER_HOST" \
    --iptables=false \
    --ip-masq=false \
    --log-level warn \
    >"$log" 2>&1 </dev/null &
  local deadline=$((SECONDS + timeout))
  until answers; do
    if [ $SECONDS -ge $deadline ]; then
      echo "dockerd did not answer on $sock within ${timeout}s; last log lines:" >&2
      tail -n 20 "$log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  echo "DOCKER_HOST=$DOCKER_HOST"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "engine not running"
    return
  fi
  # Containers first, so their own grace periods run; then the engine.
  local ids
  ids="$(docker ps -q 2>/dev/null || true)"
  [ -z "$ids" ] || docker stop --time 20 $ids >/dev/null 2>&1 || true
  # Untagged leftovers of earlier builds would grow the data root run after run; tagged images stay.
  docker image prune --force >/dev/null 2>&1 || true
  kill -TERM "$pid"
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  rm -f "$sock"
  echo "engine stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running_pid >/dev/null && answers; then echo "running: DOCKER_HOST=$DOCKER_HOST"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
