#!/usr/bin/env bash
# Builds or installs the pinned control-plane tools into a cache outside the repository.
#
#   hack/tools.sh            build what is missing, print the bin directory
#   hack/tools.sh --print    only print the bin directory (no build)
#
# kube-apiserver, kube-controller-manager and etcd are compiled from the k8s.io/kubernetes Go
# module at $KUBERNETES_VERSION through a generated go.mod that replaces every staging module by
# its published v0.x.y tag; helm is compiled from its Go module.  A second run finds the binaries
# and does nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.env
source "$here/versions.env"

cache=${TREADLE_CACHE:-$HOME/.cache/treadle}
bin="$cache/bin/k8s-$KUBERNETES_VERSION-helm-$HELM_VERSION"

if [[ "${1:-}" == "--print" ]]; then
  echo "$bin"
  exit 0
fi

log() { printf '[tools %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Prints a line every 30 s while a long step runs, so a first build is not a silent wait.
with_heartbeat() {
  local what=$1
  shift
  local start=$SECONDS
  ("$@") &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30 &
    wait $! 2>/dev/null || true
    kill -0 "$pid" 2>/dev/null && log "$what: still working ($((SECONDS - start)) s)"
  done
  wait "$pid"
}

need_go() {
  command -v go >/dev/null || { log "go is required to build the control plane"; exit 1; }
}

build_control_plane() {
  local want=(kube-apiserver kube-controller-manager etcd)
  local missing=0
  for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || missing=1; done
  ((missing)) || { log "control plane $KUBERNETES_VERSION: cached"; return; }
  need_go
  local minor=${KUBERNETES_VERSION#v1.}
  local staging_version="v0.$minor"
  local work="$cache/build/kubernetes-$KUBERNETES_VERSION"
  mkdir -p "$work" "$bin"
  log "control plane $KUBERNETES_VERSION: resolving the module graph in $work"
  local gomod
  gomod=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  {
    echo "module treadle.dev/hack/kubebuild"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    # Every staging module k8s.io/kubernetes replaces with ./staging/... is published as v0.x.y.
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" | sort -u |
      while read -r mod; do echo "	$mod => $mod $staging_version"; done
    echo ")"
  } >"$work/go.mod"
  local ldflags="-s -w"
  local major=1 minor_num=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor_num"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "control plane $KUBERNETES_VERSION: compiling kube-apiserver, kube-controller-manager, etcd (cold: 10-25 min on 2 cores)"
  (
    cd "$work"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    with_heartbeat "go mod tidy" go get "k8s.io/kubernetes@$KUBERNETES_VERSION" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    with_heartbeat "go build" go build -trimpath -ldflags "$ldflags" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    with_heartbeat "go build etcd" go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
  )
  log "control plane $KUBERNETES_VERSION: built into $bin"
}

build_helm() {
  [[ -x "$bin/helm" ]] && { log "helm $HELM_VERSION: cached"; return; }
  need_go
  local major=${HELM_VERSION%%.*}
  log "helm $HELM_VERSION: compiling from helm.sh/helm/$major"
  mkdir -p "$bin"
  local mod="helm.sh/helm/$major"
  [[ $major == v2 ]] && mod="helm.sh/helm"
  with_heartbeat "helm build" env GOBIN="$bin" CGO_ENABLED=0 \
    go install -trimpath -ldflags "-s -w -X $mod/internal/version.version=$HELM_VERSION" "$mod/cmd/helm@$HELM_VERSION"
  log "helm $HELM_VERSION: built"
}

build_control_plane
build_helm
echo "$bin"
