#!/usr/bin/env bash
# Set up a fresh machine for this project: a virtualenv outside the checkout with the project
# (editable) and its test dependencies. Idempotent; prints the venv's bin folder last.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${DATACLAY_VENV:-$HOME/.cache/dataclay/venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtualenv $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
fi
"$venv/bin/pip" install -q -e "$root[dev]" >&2
echo "$venv/bin"
