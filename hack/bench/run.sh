#!/usr/bin/env bash
# hack/bench/run.sh [ipvs-bench flags]: build the IPVS benchmark statically and run it inside the VM
# (hack/vm/run.sh). Flags go to ipvs-bench: -services N -dests N -window N -only NAME,... -timeout D.
# Prints the guest's wall-clock table, then the same table by the CPU seconds qemu used in each phase
# (measured on the host, so other work on a shared host does not inflate it).
# VM_MEM (default 4G) and VM_TIMEOUT (default 5400 s) size the VM.
set -euo pipefail
# The braces make bash parse the whole script before running it: editing it mid-run is then harmless.
{
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GO=${GO:-go}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kubelvs-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$HERE" && CGO_ENABLED=0 "$GO" build -trimpath -o "$tmp/ipvs-bench" .)
set +e
VM_MEM=${VM_MEM:-4G} VM_TIMEOUT=${VM_TIMEOUT:-5400} "$HERE/../vm/run.sh" -f "$tmp/ipvs-bench:/vm/ipvs-bench" -- ipvs-bench "$@" |
  tee "$tmp/console.log" | grep --line-buffered -v '^@@vmcpu '
rc=${PIPESTATUS[0]}
set -e
[ -n "${BENCH_KEEP_LOG:-}" ] && cp "$tmp/console.log" "$BENCH_KEEP_LOG"
"$tmp/ipvs-bench" -cpu-report "$tmp/console.log" || rc=1
exit "$rc"
}
