package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubelvs/kubelvs/internal/podstats"
)

// taskstatsWindow is the agents' --taskstats-window.
const taskstatsWindow = 5 * time.Second

// stepTaskDelays starves one backend pod of CPU and shows the kubelvs.io/TaskDelays condition
// that n1's agent writes into both pods' status from the kernel's delay accounting.
func (d *Demo) stepTaskDelays(ctx context.Context) error {
	d.begin("Pod task delays (the kubelvs.io/TaskDelays condition)",
		"n1's agent finds each backend pod's processes through its cgroup (here kubelet-like cgroups\n"+
			"under the agents' --cgroup-root) and reads the kernel's delay accounting (taskstats) of them\n"+
			"every 5 s window (--taskstats-window). Two busy loops now run in web-1's container cgroup,\n"+
			"both pinned to CPU 0 with taskset: each waits for the CPU about half the time, so the pod's\n"+
			"CPU delay (task-seconds waiting per second) goes far over the 10 % threshold. web-canary-1\n"+
			"only sleeps: its delays stay low.")
	starved, calm := d.backends["web-1"], d.backends["web-canary-1"]
	d.res.TaskDelays = TaskDelaysResult{Starved: starved.name, Calm: calm.name}
	d.printf("$ kubelvs taskstats --probe   # this kernel's taskstats, as the agents found it\n")
	probe, err := run(d.opts.Kubelvs, "taskstats", "--probe")
	if err != nil {
		return err
	}
	d.res.TaskDelays.Probe = probe
	d.printf("%s\n", probe)
	var loops []*proc
	defer func() {
		for _, p := range loops {
			p.stop()
		}
	}()
	for i := range 2 {
		d.printf("$ taskset -c 0 sh -c 'while :; do :; done' &   # in web-1's container cgroup\n")
		p, err := d.startPodProc(starved, "http", fmt.Sprintf("busy-%s-%d", starved.name, i),
			"taskset", "-c", "0", "sh", "-c", "while :; do :; done")
		if err != nil {
			return err
		}
		loops = append(loops, p)
	}
	// Two windows, so that the condition shown is of a window the loops ran through (the first
	// may have begun before them).
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * taskstatsWindow):
	}
	err = eventually(ctx, "TaskDelays of web-1 CPUDelayHigh and of web-canary-1 DelaysLow", 3*time.Minute, func() error {
		s, err := d.taskDelays(ctx, starved.name)
		if err != nil {
			return err
		}
		c, err := d.taskDelays(ctx, calm.name)
		if err != nil {
			return err
		}
		d.res.TaskDelays.StarvedCond, d.res.TaskDelays.CalmCond = s, c
		// procs=3: a window in which both loops ran the whole time (pause and the 2 loops).
		if s.Status != corev1.ConditionFalse || s.Reason != podstats.ReasonCPUDelayHigh || !strings.Contains(s.Message, "procs=3 ") {
			return fmt.Errorf("%s: %s/%s %q", starved.name, s.Status, s.Reason, s.Message)
		}
		if c.Status != corev1.ConditionTrue || c.Reason != podstats.ReasonDelaysLow {
			return fmt.Errorf("%s: %s/%s %q", calm.name, c.Status, c.Reason, c.Message)
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.printf("  (%s after the loops started)\n\n", time.Since(start).Round(time.Second))
	for _, name := range []string{starved.name, calm.name} {
		if err := d.printConditions(ctx, name); err != nil {
			return err
		}
	}
	for _, p := range loops {
		p.stop()
	}
	loops = nil
	d.printf("  cpu= is the CPU delay, io= block I/O and mem= the memory delays (swap-in, reclaim,\n" +
		"  thrashing, compaction, write-protect copy), each per second of wall time; procs= the pod's\n" +
		"  processes, weight= the factor a DelayAware VirtualService would give the pod. The kubelet's\n" +
		"  conditions (Ready, ContainersReady) are untouched: the agent patches only its own.\n" +
		"  The busy loops are stopped.\n")
	return nil
}

// taskDelays returns a pod's kubelvs.io/TaskDelays condition.
func (d *Demo) taskDelays(ctx context.Context, name string) (corev1.PodCondition, error) {
	var pod corev1.Pod
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: name}, &pod); err != nil {
		return corev1.PodCondition{}, fmt.Errorf("demo: get pod %s: %w", name, err)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == podstats.ConditionType {
			return c, nil
		}
	}
	return corev1.PodCondition{}, fmt.Errorf("pod %s has no %s condition yet", name, podstats.ConditionType)
}

// printConditions prints a pod's status.conditions as `kubectl get pod -o yaml` shows them.
func (d *Demo) printConditions(ctx context.Context, name string) error {
	var pod corev1.Pod
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: name}, &pod); err != nil {
		return fmt.Errorf("demo: get pod %s: %w", name, err)
	}
	b, err := yaml.Marshal(map[string]any{"status": map[string]any{"conditions": pod.Status.Conditions}})
	if err != nil {
		return fmt.Errorf("demo: pod %s conditions: %w", name, err)
	}
	d.printf("$ kubectl get pod %s -o yaml   # status.conditions\n%s\n  ...\n\n", name, strings.TrimRight(string(b), "\n"))
	return nil
}
