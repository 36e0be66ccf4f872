#!/usr/bin/env bash
# Installs LocalStack (no Docker) into a Python venv, once; re-running reuses it.
#
#   LOCALSTACK_VENV   venv directory (default <repo>/.venv/localstack)
#   PYTHON            interpreter to build it with (default python3; needs 3.11+ with venv)
#
# localstack-core 4.8.1 is the last release that runs on Python 3.11. It is installed with uv and
# --exclude-newer 2025-09-27 because plain pip resolves transitive dependencies released later
# (plux 1.16, cbor2, pyOpenSSL 26) that break 4.8.1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${LOCALSTACK_VENV:-$root/.venv/localstack}"
python="${PYTHON:-python3}"
version=4.8.1
say() { printf '[localstack] %s\n' "$*" >&2; }

installed() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('localstack-core') != '$version')" 2>/dev/null
}

if installed; then
  say "venv ready: $venv (localstack-core $version)"
  exit 0
fi

command -v "$python" >/dev/null || { say "$python not found: install python3 (3.11+) and python3-venv"; exit 1; }
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { say "$python is $("$python" --version 2>&1); localstack-core $version needs Python 3.11+"; exit 1; }

say "creating venv $venv and installing localstack-core[runtime]==$version (a few minutes)"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv" || { say "python3 -m venv failed: install python3-venv"; exit 1; }
"$venv/bin/pip" install --quiet --disable-pip-version-check uv
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" --exclude-newer 2025-09-27 \
  "localstack-core[runtime]==$version"
installed || { say "localstack-core $version did not install into $venv"; exit 1; }
say "venv ready: $venv"
