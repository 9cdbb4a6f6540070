package podstats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/pkg/desired"
	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

// DefaultWindow is the sampling window.
const DefaultWindow = 30 * time.Second

// Exits is the exit listener the reconciler reads final records from ([*taskstats.Listener]).
type Exits interface {
	Receive(ctx context.Context) (*taskstats.Exit, error)
}

// Config configures a Reconciler.
type Config struct {
	Node string
	// Reader lists pods (this node's), VirtualServices and EndpointSlices: the agent's cache.
	Reader client.Reader
	// Writer patches pods' status.
	Writer  client.Client
	Sampler *Sampler
	// Exits, when set, folds the final records of the pods' exiting processes into their window.
	Exits      Exits
	Window     time.Duration
	Thresholds Thresholds
	Margin     float64
	// DelayAccounting is whether the kernel accounts delays other than CPU delay.
	DelayAccounting bool
	Metrics         *Metrics
	Log             logr.Logger
	Now             func() time.Time
}

// Reconciler keeps the kubelvs.io/TaskDelays condition of the selected pods of one node: it
// samples them once per window, folds in exit records as they come, and patches each pod's
// status when [WritePolicy.ShouldWrite] says so. Round and the exit loop may run on different
// goroutines.
type Reconciler struct {
	cfg    Config
	policy WritePolicy

	mu    sync.Mutex
	pods  map[types.UID]*podState
	names map[string]types.UID       // pod cgroup name → UID
	owner map[uint32]podProc         // PID of a process seen in the last sample → its pod
	rates map[types.UID]podRatesView // last computed, for weights and tests
}

type podProc struct {
	uid   types.UID
	start time.Time
}

type podState struct {
	key   types.NamespacedName
	win   *Window
	at    time.Time // last sample
	last  *Written
	level int // delay-aware weight level, with its hysteresis
}

type podRatesView struct {
	Key   types.NamespacedName
	Rates Rates
	Cond  Condition
}

// NewReconciler returns a Reconciler; zero Window, Thresholds and Margin take the defaults.
func NewReconciler(cfg Config) *Reconciler {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Thresholds == (Thresholds{}) {
		cfg.Thresholds = DefaultThresholds
	}
	if cfg.Margin <= 0 {
		cfg.Margin = DefaultMargin
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reconciler{cfg: cfg, policy: WritePolicy{Window: cfg.Window, Margin: cfg.Margin},
		pods: map[types.UID]*podState{}, names: map[string]types.UID{}, owner: map[uint32]podProc{},
		rates: map[types.UID]podRatesView{}}
}

// NeedLeaderElection: every node's agent runs its own.
func (r *Reconciler) NeedLeaderElection() bool { return false }

// Start runs the exit loop and a round every window until ctx ends (a controller-runtime
// Runnable: the cache's List blocks until the informers it needs have synced).
func (r *Reconciler) Start(ctx context.Context) error {
	if r.cfg.Exits != nil {
		go r.ExitLoop(ctx)
	}
	t := time.NewTicker(r.cfg.Window)
	defer t.Stop()
	for {
		if err := r.Round(ctx); err != nil {
			r.cfg.Log.Error(err, "pod taskstats round")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ExitLoop folds exit records into the pods' windows until ctx ends or the listener stops.
func (r *Reconciler) ExitLoop(ctx context.Context) {
	for {
		e, err := r.cfg.Exits.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, taskstats.ErrStopped) {
				if ctx.Err() == nil {
					r.cfg.Log.Error(err, "exit listener stopped: processes that exit are counted up to the last sample only")
				}
				return
			}
			r.cfg.Log.V(1).Info("exit record", "error", err.Error())
			continue
		}
		r.Exit(e)
	}
}

// Exit folds one exit record in, when it is the end of a process of a selected pod: the last
// thread of a thread group (its group totals), or a single-threaded process. Threads exiting
// from a live process are left out: the next sample's thread group record includes them. The
// pod is the one the process was in at the last sample, else the one /proc/<pid>/cgroup names
// (the exiting task is still there until reaped), else its parent's.
func (r *Reconciler) Exit(e *taskstats.Exit) {
	pid, rec, start := e.PID, &e.Task, e.Task.BeginTime
	if e.Group != nil {
		pid, rec = e.TGID, e.Group
	} else if e.Task.TGID != 0 && e.Task.TGID != e.Task.PID {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pp, ok := r.owner[pid]
	if ok && e.Group != nil {
		start = pp.start // a group record has no start time of its own
	}
	if !ok {
		if name := r.cfg.Sampler.Discoverer.PodOf(int(pid), func(n string) bool { _, ok := r.names[n]; return ok }); name != "" {
			pp, ok = podProc{uid: r.names[name]}, true
		} else if parent, found := r.owner[e.Task.PPID]; found {
			pp, ok = parent, true
		}
	}
	st := r.pods[pp.uid]
	if !ok || st == nil {
		r.cfg.Metrics.exit("ignored")
		return
	}
	tot := TotalsOf(rec)
	if e.Group == nil {
		var bad int
		if tot, bad = tot.Plausible(e.Task.Elapsed + time.Second); bad > 0 {
			r.cfg.Metrics.exit("implausible")
		}
	}
	st.win.Exit(ProcSample{Proc: Proc{PID: pid, Start: start}, Totals: tot})
	delete(r.owner, pid)
	r.cfg.Metrics.exit("counted")
}

// Round selects the pods, samples them, and writes the conditions that need writing.
func (r *Reconciler) Round(ctx context.Context) error {
	pods, err := Selected(ctx, r.cfg.Reader, r.cfg.Node)
	if err != nil {
		return err
	}
	uids := make([]string, len(pods))
	for i, p := range pods {
		uids[i] = string(p.UID)
	}
	samples, err := r.cfg.Sampler.Sample(ctx, uids)
	if err != nil {
		return fmt.Errorf("podstats: sample %d pods: %w", len(pods), err)
	}
	now := r.cfg.Now()
	var writes []func() error
	r.mu.Lock()
	r.forgetOthers(pods)
	for i, p := range pods {
		if w := r.update(p, &samples[i], now); w != nil {
			writes = append(writes, w)
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, w := range writes {
		if err := w(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// forgetOthers drops the state of pods no longer selected.
func (r *Reconciler) forgetOthers(pods []*corev1.Pod) {
	keep := make(map[types.UID]bool, len(pods))
	for _, p := range pods {
		keep[p.UID] = true
	}
	for uid, st := range r.pods {
		if !keep[uid] {
			delete(r.pods, uid)
			delete(r.rates, uid)
			r.cfg.Sampler.Discoverer.Forget(string(uid))
			r.cfg.Metrics.forget(st.key)
		}
	}
	for n, uid := range r.names {
		if !keep[uid] {
			delete(r.names, n)
		}
	}
	for pid, pp := range r.owner {
		if !keep[pp.uid] {
			delete(r.owner, pid)
		}
	}
}

// update takes one pod's sample and returns the status write it needs, if any.
func (r *Reconciler) update(p *corev1.Pod, s *PodSample, now time.Time) func() error {
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	if s.Err != nil {
		r.cfg.Log.V(1).Info("pod not sampled", "pod", key, "error", s.Err.Error())
		return nil
	}
	st := r.pods[p.UID]
	if st == nil {
		st = &podState{key: key, win: NewWindow(), last: writtenOf(p), level: LevelOf(p)}
		r.pods[p.UID] = st
	}
	r.names[s.Pod.Name] = p.UID
	for pid, pp := range r.owner {
		if pp.uid == p.UID {
			delete(r.owner, pid)
		}
	}
	for _, ps := range s.Procs {
		r.owner[ps.PID] = podProc{uid: p.UID, start: ps.Start}
	}
	primed := st.win.Primed()
	st.win.Sample(now, s.Procs)
	elapsed := now.Sub(st.at)
	st.at = now
	d, exited := st.win.Close()
	if !primed {
		return nil
	}
	rates := RatesOf(d, elapsed, len(s.Procs), exited, r.cfg.DelayAccounting)
	cond := r.cfg.Thresholds.Condition(rates)
	st.level = desired.DefaultWeightFunc.Level(rates.CPU, st.level)
	cond.Level = st.level
	cond.Message += weightSuffix(st.level)
	r.rates[p.UID] = podRatesView{Key: key, Rates: rates, Cond: cond}
	r.cfg.Metrics.set(key, rates)
	if !r.policy.ShouldWrite(st.last, cond, now) {
		return nil
	}
	prev := condition(p)
	st.last = &Written{Condition: cond, At: now}
	return func() error {
		err := r.write(context.Background(), p, prev, cond, now)
		if err != nil {
			r.mu.Lock()
			st.last = nil // try again next window
			r.mu.Unlock()
		}
		return err
	}
}

// condition returns the pod's TaskDelays condition, or nil.
func condition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == ConditionType {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// writtenOf recovers what an earlier run of the agent wrote to the pod (the numbers from its
// message), so that a restart does not rewrite every pod's condition.
func writtenOf(p *corev1.Pod) *Written {
	c := condition(p)
	if c == nil {
		return nil
	}
	w := &Written{Condition: Condition{Status: c.Status, Reason: c.Reason, Message: c.Message}, At: c.LastProbeTime.Time}
	var cpu, io, mem float64
	if n, _ := fmt.Sscanf(c.Message, "cpu=%f%% io=%f%% mem=%f%%", &cpu, &io, &mem); n >= 1 {
		w.CPU, w.IO, w.Memory, w.Level = cpu/100, io/100, mem/100, LevelOf(p)
		return w
	}
	return nil
}

// weightSuffix is the end of the message: the weight factor of level k.
func weightSuffix(k int) string {
	return fmt.Sprintf(" weight=%d%%", int(math.Round(desired.DefaultWeightFunc.Factor(k)*100)))
}

// LevelOf reads a pod's delay-aware weight level from the message of its kubelvs.io/TaskDelays
// condition (the " weight=NN%" its node's agent writes); 0 (full weight) when there is none.
func LevelOf(p *corev1.Pod) int {
	c := condition(p)
	if c == nil {
		return 0
	}
	i := strings.LastIndex(c.Message, " weight=")
	if i < 0 {
		return 0
	}
	for k := desired.DefaultWeightFunc.Steps; k > 0; k-- {
		if strings.HasPrefix(c.Message[i:], weightSuffix(k)) {
			return k
		}
	}
	return 0
}

// write patches the pod's status with a strategic merge patch holding only this condition: pod
// conditions merge by type, so the kubelet's (and anyone else's) conditions are untouched.
func (r *Reconciler) write(ctx context.Context, p *corev1.Pod, prev *corev1.PodCondition, c Condition, now time.Time) error {
	transition := metav1.NewTime(now)
	if prev != nil && prev.Status == c.Status {
		transition = prev.LastTransitionTime
	}
	cond := corev1.PodCondition{Type: ConditionType, Status: c.Status, Reason: c.Reason, Message: c.Message,
		LastProbeTime: metav1.NewTime(now), LastTransitionTime: transition}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{cond}}})
	if err != nil {
		return fmt.Errorf("podstats: encode condition of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	target := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}
	if err := r.cfg.Writer.Status().Patch(ctx, target, client.RawPatch(types.StrategicMergePatchType, body)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("podstats: patch status of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	r.cfg.Metrics.wrote()
	return nil
}

// Rates returns the rates and condition last computed for a pod (false before its second sample).
func (r *Reconciler) Rates(uid types.UID) (Rates, Condition, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.rates[uid]
	return v.Rates, v.Cond, ok
}
