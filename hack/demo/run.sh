#!/usr/bin/env bash
# hack/demo/run.sh [--once]: `make demo`. A two-node kubelvs cluster on this machine with a real
# IPVS kernel and no cluster: the envtest API server with the CRDs, `kubelvs controller`, and one
# `kubelvs agent` per node in its own network namespace, then the steps of internal/demo.
#
# Where the kernel has IPVS (/proc/net/ip_vs, or `modprobe ip_vs` works) everything runs here,
# in fresh network namespaces (hack/demo starts the API server itself). Elsewhere the API server
# runs here (hack/vm/apiserver.sh) and the demo inside hack/vm's guest, which reaches it through
# qemu's user-mode network (10.0.2.2).
#
# Without --once it waits for Ctrl-C after the steps; either way it stops and removes all it
# started (processes, network namespaces, the VM) on exit, Ctrl-C or failure. Needs root.
# Environment: KUBEBUILDER_ASSETS (default the envtest cache), GO, VM_* (hack/vm/run.sh -h).
set -euo pipefail
# The braces make bash parse the whole script before running it: editing it mid-run is then harmless.
{
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GO=${GO:-go}
once=
for a in "$@"; do [ "$a" = --once ] && once=1; done
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces, IPVS, the VM)" >&2; exit 1; }

# The envtest binaries: built from source on a machine's first run.
if ! ASSETS=$(CACHE_DIR=${CACHE_DIR:-$HOME/.cache/kubelvs} "$ROOT/hack/envtest-assets.sh" --print-dir 2>/dev/null); then
  echo "demo: first run on this machine: building kube-apiserver, etcd and kubectl from source" >&2
  echo "demo: (hack/envtest-assets.sh; measured 73 min on 2 busy shared cores, about 15 min on an idle 2-core machine)" >&2
  ASSETS=$(CACHE_DIR=${CACHE_DIR:-$HOME/.cache/kubelvs} "$ROOT/hack/envtest-assets.sh" | tail -n1)
fi
export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$ASSETS}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kubelvs-demo.XXXXXX")
apipid='' vmpid=''
# descendants PID prints the pids of PID's children, grandchildren, ... (deepest first).
descendants() {
  local c
  for c in $(pgrep -P "$1"); do descendants "$c"; echo "$c"; done
}
cleanup() {
  # The VM: `timeout` in hack/vm/run.sh puts qemu in a process group of its own, which a
  # Ctrl-C on the terminal does not reach: signal the whole tree (timeout passes it to qemu).
  if [ -n "$vmpid" ]; then
    # shellcheck disable=SC2046 # word splitting wanted: a list of pids
    kill -TERM $(descendants "$vmpid") "$vmpid" 2>/dev/null
    wait "$vmpid" 2>/dev/null
  fi
  if [ -n "$apipid" ]; then kill "$apipid" 2>/dev/null; wait "$apipid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

has_ipvs() { [ -e /proc/net/ip_vs ] || { modprobe ip_vs 2>/dev/null && [ -e /proc/net/ip_vs ]; }; }

if has_ipvs; then
  echo "demo: this kernel has IPVS: running here, in network namespaces"
  "$ROOT/hack/ensure-packages.sh" ip:iproute2 pgrep:procps >&2
  (cd "$ROOT" && "$GO" build -o "$tmp/kubelvs" ./cmd/kubelvs && "$GO" build -o "$tmp/demo" ./hack/demo)
  "$tmp/demo" -kubelvs "$tmp/kubelvs" -samples "$ROOT/config/samples" -kubectl "$KUBEBUILDER_ASSETS/kubectl" "$@"
  exit
fi

echo "demo: this kernel has no IPVS: the nodes run in hack/vm's guest (qemu), the API server here"
# shellcheck source=../vm/apiserver.sh
. "$ROOT/hack/vm/apiserver.sh"
start_apiserver "$tmp" || exit 1
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$tmp/demo" ./hack/demo)
# The user's kubeconfig: the guest's, with the host's side of the forwarded port.
sed 's#https://10\.0\.2\.2:#https://127.0.0.1:#' "$tmp/kubeconfig" >"$tmp/kubeconfig.host"
timeout=1800
[ -n "$once" ] || timeout=$((7 * 24 * 3600))
# In the background and waited for: a trapped signal interrupts `wait` at once (a foreground
# command would delay the trap until it ended).
VM_NET=user VM_TIMEOUT=${VM_TIMEOUT:-$timeout} "$ROOT/hack/vm/run.sh" \
  -f "$tmp/demo:/vm/demo" -f "$tmp/kubelvs:/vm/kubelvs" -f "$tmp/kubeconfig:/vm/kubeconfig" \
  -f "$ROOT/config/samples:/vm/samples" -- \
  demo -kubeconfig /vm/kubeconfig -kubelvs /vm/kubelvs -samples /vm/samples \
  -user-kubeconfig "$tmp/kubeconfig.host" -kubectl "$KUBEBUILDER_ASSETS/kubectl" "$@" \
  > >(grep --line-buffered -v '^@@vmcpu ') &
vmpid=$!
set +e
wait "$vmpid"
rc=$?
set -e
vmpid=
exit "$rc"
}
