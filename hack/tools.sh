#!/usr/bin/env bash
# Builds or installs the pinned control-plane tools into a cache outside the repository.
#
#   hack/tools.sh            build what is missing, print the bin directory
#   hack/tools.sh --print    only print the bin directory (no build)
#   hack/tools.sh argo       build Argo's workflow-controller and argoexec (benchmarks only),
#                            print their bin directory
#
# kube-apiserver, kube-controller-manager, kube-proxy and etcd are compiled from the committed
# module hack/tools/kubernetes (k8s.io/kubernetes at $KUBERNETES_VERSION, every staging module
# replaced by its published v0.x.y tag), helm from hack/tools/helm, CoreDNS (cluster DNS) from
# hack/tools/coredns.  Both go.mod and go.sum are committed
# and used read-only: a build downloads exactly the recorded modules or fails.  Regenerate them
# with `make tools-update` (hack/tools-update.sh).  A second run finds the binaries and does nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.env
source "$here/versions.env"

cache=${TREADLE_CACHE:-$HOME/.cache/treadle}
# The binaries' directory names the versions and the committed module files they were built from,
# so `make tools-update` (a new go.sum) builds afresh instead of finding an older build.
pins=$(cat "$here"/tools/kubernetes/go.{mod,sum} "$here"/tools/helm/go.{mod,sum} \
  "$here"/tools/coredns/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)
bin="$cache/bin/k8s-$KUBERNETES_VERSION-helm-$HELM_VERSION-$pins"

# Build exactly what hack/tools/*/go.{mod,sum} record: -mod=readonly refuses to resolve or add
# anything, and GOTOOLCHAIN=local never downloads another Go.  A caller may still set GOPROXY=off
# to prove that a warm module cache needs nothing from the network (README: "Checking a cold start").
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0

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
  local want=(kube-apiserver kube-controller-manager kube-proxy etcd)
  local missing=0
  for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || missing=1; done
  ((missing)) || { log "control plane $KUBERNETES_VERSION: cached"; return; }
  need_go
  local minor=${KUBERNETES_VERSION#v1.}
  local ldflags="-s -w"
  local major=1 minor_num=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor_num"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "$bin"
  log "control plane $KUBERNETES_VERSION: compiling kube-apiserver, kube-controller-manager, kube-proxy, etcd from hack/tools/kubernetes (cold: 10-25 min on 2 cores)"
  (
    cd "$here/tools/kubernetes"
    with_heartbeat "go build" go build -trimpath -ldflags "$ldflags" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-proxy
    with_heartbeat "go build etcd" go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
  )
  log "control plane $KUBERNETES_VERSION: built into $bin"
}

build_helm() {
  [[ -x "$bin/helm" ]] && { log "helm $HELM_VERSION: cached"; return; }
  need_go
  local major=${HELM_VERSION%%.*}
  local mod="helm.sh/helm/$major"
  [[ $major == v2 ]] && mod="helm.sh/helm"
  log "helm $HELM_VERSION: compiling from hack/tools/helm"
  mkdir -p "$bin"
  (
    cd "$here/tools/helm"
    with_heartbeat "helm build" go build -trimpath \
      -ldflags "-s -w -X $mod/internal/version.version=$HELM_VERSION" -o "$bin/helm" "$mod/cmd/helm"
  )
  log "helm $HELM_VERSION: built"
}

build_coredns() {
  [[ -x "$bin/coredns" ]] && { log "coredns $COREDNS_VERSION: cached"; return; }
  need_go
  log "coredns $COREDNS_VERSION: compiling from hack/tools/coredns"
  mkdir -p "$bin"
  (
    cd "$here/tools/coredns"
    with_heartbeat "coredns build" go build -trimpath -ldflags "-s -w" -o "$bin/coredns" .
  )
  log "coredns $COREDNS_VERSION: built"
}

build_argo() {
  # A benchmark-only peer (bench/argo.py), built only when asked, into a directory of its own.
  local pinned mod argo_bin
  pinned=$(cat "$here"/tools/argo/go.{mod,sum} | sha256sum | cut -c1-12)
  argo_bin="$cache/bin/argo-$ARGO_VERSION-$pinned"
  mod="github.com/argoproj/argo-workflows/${ARGO_VERSION%%.*}"
  if [[ -x "$argo_bin/workflow-controller" && -x "$argo_bin/argoexec" && -d "$argo_bin/manifests" ]]; then
    log "argo $ARGO_VERSION: cached"
  else
    need_go
    mkdir -p "$argo_bin"
    log "argo $ARGO_VERSION: compiling workflow-controller and argoexec from hack/tools/argo"
    (
      cd "$here/tools/argo"
      # The module zip of v4.0.5 lacks workflow/executor/osspecific/signal_linux.go, so argoexec
      # does not build for Linux: build from a copy of the module with it added
      # (hack/tools/argo/overlay), through a throw-away go.mod that replaces the module by it.
      go mod download "$mod"
      local patched
      patched=$(mktemp -d)
      cp -r "$(go list -m -f '{{.Dir}}' "$mod")/." "$patched/"
      chmod -R u+w "$patched"
      cp "$here/tools/argo/overlay/signal_linux.go" "$patched/workflow/executor/osspecific/"
      cp go.mod "$patched.mod"
      cp go.sum "$patched.sum"
      echo "replace $mod => $patched" >>"$patched.mod"
      for command in workflow-controller argoexec; do
        with_heartbeat "argo $command build" go build -trimpath -modfile "$patched.mod" \
          -ldflags "-s -w" -o "$argo_bin/$command" "$mod/cmd/$command"
      done
      # Its CRDs and the executor's Role, for bench/argo.py to install.
      mkdir -p "$argo_bin/manifests"
      cp "$patched"/manifests/base/crds/minimal/argoproj.io_*.yaml \
        "$patched"/manifests/quick-start/base/executor/emissary/executor-role.yaml \
        "$argo_bin/manifests/"
      rm -rf "$patched" "$patched.mod" "$patched.sum"
    )
    log "argo $ARGO_VERSION: built"
  fi
  echo "$argo_bin"
}

if [[ "${1:-}" == "argo" ]]; then
  build_argo
  exit 0
fi

build_control_plane
build_helm
build_coredns
echo "$bin"
