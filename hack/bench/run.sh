#!/usr/bin/env bash
# hack/bench/run.sh [ipvs-bench flags]: build the IPVS benchmark statically and run it inside the VM
# (hack/vm/run.sh). Flags go to ipvs-bench: -services N -dests N -window N -only NAME,... -timeout D.
# VM_MEM (default 4G) and VM_TIMEOUT (default 5400 s) size the VM.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GO=${GO:-go}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kubelvs-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$HERE" && CGO_ENABLED=0 "$GO" build -trimpath -o "$tmp/ipvs-bench" .)
VM_MEM=${VM_MEM:-4G} VM_TIMEOUT=${VM_TIMEOUT:-5400} "$HERE/../vm/run.sh" -f "$tmp/ipvs-bench:/vm/ipvs-bench" -- ipvs-bench "$@"
