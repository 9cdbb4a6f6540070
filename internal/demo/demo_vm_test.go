//go:build ipvsvm

package demo

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/podstats"
)

// TestDemo runs the `make demo` scenario (as `--once` does) in the VM of `hack/vm/run-tests.sh
// -apiserver` and asserts what every step saw, then that Close left no process or namespace.
func TestDemo(t *testing.T) {
	kubeconfig, bin := os.Getenv("KUBELVS_KUBECONFIG"), os.Getenv("KUBELVS_BIN")
	if kubeconfig == "" || bin == "" {
		t.Fatal("the demo test needs the VM of `hack/vm/run-tests.sh -apiserver` (KUBELVS_KUBECONFIG and KUBELVS_BIN unset)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var out bytes.Buffer
	d, err := Start(ctx, Options{Kubeconfig: kubeconfig, Kubelvs: bin, Samples: "testdata/samples", Out: &out})
	var res *Result
	if err == nil {
		res, err = d.Run(ctx)
	}
	pids, netns := d.Procs(), d.Netns()
	closeErr := d.Close()
	if testing.Verbose() || t.Failed() || err != nil || closeErr != nil {
		t.Logf("demo output:\n%s", out.String())
	}
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if closeErr != nil {
		t.Errorf("Close: %v", closeErr)
	}
	checkCleanedUp(t, pids, netns)
	checkResult(t, res)
	t.Cleanup(func() { deleteDemoObjects(t, d) })
}

// checkCleanedUp asserts that the demo's processes have ended and its namespaces are gone.
func checkCleanedUp(t *testing.T, pids []int, netns []string) {
	t.Helper()
	if len(pids) != 8 || len(netns) != 5 {
		t.Errorf("the demo ran %d processes and made %d namespaces, want 8 (controller, 2 agents, 3 pods' pause, 2 busy loops) and 5 (2 nodes, 3 pods)", len(pids), len(netns))
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d is still there after Close (kill 0: %v)", pid, err)
		}
	}
	list, err := exec.Command("/sbin/ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v %s", err, list)
	}
	for _, ns := range netns {
		if strings.Contains(string(list), ns) {
			t.Errorf("network namespace %s is still there after Close:\n%s", ns, list)
		}
	}
}

func checkResult(t *testing.T, res *Result) {
	t.Helper()
	applied := slices.Sorted(slices.Values(res.Applied))
	want := []string{"backendpool.kubelvs.io/legacy", "service/api", "service/dns", "service/web",
		"virtualservice.kubelvs.io/api", "virtualservice.kubelvs.io/dns", "virtualservice.kubelvs.io/legacy",
		"virtualservice.kubelvs.io/marked", "virtualservice.kubelvs.io/web"}
	if diff := cmp.Diff(want, applied); diff != "" {
		t.Errorf("applied samples (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sampleNodes, res.Nodes); diff != "" {
		t.Errorf("status.nodes of the samples (-want +got):\n%s", diff)
	}
	for _, s := range []string{"NAMESPACE", "ADDRESSES", "NODES", "virtualservice.kubelvs.io/web", "192.0.2.10", "ipvsnode.kubelvs.io/n1", "ipvsnode.kubelvs.io/n2"} {
		if !strings.Contains(res.Tables, s) {
			t.Errorf("kubectl get output lacks %q:\n%s", s, res.Tables)
		}
	}
	for _, s := range []string{"192.0.2.10:80", "10.244.1.2:8080", "10.244.2.2:8080", "192.0.2.20:443", "mh", "198.51.100.1"} {
		if !strings.Contains(res.IPVS, s) {
			t.Errorf("kubelvs ipvs list of n1 lacks %q:\n%s", s, res.IPVS)
		}
	}
	if diff := cmp.Diff(map[string]uint32{"10.244.1.2": 1, "10.244.2.2": 1, "10.244.3.2": 2}, res.Weights); diff != "" {
		t.Errorf("n1's web weights after the canary (-want +got):\n%s", diff)
	}
	checkSpread(t, res.Spread)
	dr := res.Drain
	if dr.Want != 2<<20 || dr.Got != dr.Want || dr.Weight != 0 || dr.ActiveConns != 1 || dr.NewRequests != 20 || dr.NewToDraining != 0 || !dr.Removed {
		t.Errorf("drain: %+v, want the whole 2 MiB at weight 0 with 1 active connection, none of 20 new requests to web-2, then removed", dr)
	}
	checkTaskDelays(t, res.TaskDelays)
	for _, name := range []string{"web-1", "web-canary-1"} {
		addr := map[string]string{"web-1": "10.244.1.2:8080", "web-canary-1": "10.244.3.2:8080"}[name]
		if got := res.Connections[addr]; got != float64(res.Sent[name]) || got == 0 {
			t.Errorf("kubelvs_ipvs_real_server_connections_total of %s = %v, the demo made %d connections to it", addr, got, res.Sent[name])
		}
	}
}

// checkTaskDelays asserts the kubelvs.io/TaskDelays conditions n1's agent wrote from the guest
// kernel's taskstats (Debian 6.1, struct version 13): the pod with two busy loops sharing CPU 0
// is False/CPUDelayHigh with its CPU delay over the 10 % threshold in the message, the pod that
// only sleeps True/DelaysLow.
func checkTaskDelays(t *testing.T, td TaskDelaysResult) {
	t.Helper()
	s, c := td.StarvedCond, td.CalmCond
	// The agents' --enable-delayacct turned delay accounting on (off by default on Debian's 6.1).
	if !strings.Contains(td.Probe, "delay accounting: true") || !strings.Contains(td.Probe, "struct taskstats version: ") {
		t.Errorf("kubelvs taskstats --probe in the guest:\n%s\nwant delay accounting on and a struct version", td.Probe)
	}
	if td.Starved != "web-1" || s.Type != podstats.ConditionType || s.Status != corev1.ConditionFalse || s.Reason != podstats.ReasonCPUDelayHigh {
		t.Errorf("TaskDelays of the starved pod %s: %+v, want False/%s", td.Starved, s, podstats.ReasonCPUDelayHigh)
	}
	m := regexp.MustCompile(`(?:^| )cpu=([0-9.]+)% `).FindStringSubmatch(s.Message)
	if m == nil {
		t.Errorf("TaskDelays message of %s has no cpu=: %q", td.Starved, s.Message)
	} else if cpu, err := strconv.ParseFloat(m[1], 64); err != nil || cpu/100 <= podstats.DefaultThresholds.CPU {
		t.Errorf("TaskDelays message of %s: cpu=%s%%, want over the threshold %.0f%% (%v)", td.Starved, m[1], 100*podstats.DefaultThresholds.CPU, err)
	}
	if !strings.Contains(s.Message, "procs=3 ") {
		t.Errorf("TaskDelays message of %s: %q, want procs=3 (the pause process and 2 busy loops)", td.Starved, s.Message)
	}
	if td.Calm != "web-canary-1" || c.Type != podstats.ConditionType || c.Status != corev1.ConditionTrue || c.Reason != podstats.ReasonDelaysLow {
		t.Errorf("TaskDelays of the calm pod %s: %+v, want True/%s", td.Calm, c, podstats.ReasonDelaysLow)
	}
	if !strings.Contains(c.Message, "procs=1 ") {
		t.Errorf("TaskDelays message of %s: %q, want procs=1 (the pause process)", td.Calm, c.Message)
	}
}

// checkSpread asserts the spread of the 1,000 requests over weights 1:1:2 (250, 250, 500).
// Weighted round robin is deterministic: over whole rounds of 4 connections the split is
// exact, and the only deviation is where in a round the scheduler stands when the requests
// start and stop (earlier connections moved it), at most a backend's weight (2) each. ±10 (1 % of the requests) leaves room for that and
// still fails any wrong weighting: 1:1:1 would give 333 each, 83 off.
func checkSpread(t *testing.T, spread []Share) {
	t.Helper()
	total := 0
	for _, s := range spread {
		total += s.Requests
	}
	if total != 1000 || len(spread) != 3 {
		t.Fatalf("spread %+v: %d requests over %d backends, want 1000 over 3", spread, total, len(spread))
	}
	for i, s := range spread {
		want := expected(spread, i) * 1000
		if math.Abs(float64(s.Requests)-want) > 10 {
			t.Errorf("%s (weight %d) got %d requests, want %.0f ± 10", s.Backend, s.Weight, s.Requests, want)
		}
	}
}

// deleteDemoObjects removes the demo's VirtualServices, so that a later package of the same
// VM run finds no VirtualService of the demo programmed (envtest has no garbage collector).
func deleteDemoObjects(t *testing.T, d *Demo) {
	if d.c == nil {
		return
	}
	ctx := context.Background()
	if err := d.c.DeleteAllOf(ctx, &v1alpha1.VirtualService{}, client.InNamespace(Namespace)); err != nil {
		t.Errorf("deleting the demo's VirtualServices: %v", err)
	}
}
