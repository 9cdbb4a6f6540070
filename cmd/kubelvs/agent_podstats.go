package main

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubelvs/kubelvs/internal/agent"
	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

// podStatsOptions are the flags of pod taskstats (internal/podstats).
type podStatsOptions struct {
	enabled        bool
	enableDelayAcc bool
	window         time.Duration
	cgroupRoot     string
	procRoot       string
	thresholds     podstats.Thresholds
	margin         float64
}

func addPodStatsFlags(f *pflag.FlagSet, o *podStatsOptions) {
	f.BoolVar(&o.enabled, "taskstats", true, "measure the delays of this node's backend pods (and pods annotated kubelvs.io/taskstats: \"true\") and write their kubelvs.io/TaskDelays condition")
	f.BoolVar(&o.enableDelayAcc, "enable-delayacct", false, "set kernel.task_delayacct=1 at start (otherwise, when it is 0, only CPU delay is measured)")
	f.DurationVar(&o.window, "taskstats-window", podstats.DefaultWindow, "sampling window of pod taskstats; a pod's condition is written at most once per window")
	f.StringVar(&o.cgroupRoot, "cgroup-root", "/sys/fs/cgroup", "where the host's cgroup filesystem is mounted")
	f.StringVar(&o.procRoot, "proc-root", "/proc", "where the host's procfs is mounted (the agent runs with hostPID)")
	f.Float64Var(&o.thresholds.CPU, "taskstats-cpu-threshold", podstats.DefaultThresholds.CPU, "CPU delay (task-seconds per second) above which a pod's condition turns False")
	f.Float64Var(&o.thresholds.IO, "taskstats-io-threshold", podstats.DefaultThresholds.IO, "block I/O delay above which a pod's condition turns False")
	f.Float64Var(&o.thresholds.Memory, "taskstats-memory-threshold", podstats.DefaultThresholds.Memory, "memory delay (swap-in, reclaim, thrashing, compaction, write-protect copy) above which a pod's condition turns False")
	f.Float64Var(&o.margin, "taskstats-margin", podstats.DefaultMargin, "how far a delay fraction must move for a condition to be rewritten when its status stays")
}

func (o *podStatsOptions) validate() error {
	if !o.enabled {
		return nil
	}
	if o.window < time.Second {
		return fmt.Errorf("--taskstats-window must be at least 1s, got %s", o.window)
	}
	if o.thresholds.CPU <= 0 || o.thresholds.IO <= 0 || o.thresholds.Memory <= 0 || o.margin <= 0 {
		return fmt.Errorf("--taskstats-*-threshold and --taskstats-margin must be positive")
	}
	return nil
}

// setupPodStats adds the pod taskstats reconciler to the manager and its condition to the
// node's IPVSNode. Taskstats that cannot be used is reported there and in the log; it does not
// stop the agent.
func setupPodStats(ctx context.Context, o *podStatsOptions, node string, mgr ctrl.Manager, status *agent.StatusWriter, log logr.Logger) error {
	if !o.enabled {
		return nil
	}
	log = log.WithName("podstats")
	if o.enableDelayAcc {
		if was, err := taskstats.SetDelayAccounting(true); err != nil {
			log.Error(err, "--enable-delayacct: cannot set kernel.task_delayacct=1")
		} else if !was {
			log.Info("kernel.task_delayacct set to 1 (--enable-delayacct); tasks started before keep zero delays other than CPU")
		}
	}
	ts, err := taskstats.Dial(&taskstats.Config{Proc: o.procRoot})
	if err != nil {
		cond := podstats.NodeCondition(&taskstats.Environment{PermissionError: err})
		status.ExtraConditions = func() []metav1.Condition { return []metav1.Condition{cond} }
		log.Error(err, "pod taskstats cannot run")
		return nil
	}
	env, err := ts.Probe(ctx)
	if err != nil {
		return fmt.Errorf("pod taskstats: %w", err)
	}
	cond := podstats.NodeCondition(env)
	status.ExtraConditions = func() []metav1.Condition { return []metav1.Condition{cond} }
	if cond.Status != metav1.ConditionTrue {
		log.Info("pod taskstats is limited", "reason", cond.Reason, "message", cond.Message)
	}
	if !env.Permitted {
		return ts.Close()
	}
	var exits podstats.Exits
	if lis, err := ts.Listen(ctx, nil); err != nil {
		log.Error(err, "no exit listener: processes that exit between samples are counted up to the last sample only")
	} else {
		exits = lis
	}
	m := podstats.NewMetrics()
	if err := m.Register(metrics.Registry); err != nil {
		return fmt.Errorf("register pod taskstats metrics: %w", err)
	}
	rec := podstats.NewReconciler(podstats.Config{Node: node, Reader: mgr.GetCache(), Writer: mgr.GetClient(),
		Sampler:    &podstats.Sampler{Discoverer: &podstats.Discoverer{CgroupRoot: o.cgroupRoot, ProcRoot: o.procRoot}, Taskstats: ts},
		Exits:      exits,
		Window:     o.window,
		Thresholds: o.thresholds, Margin: o.margin,
		DelayAccounting: env.DelayAccounting || !env.DelayAccountingKnown,
		Metrics:         m, Log: log})
	return mgr.Add(rec)
}
