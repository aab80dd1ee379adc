#!/usr/bin/env bash
# Build pinned Kubernetes control-plane binaries (kube-apiserver, kube-controller-manager),
# etcd and helm from Go modules, so the operator can be tested against a real API server
# on machines without docker, kind or release-binary downloads (only a Go module proxy).
#
# Usage: scripts/build-k8s-tools.sh [--node] [--print-bin-dir]
#   (no flag)        build into the cache unless already there; print the bin dir last on stdout
#   --print-bin-dir  print the bin dir if all binaries are built, else exit 1 (never builds)
#   --node           the parts of a node instead (kubelet, kube-scheduler, kube-proxy of the same
#                    Kubernetes version, and CoreDNS), in their own bin dir (scripts/build-node.sh)
#
# Everything (binaries, GOPATH, GOMODCACHE, GOCACHE, scratch modules) lives under
# ${DC_K8S_TOOLS_CACHE:-$HOME/.cache/dataclay-k8s-tools}, never in the checkout.
set -euo pipefail

# Pinned versions. Kubernetes' staging modules (k8s.io/api, ...) are published as v0.<minor>.<patch>.
# etcd follows what this Kubernetes release itself uses (kubeadm DefaultEtcdVersion 3.7.0).
KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
HELM_VERSION=v3.22.0
COREDNS_VERSION=v1.14.7
BINARIES=(kube-apiserver kube-controller-manager etcd helm)
NODE=
if [[ ${1:-} == --node ]]; then NODE=1; shift; fi

CACHE_ROOT=${DC_K8S_TOOLS_CACHE:-$HOME/.cache/dataclay-k8s-tools}
PLATFORM="$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m)"
TAG="k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}_${PLATFORM}"
if [[ -n $NODE ]]; then
  BINARIES=(kubelet kube-scheduler kube-proxy coredns)
  TAG="node-k8s-${KUBE_VERSION}_coredns-${COREDNS_VERSION}_${PLATFORM}"
fi
BIN_DIR="$CACHE_ROOT/$TAG/bin"

log() { printf '[build-k8s-tools %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have_all() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
}

case "${1:-}" in
  --print-bin-dir)
    have_all || { log "not built yet: $BIN_DIR"; exit 1; }
    echo "$BIN_DIR"; exit 0 ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  "") ;;
  *) die "unknown argument: $1 (expected --node and/or --print-bin-dir)" ;;
esac

if have_all; then log "cached: $BIN_DIR"; echo "$BIN_DIR"; exit 0; fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x "$GO" ]] || die "go toolchain not found (set GO=/path/to/go)"

mkdir -p "$CACHE_ROOT/go"
export GOPATH="$CACHE_ROOT/go" GOMODCACHE="$CACHE_ROOT/go/pkg/mod" GOCACHE="$CACHE_ROOT/go/cache"
export GOFLAGS="-modcacherw -buildvcs=false -mod=mod" CGO_ENABLED=0 GOWORK=off
JOBS=${DC_K8S_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}

# One builder at a time per cache (a concurrent CI job and a developer run share it).
exec 9>"$CACHE_ROOT/build.lock"
flock 9
if have_all; then log "built by a concurrent run: $BIN_DIR"; echo "$BIN_DIR"; exit 0; fi

WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/bin"
mkdir -p "$STAGE"
START=$SECONDS

# Download module@version pairs; on failure name each module the proxy does not serve.
fetch() {
  local out bad
  if ! out=$("$GO" mod download -json "$@" 2>&1); then
    printf '%s\n' "$out" | awk -F'"' '/"Error"/{print "  " $4}' >&2
    bad=$(printf '%s\n' "$out" | awk -F'"' '/"Path"/{p=$4} /"Version"/{v=$4} /"Error"/{printf " %s@%s", p, v}')
    die "not served by GOPROXY=$("$GO" env GOPROXY):${bad:- $*}"
  fi
  printf '%s\n' "$out"
}

# Scratch module: $1 dir, $2 extra go.mod text; requires are added by `go get`.
new_module() {
  mkdir -p "$1"
  printf 'module dataclay.local/k8stools\n\ngo 1.26.0\n%s\n' "$2" >"$1/go.mod"
}

# Build the k8s.io/kubernetes commands named in $@ (e.g. kube-apiserver) at KUBE_VERSION.
build_kubernetes() {
  local dir="$WORK/kubernetes" minor patch stage_ver gomod mods replaces m
  local pkgs=("${@/#/k8s.io/kubernetes/cmd/}")
  IFS=. read -r _ minor patch <<<"${KUBE_VERSION#v}"
  stage_ver="v0.${minor}.${patch}"
  log "kubernetes $KUBE_VERSION: reading k8s.io/kubernetes go.mod"
  gomod=$(fetch "k8s.io/kubernetes@$KUBE_VERSION" | awk -F'"' '/"GoMod"/{print $4}')
  # k8s.io/kubernetes requires its staging modules as v0.0.0 and replaces them with
  # ./staging/src/k8s.io/<name>; point each required one at the published v0.<minor>.<patch>
  # (staging modules it does not require, e.g. k8s.io/sample-controller, never get resolved).
  mapfile -t mods < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {staged[$1] = 1}
    $2 == "v0.0.0" {required[$1] = 1}
    END {for (m in staged) if (m in required) print m}' "$gomod" | sort)
  [[ ${#mods[@]} -gt 0 ]] || die "no required '=> ./staging/...' modules found in $gomod"
  fetch "${mods[@]/%/@$stage_ver}" >/dev/null
  replaces="replace ("$'\n'
  for m in "${mods[@]}"; do replaces+="	$m => $m $stage_ver"$'\n'; done
  replaces+=")"
  new_module "$dir" "$replaces"
  log "kubernetes: resolving dependencies (${#mods[@]} staging modules at $stage_ver)"
  (cd "$dir" && "$GO" get "k8s.io/kubernetes@$KUBE_VERSION" "${pkgs[@]}") >&2
  local v=k8s.io/component-base/version c=k8s.io/client-go/pkg/version ld="-s -w" p
  for p in $v $c; do
    ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  log "kubernetes: compiling $* (-p $JOBS)"
  (cd "$dir" && "$GO" build -p "$JOBS" -trimpath -ldflags "$ld" -o "$STAGE/" "${pkgs[@]}") >&2
}

build_etcd() {
  local dir="$WORK/etcd"
  new_module "$dir" ""
  log "etcd $ETCD_VERSION: resolving and compiling"
  # server/v3's own go.mod has relative replaces (so `go install pkg@v` refuses it); a scratch
  # module resolves its sibling modules at the versions it requires instead.
  (cd "$dir" && "$GO" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
    "$GO" build -p "$JOBS" -trimpath \
      -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
      -o "$STAGE/etcd" go.etcd.io/etcd/server/v3) >&2
}

build_helm() {
  local dir="$WORK/helm" cg maj min
  new_module "$dir" ""
  log "helm $HELM_VERSION: resolving and compiling"
  (cd "$dir" && "$GO" get "helm.sh/helm/v3@$HELM_VERSION" helm.sh/helm/v3/cmd/helm) >&2
  # Same ldflags as helm's Makefile: default .Capabilities.KubeVersion from its client-go.
  cg=$(cd "$dir" && "$GO" list -m -f '{{.Version}}' k8s.io/client-go)
  IFS=. read -r maj min _ <<<"${cg#v}"; maj=$((maj + 1))
  local h=helm.sh/helm/v3
  (cd "$dir" && "$GO" build -p "$JOBS" -trimpath -ldflags "-s -w \
      -X $h/internal/version.version=$HELM_VERSION -X $h/internal/version.gitTreeState=clean \
      -X $h/pkg/lint/rules.k8sVersionMajor=$maj -X $h/pkg/lint/rules.k8sVersionMinor=$min \
      -X $h/pkg/chartutil.k8sVersionMajor=$maj -X $h/pkg/chartutil.k8sVersionMinor=$min" \
      -o "$STAGE/helm" helm.sh/helm/v3/cmd/helm) >&2
}

# CoreDNS with only the plugins a test cluster's DNS needs (what its plugin.cfg does for a full
# build): answers for cluster names from the API server, health and readiness endpoints.
build_coredns() {
  local dir="$WORK/coredns" p imports="" names=""
  new_module "$dir" ""
  for p in errors log health ready kubernetes; do
    imports+="	_ \"github.com/coredns/coredns/plugin/$p\""$'\n'; names+="\"$p\", "
  done
  cat >"$dir/main.go" <<EOF
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
$imports)

func main() {
	dnsserver.Directives = []string{${names%, }}
	coremain.Run()
}
EOF
  log "coredns $COREDNS_VERSION: resolving and compiling (plugins: ${names%, })"
  (cd "$dir" && "$GO" get "github.com/coredns/coredns@$COREDNS_VERSION" && "$GO" mod tidy &&
    "$GO" build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$STAGE/coredns" .) >&2
}

log "cold build into $BIN_DIR with $("$GO" version) (cache: $CACHE_ROOT)"
# Fail before compiling anything if a pinned module is not served.
if [[ -n $NODE ]]; then
  fetch "k8s.io/kubernetes@$KUBE_VERSION" "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null
  build_kubernetes kubelet kube-scheduler kube-proxy
  build_coredns
else
  fetch "k8s.io/kubernetes@$KUBE_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    "helm.sh/helm/v3@$HELM_VERSION" >/dev/null
  build_kubernetes kube-apiserver kube-controller-manager
  build_etcd
  build_helm
fi

# Publish only complete builds: a half-built cache must not look usable.
mkdir -p "$BIN_DIR"
for b in "${BINARIES[@]}"; do [[ -x "$STAGE/$b" ]] || die "build produced no $b"; done
for b in "${BINARIES[@]}"; do mv -f "$STAGE/$b" "$BIN_DIR/$b"; done
log "done in $((SECONDS - START))s"
echo "$BIN_DIR"
