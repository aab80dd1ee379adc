#!/usr/bin/env bash
# The parts of a one-node Kubernetes cluster for tests/node, on machines with neither kind nor
# release downloads: containerd, runc and the CNI plugins from Debian's packages (installed when
# missing, as root), and kubelet, kube-scheduler, kube-proxy and CoreDNS built from Go modules into
# the same cache as scripts/build-k8s-tools.sh (its recipe and Go caches; nothing in the checkout).
#
# Usage: scripts/build-node.sh [--print-bin-dir]   prints the bin dir of the built parts last
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
log() { printf '[build-node %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if [[ ${1:-} != --print-bin-dir ]]; then
  missing=()
  for pair in containerd:containerd ctr:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
      iptables:iptables ip:iproute2; do
    tool=${pair%%:*} pkg=${pair#*:}
    if [[ $tool == /* ]]; then [[ -x $tool ]] || missing+=("$pkg")
    else command -v "$tool" >/dev/null || missing+=("$pkg"); fi
  done
  if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [[ $(id -u) != 0 ]]; then
      log "ERROR: needs ${missing[*]} (apt-get install ${missing[*]}, as root)"; exit 1
    fi
    log "installing ${missing[*]} from Debian's packages"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
fi
exec "$here/build-k8s-tools.sh" --node "$@"
