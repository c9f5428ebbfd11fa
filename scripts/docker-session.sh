#!/usr/bin/env bash
# Runs a command (the test suite) with the private Docker engine up and the stand-in base image in it,
# then stops the engine whatever the command's outcome:
#   bash scripts/docker-session.sh .venv/bin/python -m pytest
# If the engine cannot be prepared the command still runs: the container tests then fail under CI
# (and skip on a developer machine) with the reason, instead of hiding the rest of the suite.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${DIABETES_DOCKER_ROOT:-/var/tmp/diabetes-docker}"
export DOCKER_HOST="unix://$root/docker.sock"
export DIABETES_BASE_IMAGE="${DIABETES_BASE_IMAGE:-diabetes-standin/python:3.11-slim}"

if bash "$here/docker-engine.sh" start; then
  trap 'bash "$here/docker-engine.sh" stop || true' EXIT
  bash "$here/docker-base-image.sh" "$DIABETES_BASE_IMAGE" || echo "warning: no stand-in base image" >&2
else
  echo "warning: the Docker engine did not start; container tests cannot run" >&2
fi
"$@"
