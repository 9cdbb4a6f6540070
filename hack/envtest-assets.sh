#!/usr/bin/env bash
# envtest-assets.sh: builds the binaries envtest needs (kube-apiserver, etcd, kubectl) from source
# through the Go module proxy and caches them outside the repository, keyed by version:
#
#   $CACHE_DIR/envtest/<k8s version>/{kube-apiserver,etcd,kubectl}
#
# setup-envtest cannot download release binaries on our CI machines; the Go module proxy is
# reachable, so we compile. kube-apiserver comes from k8s.io/kubernetes, whose go.mod maps every
# k8s.io/* staging module to ./staging; a module that requires k8s.io/kubernetes must replace each
# of them with the published k8s.io/X v0.<minor>.<patch>. We read that list from the kubernetes
# go.mod itself so it stays right across versions.
#
# Idempotent: a binary already in the cache (and answering --version) is not rebuilt. Prints
# progress while building. The last line on stdout is the asset directory (for KUBEBUILDER_ASSETS).
#
# Usage: hack/envtest-assets.sh [--print-dir]
#   --print-dir   print the asset directory and exit 0 if every binary is present, 1 otherwise.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0} # build/dependencies.yaml of kubernetes v1.37.2
WITH_KUBECTL=${WITH_KUBECTL:-1}
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/kubelvs}
GO=${GO:-go}

ASSETS="$CACHE_DIR/envtest/$K8S_VERSION"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

log() { printf 'envtest-assets: %s\n' "$*" >&2; }

have() { [ -x "$ASSETS/$1" ] && "$ASSETS/$1" --version >/dev/null 2>&1; }
have_kubectl() { [ -x "$ASSETS/kubectl" ] && "$ASSETS/kubectl" version --client >/dev/null 2>&1; }

all_present() {
  have kube-apiserver && have etcd && { [ "$WITH_KUBECTL" != 1 ] || have_kubectl; }
}

if [ "${1:-}" = "--print-dir" ]; then
  echo "$ASSETS"
  all_present
  exit
fi

if all_present; then
  log "cached in $ASSETS (kube-apiserver $K8S_VERSION, etcd $ETCD_VERSION)"
  echo "$ASSETS"
  exit 0
fi

mkdir -p "$ASSETS"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

# build_with_progress OUT PKG LDFLAGS: go build -v, printing a heartbeat with the number of
# packages compiled so far every 30 s, so a long first build does not look hung.
build_with_progress() {
  local out=$1 pkg=$2 ldflags=$3 blog="$ASSETS/.build-$(basename "$1").log"
  local start=$SECONDS
  log "building $(basename "$out") from $pkg (first build takes minutes; log: $blog)"
  "$GO" build -v -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg" >"$blog" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30 & wait $! || true
    kill -0 "$pid" 2>/dev/null || break
    log "  $(basename "$out"): $((SECONDS - start)) s, $(grep -c . "$blog" || true) packages compiled"
  done
  if ! wait "$pid"; then
    log "building $(basename "$out") FAILED; last lines of $blog:"
    tail -n 30 "$blog" >&2
    exit 1
  fi
  mv "$out.tmp" "$out"
  log "built $(basename "$out") in $((SECONDS - start)) s"
}

# --- etcd from go.etcd.io/etcd/server/v3 ------------------------------------------------------
if ! have etcd; then
  src="$ASSETS/src-etcd"
  mkdir -p "$src"
  cd "$src"
  printf 'module kubelvs.local/envtest-etcd\n\ngo 1.26\n' >go.mod
  log "resolving go.etcd.io/etcd/server/v3@$ETCD_VERSION through the module proxy"
  "$GO" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  build_with_progress "$ASSETS/etcd" go.etcd.io/etcd/server/v3 "-s -w"
fi

# --- kube-apiserver (and kubectl) from k8s.io/kubernetes -------------------------------------
if ! have kube-apiserver || { [ "$WITH_KUBECTL" = 1 ] && ! have_kubectl; }; then
  src="$ASSETS/src-kubernetes"
  mkdir -p "$src"
  cd "$src"
  log "resolving k8s.io/kubernetes@$K8S_VERSION through the module proxy"
  modjson=$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION")
  kmod=$(printf '%s\n' "$modjson" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$kmod" ] || { log "cannot find go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$kmod")
  log "k8s.io/kubernetes maps ${#staging[@]} modules to ./staging; replacing each with $STAGING_VERSION"
  {
    echo "module kubelvs.local/envtest-kubernetes"
    echo
    echo "go $(sed -n 's/^go //p' "$kmod")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do echo "	$m => $m $STAGING_VERSION"; done
    echo ")"
  } >go.mod
  log "resolving dependencies (go mod download)"
  "$GO" get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" >&2
  [ "$WITH_KUBECTL" = 1 ] && "$GO" get "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION" >&2
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ver_flags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ver_flags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ver_flags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  have kube-apiserver || build_with_progress "$ASSETS/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$ver_flags"
  if [ "$WITH_KUBECTL" = 1 ] && ! have_kubectl; then
    build_with_progress "$ASSETS/kubectl" k8s.io/kubernetes/cmd/kubectl "$ver_flags"
  fi
fi

all_present || { log "binaries missing after build in $ASSETS"; exit 1; }
log "ready: $ASSETS ($("$ASSETS/kube-apiserver" --version), etcd $("$ASSETS/etcd" --version | sed -n 's/^etcd Version: //p'))"
echo "$ASSETS"
