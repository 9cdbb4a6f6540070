package podstats

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func ps(pid uint32, start time.Time, cpuDelayMs, cpuMs int, count uint64) ProcSample {
	return ProcSample{Proc: Proc{PID: pid, Start: start}, Totals: Totals{
		CPUDelay: time.Duration(cpuDelayMs) * time.Millisecond, CPU: time.Duration(cpuMs) * time.Millisecond, CPUCount: count}}
}

// step is one event in a Window's life: a sample, an exit, or closing the window.
type step struct {
	sample []ProcSample // at the given offset
	at     time.Duration
	exit   *ProcSample
	close  bool
	// want on close: the counted CPU delay and CPU time in ms and the exits folded in.
	wantDelayMs, wantCPUMs, wantExited int
}

func TestWindow(t *testing.T) {
	early := t0.Add(-time.Hour)
	late := t0.Add(10 * time.Second) // started after the first sample
	tests := []struct {
		name  string
		steps []step
	}{
		{"first sample only sets the reference", []step{
			{sample: []ProcSample{ps(10, early, 500, 900, 5)}},
			{close: true},
		}},
		{"live processes' deltas are summed", []step{
			{sample: []ProcSample{ps(10, early, 500, 900, 5), ps(11, early, 0, 100, 1)}},
			{close: true},
			{at: 30 * time.Second, sample: []ProcSample{ps(10, early, 800, 1900, 9), ps(11, early, 50, 300, 3)}},
			{close: true, wantDelayMs: 350, wantCPUMs: 1200},
		}},
		{"a process that exits in the window counts up to its end", []step{
			{sample: []ProcSample{ps(10, early, 500, 900, 5), ps(11, early, 0, 100, 1)}},
			{close: true},
			{exit: ptr(ps(11, early, 40, 700, 9))},
			{at: 30 * time.Second, sample: []ProcSample{ps(10, early, 600, 1000, 6)}},
			{close: true, wantDelayMs: 140, wantCPUMs: 700, wantExited: 1},
		}},
		{"a short-lived process that started and ended in the window counts whole", []step{
			{sample: []ProcSample{ps(10, early, 500, 900, 5)}},
			{close: true},
			{exit: ptr(ps(12, late, 30, 200, 2))},
			{at: 30 * time.Second, sample: []ProcSample{ps(10, early, 500, 900, 5)}},
			{close: true, wantDelayMs: 30, wantCPUMs: 200, wantExited: 1},
		}},
		{"a new process seen live counts whole when it started after the previous sample", []step{
			{sample: []ProcSample{ps(10, early, 500, 900, 5)}},
			{at: 30 * time.Second, sample: []ProcSample{ps(10, early, 500, 900, 5), ps(13, late, 20, 50, 2)}},
			{close: true, wantDelayMs: 20, wantCPUMs: 50},
		}},
		{"a process missed before counts from when it is first seen", []step{
			{sample: []ProcSample{ps(10, early, 500, 900, 5)}},
			{at: 30 * time.Second, sample: []ProcSample{ps(10, early, 500, 900, 5), ps(14, early, 9000, 9000, 90)}},
			{close: true},
			{at: 60 * time.Second, sample: []ProcSample{ps(10, early, 500, 900, 5), ps(14, early, 9100, 9500, 95)}},
			{close: true, wantDelayMs: 100, wantCPUMs: 500},
		}},
		{"PID reuse by start time: the new process counts from its start, the old one's end via its exit", []step{
			{sample: []ProcSample{ps(10, early, 500, 900, 5)}},
			{exit: ptr(ps(10, early, 600, 1000, 6))},
			{at: 30 * time.Second, sample: []ProcSample{ps(10, late, 5, 10, 1)}},
			{close: true, wantDelayMs: 105, wantCPUMs: 110, wantExited: 1},
		}},
		{"a start time a second off (the kernel's rounding) is the same process, live and at its exit", []step{
			{sample: []ProcSample{ps(10, t0, 500, 900, 5), ps(11, t0, 0, 100, 1)}},
			{at: 3 * time.Second, sample: []ProcSample{ps(10, t0.Add(time.Second), 800, 1900, 9), ps(11, t0.Add(-time.Second), 10, 200, 2)}},
			{close: true, wantDelayMs: 310, wantCPUMs: 1100},
			{at: 6 * time.Second, sample: []ProcSample{ps(10, t0, 1100, 2900, 12), ps(11, t0, 20, 300, 3)}},
			{close: true, wantDelayMs: 310, wantCPUMs: 1100},
			{exit: ptr(ps(11, t0.Add(time.Second), 25, 350, 4))},
			{at: 9 * time.Second, sample: []ProcSample{ps(10, t0.Add(time.Second), 1400, 3900, 15)}},
			{close: true, wantDelayMs: 305, wantCPUMs: 1050, wantExited: 1},
		}},
		{"PID reuse by start time two seconds later: the new process counts from its start", []step{
			{sample: []ProcSample{ps(10, t0.Add(-2*time.Second), 500, 900, 5)}},
			{at: 3 * time.Second, sample: []ProcSample{ps(10, t0.Add(time.Second), 600, 1000, 6)}},
			{close: true, wantDelayMs: 600, wantCPUMs: 1000},
		}},
		{"PID reuse without the old exit record: counters went backwards", []step{
			{sample: []ProcSample{ps(10, t0, 500, 900, 5)}},
			{at: 30 * time.Second, sample: []ProcSample{ps(10, t0, 5, 10, 1)}},
			{close: true, wantDelayMs: 5, wantCPUMs: 10},
		}},
		{"an exit record of another process with a reused PID counts whole", []step{
			{sample: []ProcSample{ps(10, early, 500, 900, 5)}},
			{exit: ptr(ps(10, late, 7, 8, 1))},
			{at: 30 * time.Second, sample: nil},
			{close: true, wantDelayMs: 7, wantCPUMs: 8, wantExited: 1},
		}},
		{"exits before the first sample count nothing", []step{
			{exit: ptr(ps(12, early, 30, 200, 2))},
			{sample: []ProcSample{ps(10, early, 500, 900, 5)}},
			{close: true},
		}},
		{"a process gone without an exit record adds nothing, totals never go back", []step{
			{sample: []ProcSample{ps(10, early, 500, 900, 5), ps(11, early, 100, 100, 1)}},
			{at: 30 * time.Second, sample: []ProcSample{ps(10, early, 510, 910, 6)}},
			{close: true, wantDelayMs: 10, wantCPUMs: 10},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWindow()
			var last Totals
			for i, s := range tt.steps {
				switch {
				case s.exit != nil:
					w.Exit(*s.exit)
				case s.close:
					got, exited := w.Close()
					want := [3]int{tt.steps[i].wantDelayMs, tt.steps[i].wantCPUMs, tt.steps[i].wantExited}
					if d := cmp.Diff(want, [3]int{int(got.CPUDelay / time.Millisecond), int(got.CPU / time.Millisecond), exited}); d != "" {
						t.Errorf("step %d: window (delay ms, cpu ms, exited) -want +got:\n%s", i, d)
					}
				default:
					w.Sample(t0.Add(s.at), s.sample)
				}
				tot := w.Total()
				if tot.CPUDelay < last.CPUDelay || tot.CPU < last.CPU {
					t.Errorf("step %d: total went backwards: %+v after %+v", i, tot, last)
				}
				last = tot
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestTotalsSinceClamps(t *testing.T) {
	a := Totals{CPUDelay: 5, ReadBytes: 100, WriteBytes: 10}
	b := Totals{CPUDelay: 3, ReadBytes: 200, WriteBytes: 4}
	if d := cmp.Diff(Totals{CPUDelay: 2, ReadBytes: 0, WriteBytes: 6}, a.Since(b)); d != "" {
		t.Error(d)
	}
}

func TestConditionAndRates(t *testing.T) {
	w := 30 * time.Second
	frac := func(f float64) time.Duration { return time.Duration(f * float64(w)) }
	tests := []struct {
		name string
		d    Totals
		acct bool
		want Condition
	}{
		{"all low", Totals{CPUDelay: frac(0.031), BlkIO: frac(0.004)}, true,
			Condition{Status: corev1.ConditionTrue, Reason: ReasonDelaysLow, Message: "cpu=3.1% io=0.4% mem=0.0% procs=4 window=30s", CPU: 0.031, IO: 0.004}},
		{"cpu high", Totals{CPUDelay: frac(0.25), BlkIO: frac(0.004)}, true,
			Condition{Status: corev1.ConditionFalse, Reason: ReasonCPUDelayHigh, Message: "cpu=25.0% io=0.4% mem=0.0% procs=4 window=30s", CPU: 0.25, IO: 0.004}},
		{"io furthest over its threshold wins", Totals{CPUDelay: frac(0.12), BlkIO: frac(0.60)}, true,
			Condition{Status: corev1.ConditionFalse, Reason: ReasonIODelayHigh, Message: "cpu=12.0% io=60.0% mem=0.0% procs=4 window=30s", CPU: 0.12, IO: 0.60}},
		{"memory sums its categories", Totals{SwapIn: frac(0.02), FreePages: frac(0.02), Thrashing: frac(0.01), Compact: frac(0.01), WPCopy: frac(0.01)}, true,
			Condition{Status: corev1.ConditionFalse, Reason: ReasonMemoryDelayHigh, Message: "cpu=0.0% io=0.0% mem=7.0% procs=4 window=30s", Memory: 0.07}},
		{"without delay accounting only cpu is judged", Totals{CPUDelay: frac(0.05), BlkIO: frac(0.9)}, false,
			Condition{Status: corev1.ConditionTrue, Reason: ReasonDelaysLow, Message: "cpu=5.0% io=n/a mem=n/a procs=4 window=30s (kernel.task_delayacct=0: only CPU delay is measured)", CPU: 0.05}},
	}
	approx := cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := RatesOf(tt.d, w, 4, 0, tt.acct)
			if d := cmp.Diff(tt.want, DefaultThresholds.Condition(r), approx); d != "" {
				t.Errorf("-want +got:\n%s", d)
			}
		})
	}
}

func TestRatesOf(t *testing.T) {
	r := RatesOf(Totals{CPU: 15 * time.Second, ReadBytes: 3 << 20, WriteBytes: 30, IRQ: 3 * time.Second}, 30*time.Second, 2, 1, true)
	want := Rates{CPUTime: 0.5, ReadBps: float64(3<<20) / 30, WriteBps: 1, IRQ: 0.1, Procs: 2, Exited: 1, Window: 30 * time.Second, DelayAccounting: true}
	if d := cmp.Diff(want, r); d != "" {
		t.Error(d)
	}
	if got := RatesOf(Totals{CPU: time.Second}, 0, 0, 0, true); got.CPUTime != 0 {
		t.Errorf("zero window: %+v", got)
	}
	if c := DefaultThresholds.Condition(RatesOf(Totals{}, 30*time.Second, 1, 2, true)); c.Message != "cpu=0.0% io=0.0% mem=0.0% procs=1 window=30s exited=2" {
		t.Errorf("message %q", c.Message)
	}
}

func TestShouldWrite(t *testing.T) {
	p := WritePolicy{Window: 30 * time.Second, Margin: DefaultMargin}
	low := Condition{Status: corev1.ConditionTrue, Reason: ReasonDelaysLow, CPU: 0.03}
	high := Condition{Status: corev1.ConditionFalse, Reason: ReasonCPUDelayHigh, CPU: 0.30}
	last := &Written{Condition: low, At: t0}
	tests := []struct {
		name string
		last *Written
		cur  Condition
		at   time.Duration
		want bool
	}{
		{"nothing written yet", nil, low, 0, true},
		{"same numbers next window", last, low, 30 * time.Second, false},
		{"within the margin", last, Condition{Status: low.Status, Reason: low.Reason, CPU: 0.049, IO: 0.019}, 30 * time.Second, false},
		{"cpu beyond the margin", last, Condition{Status: low.Status, Reason: low.Reason, CPU: 0.051}, 30 * time.Second, true},
		{"io beyond the margin", last, Condition{Status: low.Status, Reason: low.Reason, CPU: 0.03, IO: 0.021}, 30 * time.Second, true},
		{"memory beyond the margin", last, Condition{Status: low.Status, Reason: low.Reason, CPU: 0.03, Memory: 0.021}, 30 * time.Second, true},
		{"status change", last, high, 30 * time.Second, true},
		{"status change, timer a little early", last, high, 28 * time.Second, true},
		{"status change within the window waits", last, high, 10 * time.Second, false},
		{"reason change", &Written{Condition: high, At: t0}, Condition{Status: corev1.ConditionFalse, Reason: ReasonIODelayHigh, CPU: 0.30}, 31 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.ShouldWrite(tt.last, tt.cur, t0.Add(tt.at)); got != tt.want {
				t.Errorf("ShouldWrite = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPlausible(t *testing.T) {
	in := Totals{CPUDelay: time.Second, BlkIO: 3 * time.Hour, IRQ: 2 * time.Second, CPU: 5 * time.Hour}
	got, n := in.Plausible(2 * time.Second)
	if d := cmp.Diff(Totals{CPUDelay: time.Second, IRQ: 2 * time.Second, CPU: 5 * time.Hour}, got); d != "" || n != 1 {
		t.Errorf("n=%d -want +got:\n%s", n, d)
	}
}

func TestLevelOf(t *testing.T) {
	pod := func(msg string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Message: "weight=10%"}, {Type: ConditionType, Message: msg}}}}
	}
	for _, tt := range []struct {
		msg  string
		want int
	}{
		{"cpu=3.0% io=0.0% mem=0.0% procs=1 window=30s weight=100%", 0},
		{"cpu=27.0% io=0.0% mem=0.0% procs=1 window=30s weight=70%", 3},
		{"cpu=80.0% io=0.0% mem=0.0% procs=1 window=30s exited=2 weight=10%", 9},
		{"cpu=80.0% io=0.0% mem=0.0% procs=1 window=30s weight=55%", 0},
		{"no weight", 0},
	} {
		if got := LevelOf(pod(tt.msg)); got != tt.want {
			t.Errorf("LevelOf(%q) = %d, want %d", tt.msg, got, tt.want)
		}
	}
	if got := LevelOf(&corev1.Pod{}); got != 0 {
		t.Errorf("no condition: %d", got)
	}
	for k := range 10 {
		if got := LevelOf(pod("cpu=1.0%" + weightSuffix(k))); got != k {
			t.Errorf("round trip of level %d: %d", k, got)
		}
	}
}

func TestShouldWriteLevelChange(t *testing.T) {
	p := WritePolicy{Window: 30 * time.Second, Margin: DefaultMargin}
	last := &Written{Condition: Condition{Status: corev1.ConditionFalse, Reason: ReasonCPUDelayHigh, CPU: 0.30, Level: 5}, At: t0}
	cur := Condition{Status: corev1.ConditionFalse, Reason: ReasonCPUDelayHigh, CPU: 0.30, Level: 4}
	if !p.ShouldWrite(last, cur, t0.Add(30*time.Second)) {
		t.Error("a weight level change is not written")
	}
	if p.ShouldWrite(last, cur, t0.Add(5*time.Second)) {
		t.Error("a weight level change written twice in a window")
	}
}

func TestWindowDropsImpossibleDelays(t *testing.T) {
	w := NewWindow()
	early := t0.Add(-time.Hour)
	w.Sample(t0, []ProcSample{ps(10, early, 500, 900, 5)})
	bogus := ps(10, early, 500, 1900, 9)
	bogus.BlkIO = 3 * time.Hour // the time since boot, in one 30 s window
	w.Sample(t0.Add(30*time.Second), []ProcSample{bogus})
	got, _ := w.Close()
	if got.BlkIO != 0 || got.CPU != time.Second || w.Implausible() != 1 {
		t.Errorf("window %+v, %d implausible: want the block I/O delay dropped, the CPU time kept", got, w.Implausible())
	}
	fine := ps(10, early, 500, 2900, 10)
	fine.BlkIO = bogus.BlkIO + 20*time.Minute // 40 threads waiting for 30 s: possible
	w.Sample(t0.Add(60*time.Second), []ProcSample{fine})
	if got, _ := w.Close(); got.BlkIO != 20*time.Minute {
		t.Errorf("a possible delay was dropped: %+v", got)
	}
}

func TestNodeCondition(t *testing.T) {
	for _, tt := range []struct {
		env    taskstats.Environment
		status metav1.ConditionStatus
		reason string
	}{
		{taskstats.Environment{Permitted: true, HostPIDs: true, DelayAccounting: true, DelayAccountingKnown: true}, metav1.ConditionTrue, "DelayAccountingOn"},
		{taskstats.Environment{Permitted: true, HostPIDs: true, DelayAccountingKnown: false}, metav1.ConditionTrue, "DelayAccountingOn"},
		{taskstats.Environment{Permitted: true, HostPIDs: true, DelayAccountingKnown: true}, metav1.ConditionFalse, "DelayAccountingOff"},
		{taskstats.Environment{Permitted: true, DelayAccounting: true, DelayAccountingKnown: true}, metav1.ConditionFalse, "NoHostPID"},
		{taskstats.Environment{PermissionError: taskstats.ErrPermission}, metav1.ConditionFalse, "TaskstatsUnavailable"},
	} {
		c := NodeCondition(&tt.env)
		if c.Status != tt.status || c.Reason != tt.reason || c.Type != NodeConditionType || c.Message == "" {
			t.Errorf("%+v: %+v, want %s/%s", tt.env, c, tt.status, tt.reason)
		}
	}
}
