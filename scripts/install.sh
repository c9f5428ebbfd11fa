#!/usr/bin/env bash
# The installer behind `make run` and `make install`: the project, editable, with the given extras,
# into a virtualenv made without pip, by uv, with pip as the fallback.
#   bash scripts/install.sh VENV EXTRAS        e.g. bash scripts/install.sh .venv run
#
# Why not plain pip (issue 22, a fresh clone with an empty HOME, measured by
# scripts/measure-first-run.sh; docs/getting-started-install.md has the figures): `python -m venv`
# with pip spends ~20 s on the shared 2-core machine compiling the pip it bundles, and pip then
# downloads and installs one package at a time; uv fetches in parallel and, unless
# UV_COMPILE_BYTECODE=1 (`make install` sets it), does not compile what it installs: Python compiles
# each module the first time it is imported, and only those (`make run` on a fresh clone, busy
# machine: 166-201 s to the first answer and 632 MB, against 209 s and 757 MB compiled whole at
# install; main with pip: 417 s, 951 MB; docs/getting-started-install.md). uv itself is
# one wheel, fetched by the pip that came with the Python running this (pip >= 22.3 installs into
# another interpreter with --python), else by the virtualenv's own ensurepip.
#
# uv reads neither pip.conf nor PIP_* settings (a company index, a proxy's CA): when it cannot get
# uv, or uv cannot install, pip does the whole install, as it did before; UV_INDEX_URL and friends
# configure uv itself. UV_SYSTEM_CERTS: uv trusts the system's certificates, as pip (truststore) and
# curl do, unless the caller says otherwise (an older uv ignores it and uses its own roots).
set -euo pipefail
venv=$1
extras=$2
host=${PYTHON:-python3}
py=$venv/bin/python
target=(-e ".[$extras]")

[ -x "$py" ] || "$host" -m venv --without-pip "$venv"

with_pip() {
    # ensurepip: the wheel that comes with Python, no download.
    "$py" -m pip --version > /dev/null 2>&1 || "$py" -m ensurepip --default-pip > /dev/null
    "$py" -m pip install --disable-pip-version-check "$@"
}

if ! "$py" -c "import uv" 2> /dev/null; then
    "$host" -m pip --python "$py" install --quiet --disable-pip-version-check uv 2> /dev/null \
        || with_pip --quiet uv \
        || echo "install: could not get uv; installing with pip (slower)"
fi
# pip beside the project: `.venv/bin/pip` for the commands the docs show, at its current release.
if "$py" -c "import uv" 2> /dev/null && UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1} "$py" -m uv pip install --python "$py" "${target[@]}" pip; then
    exit 0
fi
"$py" -c "import uv" 2> /dev/null && echo "install: uv could not install (above); installing with pip instead"
with_pip "${target[@]}"
