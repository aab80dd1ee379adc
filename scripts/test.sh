#!/usr/bin/env bash
# Fresh machine to full test run: set up, build the Kubernetes test binaries and the project's
# image (both cached outside the checkout, skipped when present), then run every test. Extra
# arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$("$root/scripts/setup.sh")"
DC_K8S_BIN="$("$root/scripts/build-k8s-tools.sh" | tail -n 1)"
export DC_K8S_BIN
DC_IMAGE="$("$root/scripts/build-image.sh" | tail -n 1)"
export DC_IMAGE
cd "$root"
exec "$bin/python" -m pytest "$@"
