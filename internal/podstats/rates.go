package podstats

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// ConditionType is the pod condition the agent writes; pods can list it as a readiness gate.
const ConditionType corev1.PodConditionType = "kubelvs.io/TaskDelays"

// Reasons of the condition.
const (
	ReasonDelaysLow       = "DelaysLow"
	ReasonCPUDelayHigh    = "CPUDelayHigh"
	ReasonIODelayHigh     = "IODelayHigh"
	ReasonMemoryDelayHigh = "MemoryDelayHigh"
)

// Rates are a pod's usage over one window. The delay fractions are task-seconds of waiting per
// second of wall time summed over the pod's tasks: a pod whose four busy threads each wait half
// the time has CPU 2.0 (200 %). Memory is the sum of the memory categories (swap-in, reclaim,
// thrashing, compaction, write-protect copy); a category the kernel's struct version lacks is 0.
type Rates struct {
	CPU, IO, SwapIn, Reclaim, Thrashing, Compact, WPCopy, IRQ float64
	Memory                                                    float64
	// CPUTime is CPU seconds per second (user + system); ReadBps and WriteBps are block I/O
	// bytes per second.
	CPUTime           float64
	ReadBps, WriteBps float64
	// Procs is the number of live processes at the window's end and Exited those that exited
	// inside it; Window is its wall-clock length.
	Procs, Exited int
	Window        time.Duration
	// DelayAccounting is false when the kernel records no delays other than CPU delay
	// (kernel.task_delayacct=0): then only CPU and the times and bytes mean anything.
	DelayAccounting bool
}

// RatesOf turns a window's counted totals into rates over wall time elapsed.
func RatesOf(d Totals, elapsed time.Duration, procs, exited int, delayacct bool) Rates {
	r := Rates{Procs: procs, Exited: exited, Window: elapsed, DelayAccounting: delayacct}
	if elapsed <= 0 {
		return r
	}
	f := func(x time.Duration) float64 { return float64(x) / float64(elapsed) }
	r.CPU, r.CPUTime = f(d.CPUDelay), f(d.CPU)
	s := elapsed.Seconds()
	r.ReadBps, r.WriteBps = float64(d.ReadBytes)/s, float64(d.WriteBytes)/s
	if delayacct {
		r.IO, r.SwapIn, r.Reclaim, r.Thrashing = f(d.BlkIO), f(d.SwapIn), f(d.FreePages), f(d.Thrashing)
		r.Compact, r.WPCopy, r.IRQ = f(d.Compact), f(d.WPCopy), f(d.IRQ)
		r.Memory = r.SwapIn + r.Reclaim + r.Thrashing + r.Compact + r.WPCopy
	}
	return r
}

// Thresholds are the delay fractions above which the condition turns False.
type Thresholds struct {
	CPU, IO, Memory float64
}

// DefaultThresholds: 10 % of wall time waiting for a CPU or for block I/O, 5 % for memory.
var DefaultThresholds = Thresholds{CPU: 0.10, IO: 0.10, Memory: 0.05}

// Condition is what the agent writes into the pod's status (without its transition time).
type Condition struct {
	Status  corev1.ConditionStatus
	Reason  string
	Message string
	// CPU, IO and Memory are the fractions the message shows, kept for the write decision.
	CPU, IO, Memory float64
	// Level is the pod's delay-aware weight level (desired.WeightFunc), set by the reconciler,
	// which keeps its hysteresis; the message ends with the weight factor it stands for
	// (" weight=70%"), which every node's agent reads back with [LevelOf].
	Level int
}

// Condition returns the pod condition for rates r: True while every delay fraction is under its
// threshold; False with the reason of the category furthest over its threshold (relative to it)
// otherwise. Without delay accounting only CPU delay is judged, and the message says io and mem
// are not measured.
func (t Thresholds) Condition(r Rates) Condition {
	c := Condition{Status: corev1.ConditionTrue, Reason: ReasonDelaysLow, CPU: r.CPU, IO: r.IO, Memory: r.Memory}
	worst := 1.0
	over := func(v, limit float64, reason string) {
		if limit > 0 && v > limit && v/limit > worst {
			worst, c.Status, c.Reason = v/limit, corev1.ConditionFalse, reason
		}
	}
	over(r.CPU, t.CPU, ReasonCPUDelayHigh)
	if r.DelayAccounting {
		over(r.IO, t.IO, ReasonIODelayHigh)
		over(r.Memory, t.Memory, ReasonMemoryDelayHigh)
		c.Message = fmt.Sprintf("cpu=%s io=%s mem=%s procs=%d window=%s", pct(r.CPU), pct(r.IO), pct(r.Memory), r.Procs, seconds(r.Window))
	} else {
		c.Message = fmt.Sprintf("cpu=%s io=n/a mem=n/a procs=%d window=%s (kernel.task_delayacct=0: only CPU delay is measured)", pct(r.CPU), r.Procs, seconds(r.Window))
	}
	if r.Exited > 0 {
		c.Message += fmt.Sprintf(" exited=%d", r.Exited)
	}
	return c
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

func seconds(d time.Duration) string { return d.Round(time.Second).String() }
