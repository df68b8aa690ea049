#!/usr/bin/env bash
# Create (or bring up to date) the peers' venv (PgQueuer, Procrastinate, Celery) at
# benchmarks/.venv-peers, install
# benchmarks/peers/requirements.txt into it. Safe to run any number of times.
#
#   bash benchmarks/peers/setup.sh            # uses python3 from PATH
#   PYTHON=python3.12 bash benchmarks/peers/setup.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(dirname "$here")/.venv-peers"
requirements="$here/requirements.txt"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv" >&2
    "$python" -m venv "$venv"
fi

# pip leaves already-satisfied pins alone, so a second run only checks.
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
"$venv/bin/python" -c 'import asyncpg, celery, pgqueuer, procrastinate, redis, uvloop
from importlib.metadata import version
print(*(f"{name} {version(name)}" for name in ("pgqueuer", "procrastinate", "celery")))'
