package podstats

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kubelvs/kubelvs/internal/kubeletcg"
	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

// podTree makes a kubelet-like cgroup tree in the real cgroup2 filesystem (internal/kubeletcg:
// the host's hierarchy, or one mounted for the test), removed when the test ends (after its
// workloads, whose cleanups run first).
func podTree(t testing.TB, name string) *kubeletcg.Tree {
	t.Helper()
	tree, err := kubeletcg.New(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tree.Close(); err != nil {
			t.Error(err)
		}
	})
	return tree
}

// kubeletCgroup makes in tree the cgroup of one container of a Burstable pod as the kubelet's
// systemd driver and containerd lay it out, and returns it.
func kubeletCgroup(t testing.TB, tree *kubeletcg.Tree, uid string) string {
	t.Helper()
	cg, err := tree.Container(uid, "c")
	if err != nil {
		t.Fatal(err)
	}
	return cg
}

// startIn starts sh -c script with its own process placed into cgroup first (so that every
// process it starts is born there). Its stdin stays open until the returned writer is closed.
func startIn(t *testing.T, cgroup, script string) (*exec.Cmd, io.WriteCloser, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "echo $$ > "+filepath.Join(cgroup, "cgroup.procs")+" && "+script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	// Its children are killed with it, and it dies with the test binary.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true, Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd, stdin, bufio.NewReader(stdout)
}

// loopDevice attaches a loop device to a new file of size bytes in a temporary directory and
// returns its path; it is detached when the test ends. Direct writes to it block in the kernel
// until the loop worker has written the backing file, whatever filesystem holds that file (a
// file on a filesystem that is not a block device, or whose writes complete before the writer
// sleeps, shows no block I/O delay: seen on a CI machine, 13.9 MB/s written with none).
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	backing, err := os.Create(filepath.Join(t.TempDir(), "loop-backing"))
	if err != nil {
		t.Fatal(err)
	}
	defer backing.Close() // the loop device holds its own reference
	if err := backing.Truncate(size); err != nil {
		t.Fatal(err)
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("a loop device is needed for the block I/O workload: %v", err)
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		t.Fatalf("a loop device is needed for the block I/O workload: LOOP_CTL_GET_FREE: %v", err)
	}
	path := fmt.Sprintf("/dev/loop%d", n)
	dev, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Autoclear: detached once the last opener (this test's descriptor, the writers') closes it.
	if err := unix.IoctlLoopConfigure(int(dev.Fd()), &unix.LoopConfig{Fd: uint32(backing.Fd()),
		Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}}); err != nil {
		dev.Close()
		t.Fatalf("LOOP_CONFIGURE %s: %v", path, err)
	}
	t.Cleanup(func() { _ = dev.Close() })
	return path
}

// waitInCgroup waits until n processes are listed in cgroup.
func waitInCgroup(t *testing.T, cgroup string, n int) {
	t.Helper()
	for range 500 {
		pids, err := appendProcs(nil, filepath.Join(cgroup, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never had %d processes", cgroup, n)
}

// makePod creates a running pod on node with the kubelet's conditions in its status.
func makePod(t *testing.T, ctx context.Context, name, node string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
		Annotations: map[string]string{AnnotationTaskstats: "true"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	now := metav1.Now()
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: p.Status.QOSClass, Conditions: []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}}
	if err := env.Client.Status().Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReconcilerRealKernel runs the pod reconciler against this machine's kernel and the envtest
// API server: pod A has two busy loops sharing CPU 0 (taskset) and a loop of direct, synchronous
// writes to a loop device; pod B sleeps and, inside the window, runs a CPU-burning child that exits.
func TestReconcilerRealKernel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tree := podTree(t, "kubelvs-podstats-test")
	root := tree.Root

	const node = "node-podstats"
	podA, podB := makePod(t, ctx, "busy", node), makePod(t, ctx, "exits", node)
	cgA, cgB := kubeletCgroup(t, tree, string(podA.UID)), kubeletCgroup(t, tree, string(podB.UID))
	ioDev := loopDevice(t, 8<<20)
	startIn(t, cgA, "exec taskset -c 0 sh -c 'while :; do :; done'")
	startIn(t, cgA, "exec taskset -c 0 sh -c 'while :; do :; done'")
	startIn(t, cgA, "exec sh -c 'while :; do dd if=/dev/zero of="+ioDev+" bs=64k count=64 oflag=direct,dsync 2>/dev/null; done'")
	_, stdinB, outB := startIn(t, cgB, "read x; (i=0; while [ $i -lt 500000 ]; do i=$((i+1)); done); times; read y")
	waitInCgroup(t, cgA, 3)
	waitInCgroup(t, cgB, 1)

	ts, err := taskstats.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	env0, err := ts.Probe(ctx)
	if err != nil || !env0.DelayAccounting || !env0.Permitted {
		t.Fatalf("taskstats environment %+v, %v: delay accounting on and requests permitted needed", env0, err)
	}
	lis, err := ts.Listen(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var patches atomic.Int32
	writer, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	counting := interceptor.NewClient(writer, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			patches.Add(1)
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
	})
	m := NewMetrics()
	const window = 3 * time.Second
	rec := NewReconciler(Config{Node: node, Reader: agentCache(t, ctx), Writer: counting, Exits: lis,
		Sampler: &Sampler{Discoverer: &Discoverer{CgroupRoot: root}, Taskstats: ts},
		Window:  window,
		// The I/O workload is one task, so its block I/O delay stays under 1.0 (100 %): with the
		// I/O threshold above that the reason is always the CPU's, however busy the disk.
		Thresholds:      Thresholds{CPU: 0.10, IO: 2, Memory: 0.05},
		DelayAccounting: true, Metrics: m, Log: testr.New(t)})
	lctx, stopExits := context.WithCancel(ctx)
	defer stopExits()
	go rec.ExitLoop(lctx)

	// Round 1 sets the reference; B's child starts after it and has exited before round 2.
	if err := rec.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if n := patches.Load(); n != 0 {
		t.Fatalf("first round wrote %d conditions: it has no window yet", n)
	}
	if _, err := io.WriteString(stdinB, "go\n"); err != nil {
		t.Fatal(err)
	}
	childCPU := childTimes(t, outB) // printed once the child has exited
	time.Sleep(window)
	// The exit record travels through the listener's goroutine: wait until it was counted.
	for i := 0; testutil.ToFloat64(m.Exits.WithLabelValues("counted")) < 1; i++ {
		if i == 500 {
			t.Fatal("the child's exit record was never counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := rec.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if n := patches.Load(); n != 2 {
		t.Errorf("round 2 wrote %d conditions, want 2 (one per pod)", n)
	}

	ra, ca, ok := rec.Rates(podA.UID)
	if !ok {
		t.Fatal("no rates for pod A")
	}
	t.Logf("pod A: %+v %q", ra, ca.Message)
	if ca.Status != corev1.ConditionFalse || ca.Reason != ReasonCPUDelayHigh {
		t.Errorf("pod A condition %s/%s, want False/CPUDelayHigh: %s", ca.Status, ca.Reason, ca.Message)
	}
	// Two loops on one CPU: while one runs the other waits, so the pod's CPU delay is about one
	// task-second per second; a busier host only adds to it.
	if ra.CPU < 0.4 {
		t.Errorf("pod A CPU delay %.3f of wall time, want at least 0.4 with two loops sharing a CPU", ra.CPU)
	}
	if ra.IO <= 0 || ra.WriteBps <= 0 {
		t.Errorf("pod A block I/O delay %.4f, write %.0f B/s: the synchronous direct writes were not seen", ra.IO, ra.WriteBps)
	}
	if ra.Procs < 3 {
		t.Errorf("pod A has %d processes, want at least 3", ra.Procs)
	}

	rb, cb, _ := rec.Rates(podB.UID)
	t.Logf("pod B: %+v %q; child CPU %s", rb, cb.Message, childCPU)
	counted := time.Duration(rb.CPUTime * float64(rb.Window))
	if rb.Exited < 1 || counted < childCPU*8/10 {
		t.Errorf("pod B counted %s of CPU and %d exits; its child that exited in the window used %s", counted, rb.Exited, childCPU)
	}

	// The condition is on the pods, next to the kubelet's, which are untouched.
	for _, p := range []*corev1.Pod{podA, podB} {
		var got corev1.Pod
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
			t.Fatal(err)
		}
		c := condition(&got)
		if c == nil {
			t.Fatalf("pod %s has no %s condition: %+v", p.Name, ConditionType, got.Status.Conditions)
		}
		if len(got.Status.Conditions) != 4 {
			t.Errorf("pod %s conditions %+v, want the kubelet's three and ours", p.Name, got.Status.Conditions)
		}
		for _, k := range p.Status.Conditions {
			found := false
			for _, g := range got.Status.Conditions {
				found = found || g.Type == k.Type && g.Status == k.Status
			}
			if !found {
				t.Errorf("pod %s lost the kubelet's condition %s", p.Name, k.Type)
			}
		}
		if p == podA && (c.Message != ca.Message || c.Reason != ReasonCPUDelayHigh) {
			t.Errorf("pod A condition on the server %+v, computed %+v", c, ca)
		}
	}

	// What kubectl shows (the README's excerpt comes from here).
	out, err := env.Kubectl("get", "pod", podA.Name, "-n", podA.Namespace, "-o", "yaml")
	if err != nil || !strings.Contains(out, "type: "+string(ConditionType)) {
		t.Errorf("kubectl get pod -o yaml: %v\n%s", err, out)
	}
	t.Logf("kubectl get pod %s -o yaml:\n%s", podA.Name, out)

	// Rounds inside the window write nothing, however the numbers moved.
	for range 5 {
		if err := rec.Round(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := patches.Load(); n != 2 {
		t.Errorf("%d writes after rounds inside one window, want still 2", n)
	}
	if got := testutil.ToFloat64(m.Writes); got != 2 {
		t.Errorf("writes metric %v, want 2", got)
	}
	last, _, _ := rec.Rates(podA.UID)
	if got := testutil.ToFloat64(m.Delay.WithLabelValues("default", "busy", "cpu")); got != last.CPU {
		t.Errorf("cpu delay gauge of pod A %v, last window's %v", got, last.CPU)
	}
	if got := testutil.ToFloat64(m.Procs.WithLabelValues("default", "busy")); got != float64(last.Procs) {
		t.Errorf("processes gauge of pod A %v, want %d", got, last.Procs)
	}
	_ = stdinB.Close()
}

// childTimes reads the output of sh's times builtin (the shell's own times, then its children's)
// and returns the children's user plus system time.
func childTimes(t *testing.T, r *bufio.Reader) time.Duration {
	t.Helper()
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for f := range strings.FieldsSeq(line) { // "0m1.230000s 0m0.010000s"
		m, s, ok := strings.Cut(strings.TrimSuffix(f, "s"), "m")
		mins, err1 := strconv.Atoi(m)
		secs, err2 := strconv.ParseFloat(s, 64)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("times output %q", line)
		}
		total += time.Duration(mins)*time.Minute + time.Duration(secs*float64(time.Second))
	}
	if total < 100*time.Millisecond {
		t.Fatalf("the child used only %s of CPU: too little to tell", total)
	}
	return total
}
