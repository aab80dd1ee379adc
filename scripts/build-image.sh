#!/usr/bin/env bash
# Build the project's image from its own Dockerfile where no container registry is reachable:
# a base image of Debian's Python 3.11 made from Debian packages (mmdebstrap), then
# `podman build --build-arg BASE=<that base>` (the Dockerfile's only difference from a registry build).
#
# Usage: scripts/build-image.sh        build unless cached; print the image name last on stdout
#
# Cached outside the checkout: the base by its recipe, the image by a digest of the files it is
# built from (Dockerfile, pyproject.toml, README.md, client/, backend/, operator/), in podman's own
# storage. Installs podman, runc and mmdebstrap from Debian's packages when they are missing (root).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${DC_IMAGE_CACHE:-$HOME/.cache/dataclay-image}"
BASE=localhost/dataclay-base:python3.11-bookworm
# podman on this kind of host: crun fails on hybrid cgroups, and rlimits may only be lowered.
PODMAN=(podman --runtime runc --cgroup-manager cgroupfs)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

log() { printf '[build-image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

missing=()
for tool in podman runc mmdebstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || die "needs ${missing[*]} (apt-get install ${missing[*]}, as root)"
  log "installing ${missing[*]} from Debian's packages"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

mkdir -p "$cache"
if ! "${PODMAN[@]}" image exists "$BASE"; then
  log "building the base image $BASE from Debian packages (about a minute)"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
    "$cache/base.tar" >&2
  "${PODMAN[@]}" import "$cache/base.tar" "$BASE" >&2
  rm -f "$cache/base.tar"
fi

digest=$(cd "$root" && { sha256sum Dockerfile pyproject.toml README.md;
  git ls-files -z client backend operator | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
image="localhost/dataclay-k8s:$digest"
if ! "${PODMAN[@]}" image exists "$image"; then
  log "building $image from the Dockerfile (base $BASE)"
  ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
  mounts=(-v "$ca:$ca:ro")
  [[ -f /etc/pip.conf ]] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
  "${PODMAN[@]}" build --quiet --network host "${LIMITS[@]}" "${mounts[@]}" \
    --env "SSL_CERT_FILE=$ca" --env "PIP_CERT=$ca" --build-arg "BASE=$BASE" \
    -t "$image" -f "$root/Dockerfile" "$root" >&2
fi
# Older builds of this image are removed (each is ~450 MB); one a container still uses stays.
for old in $("${PODMAN[@]}" images --filter reference=localhost/dataclay-k8s --format '{{.Repository}}:{{.Tag}}'); do
  [[ $old == "$image" ]] || "${PODMAN[@]}" rmi "$old" >/dev/null 2>&1 || true
done
echo "$image"
