#!/usr/bin/env bash
# Fresh machine to running demo: set up, then run the seed scenario on a local cluster.
set -euo pipefail
bin="$("$(dirname "$0")/setup.sh")"
exec "$bin/dataclay" demo "$@"
