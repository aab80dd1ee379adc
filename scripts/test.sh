#!/usr/bin/env bash
# Fresh machine to full test run: set up, build the Kubernetes test binaries, the node's parts and
# the project's image (all cached outside the checkout, skipped when present), then run every test. Extra
# arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$("$root/scripts/setup.sh")"
DC_K8S_BIN="$("$root/scripts/build-k8s-tools.sh" | tail -n 1)"
export DC_K8S_BIN
DC_NODE_BIN="$("$root/scripts/build-node.sh" | tail -n 1)"
export DC_NODE_BIN
DC_IMAGE="$("$root/scripts/build-image.sh" | tail -n 1)"
export DC_IMAGE
cd "$root"
exec "$bin/python" -m pytest "$@"
