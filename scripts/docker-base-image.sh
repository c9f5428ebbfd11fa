#!/usr/bin/env bash
# Makes a stand-in for python:3.11-slim in the private engine, from Debian packages alone: no image
# registry is reachable here. mmdebstrap (minbase) of bookworm with python3 and python3-venv, from
# the mirror this machine's apt sources name, then `docker import`. Python lives at
# /usr/bin/python3 (the official image has /usr/local/bin/python): the Dockerfile copes with both.
#   bash scripts/docker-base-image.sh [TAG]    # default tag below; skips the work if it exists
# Needs the engine from scripts/docker-engine.sh (or DOCKER_HOST) and root (mmdebstrap's root mode).
set -euo pipefail
tag="${1:-${DIABETES_BASE_IMAGE:-diabetes-standin/python:3.11-slim}}"
root="${DIABETES_DOCKER_ROOT:-/var/tmp/diabetes-docker}"
export DOCKER_HOST="${DOCKER_HOST:-unix://$root/docker.sock}"
suite=bookworm

if docker image inspect "$tag" >/dev/null 2>&1 && [ "${DIABETES_REBUILD_BASE:-0}" != 1 ]; then
  echo "base image $tag already there"
  exit 0
fi

# The first mirror that carries $suite, from the deb822 (*.sources) or one-line (*.list) files.
mirror_from_apt_sources() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk -v suite="$suite" '
      function flush() { if (deb && uris != "" && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; found = 1; exit } deb = 0; uris = ""; suites = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      /^Types:/ { deb = ($0 ~ /(^|[[:space:]])deb([[:space:]]|$)/) }
      /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      END { if (!found) flush() }
    ' "$file"
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    # deb [options] URI suite components...
    sed -E 's/\[[^]]*\]//' "$file" | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2 }'
  done
}
mirror="$(mirror_from_apt_sources | head -n 1)"
if [ -z "$mirror" ]; then
  echo "no apt source for $suite in /etc/apt/sources.list or /etc/apt/sources.list.d/" >&2
  exit 1
fi
command -v mmdebstrap >/dev/null || { echo "mmdebstrap not found: install Debian's mmdebstrap" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building $tag from $suite (minbase + python3 + python3-venv)"
# merged-usr hook: the usrmerge package (and the perl it pulls in) stays out, as in the real slim image.
mmdebstrap --variant=minbase --include=python3,python3-venv \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --aptopt='Apt::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  --quiet "$suite" "$work/rootfs.tar" "$mirror" >"$work/mmdebstrap.log" 2>&1 \
  || { tail -n 30 "$work/mmdebstrap.log" >&2; exit 1; }
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$tag" >/dev/null
docker image ls "$tag"
