package podstats

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/internal/testenv"
)

// TestAgentBinary runs the real `kubelvs agent` binary on this host (no IPVS here: the agent
// reports that and keeps retrying, while pod taskstats runs) against the envtest API server: a pod
// annotated kubelvs.io/taskstats with two busy loops sharing one CPU gets a CPUDelayHigh
// condition. (Its IPVSNode, with the PodTaskstats condition, is not written here: the agent
// creates IPVSNode only once it has read the IPVS table, which this host lacks.)
func TestAgentBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubelvs")
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the agent needs the go command in PATH: %v", err)
	}
	build := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./cmd/kubelvs")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kubelvs: %v\n%s", err, out)
	}
	tree := podTree(t, "kubelvs-podstats-agent")
	root := tree.Root
	const node = "node-agent-binary"
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
	pod := makePod(t, ctx, "agent-binary", node)
	cg := kubeletCgroup(t, tree, string(pod.UID))
	startIn(t, cg, "exec taskset -c 0 sh -c 'while :; do :; done'")
	startIn(t, cg, "exec taskset -c 0 sh -c 'while :; do :; done'")
	waitInCgroup(t, cg, 2)

	agent := exec.CommandContext(ctx, bin, "agent", "--kubeconfig", env.Kubeconfig, "--node-name", node,
		"--state-dir", dir, "--lease-namespace", "", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--cgroup-root", root, "--taskstats-window", "2s")
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	agent.Stdout, agent.Stderr = logf, logf
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = agent.Process.Signal(os.Interrupt)
		_ = agent.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("agent log:\n%s", b)
		}
	}()

	var got *corev1.PodCondition
	for range 600 {
		var p corev1.Pod
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), &p); err != nil {
			t.Fatal(err)
		}
		if got = condition(&p); got != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got == nil || got.Status != corev1.ConditionFalse || got.Reason != ReasonCPUDelayHigh {
		t.Fatalf("pod condition from the agent binary: %+v, want False/CPUDelayHigh", got)
	}
	t.Logf("condition written by the agent binary: %s", got.Message)
}
