//go:build ipvsvm

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/kubeletcg"
	"github.com/kubelvs/kubelvs/internal/netns"
	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// echoServerEnv set to a name makes the test binary the echo server of a pod (see TestMain).
const echoServerEnv = "KUBELVS_E2E_ECHO_SERVER"

// echoServerMain is the test binary run as a pod's echo server, in the pod's network namespace:
// it serves TCP 8080 as serve does (each connection gets "<name>\n", then its lines echoed),
// prints "listening" once it listens, and runs until killed.
func echoServerMain(name string) int {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo server:", err)
		return 1
	}
	fmt.Println("listening")
	accept(ln, name)
	return 1
}

// startInCgroup starts argv at nice value nice and moves it into cgroup, as a container runtime
// would. The process (and its process group) is killed by the returned stop, at the end of the
// test at the latest, and with the test binary (Pdeathsig): a busy loop left running would starve
// every later test in the VM.
func startInCgroup(t *testing.T, cgroup, logName string, nice int, argv []string, env ...string) (*bufio.Reader, func()) {
	t.Helper()
	logf, err := os.Create(filepath.Join(logDir, logName+".log"))
	must(t, err)
	t.Cleanup(func() { logf.Close() })
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that started the child ends (netns.Do ends the threads it
	// ran on): start it from a locked thread that lives until the child has been waited for.
	started, done := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The child inherits the nice value of this thread, which serves nothing else.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice); err != nil {
			started <- fmt.Errorf("setpriority %d: %w", nice, err)
			return
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("start %s: %v", logName, err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	t.Cleanup(stop)
	if err := kubeletcg.Join(cgroup, cmd.Process.Pid); err != nil {
		stop()
		t.Fatal(err)
	}
	return bufio.NewReader(stdout), stop
}

// delayPod is one backend pod of the delay-aware test: a network namespace behind a veth from
// the node, its kubelet-like cgroups, an echo server process in its container cgroup, and its
// Pod object (Running and Ready, bound to the node).
type delayPod struct {
	name, addr string
	pod        *corev1.Pod
	cgroup     string // the container "echo"'s
}

func startDelayPod(t *testing.T, tree *kubeletcg.Tree, ns, node, name string, n int) *delayPod {
	t.Helper()
	ctx := context.Background()
	p := &delayPod{name: name, addr: podNetns(t, node, name, n)}
	p.pod = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "echo", Image: "e2e.kubelvs.io/echo:test-binary",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}}
	must(t, k8s.Create(ctx, p.pod))
	now := metav1.Now()
	p.pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.addr, PodIPs: []corev1.PodIP{{IP: p.addr}}, StartTime: &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}}
	must(t, k8s.Status().Update(ctx, p.pod))
	var err error
	p.cgroup, err = tree.Container(string(p.pod.UID), "echo")
	must(t, err)
	exe, err := os.Executable()
	must(t, err)
	// One P: fewer of the server's threads wake (and wait for the CPU) per connection. Nice -10:
	// see echoNice.
	out, _ := startInCgroup(t, p.cgroup, "echo-"+name, echoNice, []string{"/sbin/ip", "netns", "exec", name, exe}, echoServerEnv+"="+name, "GOMAXPROCS=1")
	if line, err := out.ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("echo server of %s: %q, %v (see echo-%s.log)", name, line, err, name)
	}
	return p
}

// echoNice is the echo servers' nice value. On the VM's one CPU the other tests' agents, the
// controller and the test's client make a server at nice 0 wait for the CPU a few percent of the
// time, in some 3 s windows over the 10 % where its weight begins to fall, and the weights of
// both pods then flap during the baseline. At -10 a woken server runs first, as the container of
// a pod with a CPU request would (its cgroup's cpu.weight) against best-effort neighbours. The
// busy loops run at 0 and wait for each other: that is the delay of da's pod.
const echoNice = -10

func (p *delayPod) endpoint() discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{p.addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		NodeName:  ptr.To(p.pod.Spec.NodeName),
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.pod.Namespace, Name: p.name, UID: p.pod.UID}}
}

// taskDelays returns the pod's kubelvs.io/TaskDelays condition and the weight level its message
// gives.
func (p *delayPod) taskDelays() (corev1.PodCondition, int, error) {
	var pod corev1.Pod
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: p.pod.Namespace, Name: p.name}, &pod); err != nil {
		return corev1.PodCondition{}, 0, err
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == podstats.ConditionType {
			return c, podstats.LevelOf(&pod), nil
		}
	}
	return corev1.PodCondition{}, 0, fmt.Errorf("pod %s has no %s condition yet", p.name, podstats.ConditionType)
}

// wantCondition checks a pod's condition: status, reason and the number of processes sampled.
func (p *delayPod) wantCondition(status corev1.ConditionStatus, reason string, procs int) (int, error) {
	c, level, err := p.taskDelays()
	if err != nil {
		return 0, err
	}
	if c.Status != status || c.Reason != reason || !strings.Contains(c.Message, fmt.Sprintf("procs=%d ", procs)) {
		return level, fmt.Errorf("%s: %s/%s %q, want %s/%s with procs=%d", p.name, c.Status, c.Reason, c.Message, status, reason, procs)
	}
	return level, nil
}

// kernelWeights reads the weights of vip:80's destinations (by address) from node's IPVS table.
func kernelWeights(t *testing.T, node, vip string) map[string]uint32 {
	t.Helper()
	w, err := parseWeights(table(t, node, vip))
	must(t, err)
	return w
}

// parseWeights returns the weights of the destinations (by address) in `ipvsadm -Sn` lines.
func parseWeights(lines []string) (map[string]uint32, error) {
	out := map[string]uint32{}
	for _, l := range lines {
		f := strings.Fields(l)
		var dest string
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "-r":
				dest, _, _ = strings.Cut(f[i+1], ":")
			case "-w":
				w, err := strconv.ParseUint(f[i+1], 10, 32)
				if err != nil {
					return nil, fmt.Errorf("weight in %q: %w", l, err)
				}
				if dest != "" {
					out[dest] = uint32(w)
				}
			}
		}
	}
	return out, nil
}

// watchWeights reads vip:80's weights in node every 250 ms until the returned function is
// called, which returns each distinct set of weights seen, in order (for the log when weights
// changed during a measurement).
func watchWeights(node, vip string) func() []string {
	done, trace := make(chan struct{}), make(chan []string)
	go func() {
		var seen []string
		for {
			out, err := exec.Command("/sbin/ip", "netns", "exec", node, "ipvsadm", "-Sn").CombinedOutput()
			var lines []string
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "-t "+vip+":80 -r ") {
					lines = append(lines, l)
				}
			}
			w, perr := parseWeights(lines)
			cur := fmt.Sprint(w)
			if err != nil || perr != nil {
				cur = fmt.Sprint(err, perr)
			}
			if len(seen) == 0 || seen[len(seen)-1] != cur {
				seen = append(seen, cur)
			}
			select {
			case <-done:
				trace <- seen
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return func() []string { close(done); return <-trace }
}

// connGap paces the connections of a measurement. On the VM's one CPU every connection makes
// the echo server wait for the CPU while the client runs: 200 connections in a burst gave both
// pods a CPU delay over 30 % and lowered their weights during the baseline. Paced, each pod gets a
// few connections a second and a few percent of CPU delay, well under the 10 % where the weight
// starts to fall.
const connGap = 150 * time.Millisecond

// spread makes n connections from node to vip:80, connGap apart, and counts them by the backend
// that greeted. The connections are made from one thread in node's namespace (a netns.Do per
// connection would make and end a thread for each, more CPU for the pods to wait behind).
func spread(t *testing.T, node, vip string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	err := netns.Do(node, func() error {
		for i := range n {
			if i > 0 {
				time.Sleep(connGap)
			}
			c, who, err := dialHere(vip + ":80")
			if err != nil {
				return fmt.Errorf("connection %d to %s: %w", i, vip, err)
			}
			c.Close()
			got[who]++
		}
		return nil
	})
	must(t, err)
	return got
}

// measure makes n connections once the kernel's weights pass check and returns the counts and
// the weights, which stayed the same from before the first connection to after the last (a
// measurement during which the agent updated a destination is made again).
func measure(t *testing.T, agent *agentProc, vip string, n int, what string, pods []*delayPod, check func(w map[string]uint32) error) (map[string]int, map[string]uint32) {
	t.Helper()
	var got map[string]int
	var w map[string]uint32
	eventually(t, what, 3*time.Minute, func() error {
		w = kernelWeights(t, agent.node, vip)
		if err := check(w); err != nil {
			return err
		}
		updates := agent.metric(t, "kubelvs_agent_ipvs_operations_total", `operation="update destination"`)
		var seen []string
		func() {
			stopWatch := watchWeights(agent.node, vip)
			defer func() { seen = stopWatch() }() // also when spread fails the test
			got = spread(t, agent.node, vip, n)
		}()
		t.Logf("%d connections %v at weights %v; CPU delay of the window before the last connection:%s", n, got, w, cpuDelays(t, agent, pods))
		after := kernelWeights(t, agent.node, vip)
		if more := agent.metric(t, "kubelvs_agent_ipvs_operations_total", `operation="update destination"`) - updates; more != 0 || !maps.Equal(w, after) {
			err := fmt.Errorf("the weights changed (%v destination updates; seen: %s) from %v to %v during the %d connections; conditions now:%s",
				more, strings.Join(seen, " → "), w, after, n, conditions(pods))
			t.Logf("measuring again: %v", err)
			return err
		}
		return nil
	})
	return got, w
}

// cpuDelays is the agent's kubelvs_pod_task_delay_ratio{delay="cpu"} of each pod (of its last
// window, written into the condition only when it moved by the margin or changed the level).
func cpuDelays(t *testing.T, agent *agentProc, pods []*delayPod) string {
	t.Helper()
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, " %s=%.1f%%", p.name, 100*agent.metric(t, "kubelvs_pod_task_delay_ratio", `pod="`+p.name+`"`, `delay="cpu"`))
	}
	return b.String()
}

// conditions describes the pods' TaskDelays conditions, for the log and failures.
func conditions(pods []*delayPod) string {
	var b strings.Builder
	for _, p := range pods {
		c, level, err := p.taskDelays()
		if err != nil {
			fmt.Fprintf(&b, "\n\t%s: %v", p.name, err)
			continue
		}
		fmt.Fprintf(&b, "\n\t%s: %s/%s %q (level %d)", p.name, c.Status, c.Reason, c.Message, level)
	}
	return b.String()
}

// checkShare asserts that of n connections over a and b, a got its weight's share: weighted round
// robin is exact over whole rounds (a gets wa/g of every (wa+wb)/g connections, g their greatest
// common divisor), so the count is off by less than a round's share of a (≤ wa/g) wherever the
// scheduler stood; ±5 % of n leaves room for that and still tells 1:1 (50 %) from 1:10 (9 %).
func checkShare(t *testing.T, phase string, got map[string]int, w map[string]uint32, a, b *delayPod, n int) {
	t.Helper()
	wa, wb := w[a.addr], w[b.addr]
	want := float64(n) * float64(wa) / float64(wa+wb)
	t.Logf("%s: weights %s=%d %s=%d; %d connections: %s=%d %s=%d (%s expected %.1f); conditions:%s", phase, a.name, wa, b.name, wb, n,
		a.name, got[a.name], b.name, got[b.name], a.name, want, conditions([]*delayPod{a, b}))
	if got[a.name]+got[b.name] != n {
		t.Errorf("%s: %v, want all %d connections on %s and %s", phase, got, n, a.name, b.name)
	}
	if d := float64(got[a.name]) - want; d > float64(n)/20 || d < -float64(n)/20 {
		t.Errorf("%s: %s got %d of %d connections at weights %d:%d, want %.1f ± %d", phase, a.name, got[a.name], n, wa, wb, want, n/20)
	}
}

// The delay-aware weights of issue #12: two backend pods of a DelayAware VirtualService on a node
// whose agent measures pod taskstats in 3 s windows. Pod da is starved of CPU by two busy loops
// in its container cgroup: its kubelvs.io/TaskDelays condition turns False/CPUDelayHigh, its IPVS
// weight falls to what desired.DefaultWeightFunc gives its level, and connections move to db; when
// the loops stop, da recovers its weight and its share. The weights change in place (destination
// updates, no destination removed and added again).
func TestDelayAwareWeights(t *testing.T) {
	ctx := context.Background()
	tree, err := kubeletcg.New("kubelvs-e2e")
	if err != nil {
		t.Fatalf("pod cgroups: %v", err)
	}
	t.Cleanup(func() {
		if err := tree.Close(); err != nil {
			t.Errorf("removing the pod cgroups: %v", err)
		}
	})
	const node, vip, n = "n6", "192.0.2.70", 100
	agent := newNode(t, node, "da", false, "--taskstats=true", "--taskstats-window=3s", "--cgroup-root", tree.Root)
	ns := newNamespace(t)
	// envtest runs no ServiceAccount controller, and Pod admission wants the namespace's default.
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	a, b := startDelayPod(t, tree, ns, node, "da", 41), startDelayPod(t, tree, ns, node, "db", 42)
	pods := []*delayPod{a, b}
	vipOnNode(t, node, vip)
	backendsSvc(t, ns, "web")
	must(t, k8s.Create(ctx, podSlice(ns, "web", a.endpoint(), b.endpoint())))
	vs := virtualService(ns, "delay", []string{vip}, 80, v1alpha1.BackendRef{Name: "web"})
	vs.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "da"}}
	vs.Spec.Weighting = v1alpha1.WeightingDelayAware
	must(t, k8s.Create(ctx, vs))
	full := desired.DefaultWeightFunc.Weight(1, 0, true) // 100: static weight 1, scaled
	waitTable(t, node, []string{
		"-A -t " + vip + ":80 -s wrr",
		fmt.Sprintf("-a -t %s:80 -r %s:8080 -m -w %d", vip, a.addr, full),
		fmt.Sprintf("-a -t %s:80 -r %s:8080 -m -w %d", vip, b.addr, full),
	}, vip)
	ops := func(op string) float64 {
		return agent.metric(t, "kubelvs_agent_ipvs_operations_total", `operation="`+op+`"`)
	}
	adds, deletes := ops("add destination"), ops("delete destination")
	updates := ops("update destination")

	// 1. Baseline: both pods measured (one process each) with low delays, equal weights, an
	// even split.
	eventually(t, "both pods' TaskDelays True/DelaysLow", 2*time.Minute, func() error {
		for _, p := range []*delayPod{a, b} {
			if _, err := p.wantCondition(corev1.ConditionTrue, podstats.ReasonDelaysLow, 1); err != nil {
				return err
			}
		}
		return nil
	})
	got, w := measure(t, agent, vip, n, "equal weights before the starvation", pods, func(w map[string]uint32) error {
		if w[a.addr] != full || w[b.addr] != full {
			return fmt.Errorf("weights %v, want %d each", w, full)
		}
		return nil
	})
	checkShare(t, "baseline", got, w, a, b, n)

	// 2. da starved: two busy loops on CPU 0 in its container cgroup (the VM has one CPU; taskset
	// keeps them on one where it has more), so that each waits for the CPU about half the time.
	var loops []func()
	for i := range 2 {
		_, stop := startInCgroup(t, a.cgroup, fmt.Sprintf("busy-da-%d", i), 0, []string{"taskset", "-c", "0", "sh", "-c", "while :; do :; done"})
		loops = append(loops, stop)
	}
	var levels [2]int
	got, w = measure(t, agent, vip, n, "da's weight lowered for its CPU delay", pods, func(w map[string]uint32) error {
		// procs=3: a window through which the loops ran (the echo server and the 2 loops). Two
		// loops sharing one CPU each wait about half the time, a delay near 100 %, over the 50 %
		// of the top level: da's weight is the lowest, static × Scale × MinFactor (10). The first
		// window, which the loops ran through only in part, may give a level in between.
		la, err := a.wantCondition(corev1.ConditionFalse, podstats.ReasonCPUDelayHigh, 3)
		if err != nil {
			return err
		}
		if la != desired.DefaultWeightFunc.Steps {
			return fmt.Errorf("da at weight level %d, want %d", la, desired.DefaultWeightFunc.Steps)
		}
		_, lb, err := b.taskDelays()
		if err != nil {
			return err
		}
		levels = [2]int{la, lb}
		wa, wb := desired.DefaultWeightFunc.Weight(1, la, true), desired.DefaultWeightFunc.Weight(1, lb, true)
		if w[a.addr] != wa || w[b.addr] != wb || wa == 0 || wa >= wb {
			return fmt.Errorf("weights %v at levels da=%d db=%d, want da=%d db=%d with 0 < da < db", w, la, lb, wa, wb)
		}
		return nil
	})
	t.Logf("starved: levels da=%d db=%d", levels[0], levels[1])
	checkShare(t, "starved", got, w, a, b, n)
	if got[a.name] == 0 || 2*got[a.name] >= got[b.name] {
		t.Errorf("starved: %v, want da to get some connections but fewer than half of db's", got)
	}

	// 3. The loops stop: da's delay falls, its condition turns True again and its weight returns.
	for _, stop := range loops {
		stop()
	}
	got, w = measure(t, agent, vip, n, "equal weights after the starvation", pods, func(w map[string]uint32) error {
		for _, p := range []*delayPod{a, b} {
			level, err := p.wantCondition(corev1.ConditionTrue, podstats.ReasonDelaysLow, 1)
			if err != nil {
				return err
			}
			if level != 0 {
				return fmt.Errorf("%s at weight level %d, want 0", p.name, level)
			}
		}
		if w[a.addr] != full || w[b.addr] != full {
			return fmt.Errorf("weights %v, want %d each", w, full)
		}
		return nil
	})
	checkShare(t, "recovered", got, w, a, b, n)

	// In place: destinations were updated (down, then up again), none removed or added.
	add, del, upd := ops("add destination")-adds, ops("delete destination")-deletes, ops("update destination")-updates
	t.Logf("destination operations since the table was programmed: %v updates, %v adds, %v deletes", upd, add, del)
	if add != 0 || del != 0 || upd < 2 {
		t.Errorf("destination operations: %v adds, %v deletes, %v updates; want only updates, at least 2 (down and up)", add, del, upd)
	}
}
