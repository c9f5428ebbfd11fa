#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real, when they are missing.
# Needs root (as on CI and the developer machines); skips what is already there.
set -euo pipefail
# prometheus: its promtool checks the shipped alerting rules. openjdk-17-jre-headless: the JVM the
# batch tests' real Spark (local[2]) runs on.
packages=(chromium wrk docker.io mmdebstrap prometheus openjdk-17-jre-headless)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
