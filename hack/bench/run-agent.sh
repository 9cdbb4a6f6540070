#!/usr/bin/env bash
# hack/bench/run-agent.sh [agent-bench flags]: the node agent benchmark (`make bench-agent`).
# Starts the envtest API server on the host (hack/vm/apiserver, KUBEBUILDER_ASSETS as for the
# envtest suites), creates the benchmark's objects from the host (agent-bench populate), then runs
# agent-bench run inside hack/vm (qemu user-mode network: the guest reaches the API server at
# 10.0.2.2) with the kubelvs binary, and prints its table. Flags go to both: -vs N (default
# 10000), -dests, -changes, -resyncs, -idle, -workers (see hack/bench/agent/main.go).
# VM_MEM (default 6G) and VM_TIMEOUT (default 5400 s) size the VM. With -profile, the agent's
# profiles are written to BENCH_PROFILE_DIR (default bin/bench-agent-profiles).
set -euo pipefail
# The braces make bash parse the whole script before running it: editing it mid-run is then harmless.
{
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GO=${GO:-go}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kubelvs-bench-agent.XXXXXX")
apipid=
cleanup() {
  if [ -n "$apipid" ]; then kill "$apipid" 2>/dev/null; wait "$apipid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

(cd "$HERE" && CGO_ENABLED=0 "$GO" build -trimpath -o "$tmp/agent-bench" ./agent)
# shellcheck source=../vm/apiserver.sh
. "$ROOT/hack/vm/apiserver.sh"
start_apiserver "$tmp" || exit 1
port=$apiport
"$tmp/agent-bench" populate -kubeconfig "$tmp/kubeconfig" -server "https://127.0.0.1:$port" "$@"

echo "bench-agent: host load average $(cut -d' ' -f1-3 /proc/loadavg)"
# The profiles are written out even when the run fails: no exit on the pipeline's status.
set +e
VM_NET=user VM_MEM=${VM_MEM:-6G} VM_TIMEOUT=${VM_TIMEOUT:-5400} "$ROOT/hack/vm/run.sh" \
  -f "$tmp/agent-bench:/vm/agent-bench" -f "$tmp/kubeconfig:/vm/kubeconfig" -f "$tmp/kubelvs:/vm/kubelvs" -- \
  agent-bench run -kubeconfig /vm/kubeconfig -kubelvs /vm/kubelvs "$@" | tee "$tmp/console" | grep --line-buffered -v '^@@vmcpu \|^@@pprof '
rc=${PIPESTATUS[0]}
set -e
# -profile: the agent's profiles came as `@@pprof NAME BASE64` lines.
if grep -q '^@@pprof ' "$tmp/console"; then
  dir=${BENCH_PROFILE_DIR:-$ROOT/bin/bench-agent-profiles}
  mkdir -p "$dir"
  cp "$tmp/kubelvs" "$dir/kubelvs"
  for name in $(grep '^@@pprof ' "$tmp/console" | cut -d' ' -f2 | sort -u); do
    case $name in
    *-trace)
      grep "^@@pprof $name " "$tmp/console" | cut -d' ' -f3 | tr -d '\r\n' | base64 -d >"$dir/$name.out"
      echo "bench-agent: execution trace $dir/$name.out (go tool trace -pprof=sched $dir/$name.out >sched.pprof)" ;;
    *)
      grep "^@@pprof $name " "$tmp/console" | cut -d' ' -f3 | tr -d '\r\n' | base64 -d >"$dir/$name.pprof"
      echo "bench-agent: profile $dir/$name.pprof (go tool pprof -top $dir/kubelvs $dir/$name.pprof)" ;;
    esac
  done
fi
echo "bench-agent: host load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$rc"
}
