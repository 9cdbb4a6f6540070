#!/usr/bin/env bash
# hack/vm/apiserver.sh: sourced by run-tests.sh and hack/bench/run-agent.sh. start_apiserver DIR
# builds kubelvs (CGO_ENABLED=0, for the guest) and hack/vm/apiserver into DIR, starts the envtest
# API server on the host (KUBEBUILDER_ASSETS as for the host suites), and waits until it serves.
# Then DIR/kubeconfig is the guest's kubeconfig, DIR/kubelvs the binary, $apiport the port and
# $apipid the server's pid (the caller kills it on exit). It returns 1, saying why, on failure.

start_apiserver() {
  local dir=$1 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  (cd "$root" && CGO_ENABLED=0 "${GO:-go}" build -o "$dir/kubelvs" ./cmd/kubelvs && "${GO:-go}" build -o "$dir/apiserver" ./hack/vm/apiserver) ||
    { echo "apiserver: building kubelvs and the API server helper failed" >&2; return 1; }
  echo "apiserver: starting the envtest API server on the host for the guest" >&2
  "$dir/apiserver" -guest-kubeconfig "$dir/kubeconfig" -port-file "$dir/port" &
  apipid=$!
  for _ in $(seq 1 360); do
    [ -s "$dir/port" ] && break
    kill -0 "$apipid" 2>/dev/null || { echo "apiserver: the envtest API server did not start" >&2; return 1; }
    sleep 0.5
  done
  [ -s "$dir/port" ] || { echo "apiserver: the envtest API server did not serve within 180 s" >&2; return 1; }
  apiport=$(cat "$dir/port")
  echo "apiserver: API server on 127.0.0.1:$apiport (the guest's 10.0.2.2)" >&2
}
