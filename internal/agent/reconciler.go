package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Kernel is the IPVS table the reconciler programs (pkg/ipvs's Client).
type Kernel interface {
	Apply(ctx context.Context, ops []ipvs.Op) ([]error, error)
	Table(ctx context.Context) ([]ipvs.TableEntry, error)
	Destinations(ctx context.Context, s *lvs.Service) ([]ipvs.Destination, error)
}

// Config configures a Reconciler.
type Config struct {
	Node       string
	Kernel     Kernel
	Checkpoint *CheckpointFile
	// Allow refuses keys the agent must not manage (--managed-cidrs); nil allows all.
	Allow func(lvs.ServiceKey) error
	// CheckpointInterval is the least time between two checkpoint writes that only record
	// drains, generations or removals (zero: every change is written at once). Ownership of
	// an added service is always written at once; a crash loses at most this much drain
	// bookkeeping, which only makes the drains it covers start again (longer, never shorter).
	CheckpointInterval time.Duration
	// Now is the clock (default time.Now).
	Now     func() time.Time
	Log     logr.Logger
	Metrics *Metrics
	// Dataplane is kept in step with the owned services; nil: none.
	Dataplane Dataplane
}

// Reconciler keeps the kernel's table equal to what the VirtualServices want; see the package
// documentation.
type Reconciler struct {
	cfg   Config
	model *Model

	mu     sync.Mutex // guards states and counts, read by Status
	states map[types.NamespacedName]*vsState
	// checkpointErr is the last checkpoint problem (load or save), reported in status.
	checkpointErr error
	// owners is kept after each batch for the metrics collector (guarded by mu).
	owners map[lvs.ServiceKey]types.NamespacedName
	// lastSave is when the checkpoint was last written, retryAt when a failed write may be
	// tried again (reconciler goroutine only).
	lastSave, retryAt time.Time
	// dataplaneDirty: the dataplane must be programmed (its last program failed, or the node changed).
	dataplaneDirty bool
	// report: the entries of the last report (reconciler goroutine; under mu in Report).
	report reportCache
	// phases: where the last Sync's time went (reconciler goroutine), logged when it was slow.
	phases syncPhases
}

// syncPhases is where one Sync's time went.
type syncPhases struct {
	steps                                       int
	plan, kernel, commit, dataplane, checkpoint time.Duration
}

// keysAndValues lists the phases for a log line, in seconds.
func (p *syncPhases) keysAndValues() []any {
	return []any{"steps", p.steps, "plan", p.plan.Seconds(), "kernel", p.kernel.Seconds(),
		"commit", p.commit.Seconds(), "dataplane", p.dataplane.Seconds(), "checkpoint", p.checkpoint.Seconds()}
}

// OwnersSnapshot returns which VirtualService owns each service, as of the last batch; it may
// be called from any goroutine.
func (r *Reconciler) OwnersSnapshot() map[lvs.ServiceKey]types.NamespacedName {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.owners)
}

// publish brings the owners the collector sees up to date for the services of steps (all of
// them when steps is nil).
func (r *Reconciler) publish(steps []Step) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if steps == nil {
		r.owners = make(map[lvs.ServiceKey]types.NamespacedName, len(r.model.services))
		for k, o := range r.model.services {
			r.owners[k] = o.Owner
		}
		return
	}
	for i := range steps {
		k := steps[i].Op.Service.Key()
		if o := r.model.services[k]; o != nil {
			r.owners[k] = o.Owner
		} else {
			delete(r.owners, k)
		}
	}
}

// vsState is how far the node got with one VirtualService.
type vsState struct {
	generation int64
	services   int // desired services on the node
	refused    []Refusal
	failed     []string
	// programmed: the last sync of this generation had every step accepted.
	programmed bool
}

// NewReconciler returns a reconciler; call Start before anything else.
func NewReconciler(cfg Config) *Reconciler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	return &Reconciler{cfg: cfg, model: NewModel(), states: map[types.NamespacedName]*vsState{}}
}

// Model returns the reconciler's model (for tests and the metrics collector, from the
// reconciler's goroutine only).
func (r *Reconciler) Model() *Model { return r.model }

// Start adopts the kernel's state: it loads the checkpoint (an unusable one is moved aside
// and reported, and the agent then owns nothing) and reads the table once. It writes nothing.
func (r *Reconciler) Start(ctx context.Context) error {
	cp := &Checkpoint{}
	if r.cfg.Checkpoint != nil {
		var err error
		cp, err = r.cfg.Checkpoint.Load(r.cfg.Now())
		if err != nil && cp == nil {
			return err
		}
		if err != nil {
			r.cfg.Log.Error(err, "starting without ownership claims: services kubelvs made before are left alone and reported as conflicts")
			r.setCheckpointErr(err)
		}
	}
	table, err := r.table(ctx)
	if err != nil {
		return err
	}
	r.model.Adopt(table, cp)
	r.report.all = true
	r.publish(nil)
	r.cfg.Log.Info("adopted the kernel's IPVS table", "services", len(table), "owned", len(r.model.services), "foreign", len(r.model.foreign))
	r.dataplaneStart(ctx)
	return r.save(true)
}

func (r *Reconciler) table(ctx context.Context) ([]ipvs.TableEntry, error) {
	table, err := r.cfg.Kernel.Table(ctx)
	r.cfg.Metrics.requests(requestDump, 1+len(table))
	if err != nil {
		return nil, fmt.Errorf("agent: read the IPVS table: %w", err)
	}
	return table, nil
}

// Sync takes the services of each VirtualService in wants to what it wants, in one batch of
// kernel operations. It returns the VirtualServices some of whose steps failed (to retry).
func (r *Reconciler) Sync(ctx context.Context, wants []Want) ([]types.NamespacedName, error) {
	start, planning := r.cfg.Now(), time.Now() // the phases are wall time, whatever cfg.Now is
	steps, refusals := r.model.PlanBatch(wants, start, r.cfg.Allow)
	r.phases = syncPhases{steps: len(steps), plan: time.Since(planning)}
	failures, err := r.apply(ctx, steps)
	r.mu.Lock()
	var retry []types.NamespacedName
	for i := range wants {
		w := &wants[i]
		st := &vsState{generation: w.Generation, services: len(w.Services), refused: refusals[w.Key], failed: failures[w.Key]}
		st.programmed = len(st.failed) == 0 && err == nil
		for _, f := range refusals[w.Key] {
			if f.Reason == ReasonConflict {
				st.programmed = false
			}
		}
		if len(w.Services) == 0 && len(r.model.byOwner[w.Key]) == 0 {
			delete(r.states, w.Key)
		} else {
			r.states[w.Key] = st
		}
		r.reportChanged(w.Key)
		if len(st.failed) > 0 {
			retry = append(retry, w.Key)
		}
	}
	r.mu.Unlock()
	r.cfg.Metrics.SyncDuration.Observe(r.cfg.Now().Sub(start).Seconds())
	saving := time.Now()
	if cerr := r.saveCheckpoint(); cerr != nil && err == nil {
		err = cerr
	}
	r.phases.checkpoint = time.Since(saving)
	return retry, err
}

// apply sends the kernel operations of steps and commits the accepted steps to the model, in
// order. It returns the failure messages by owner.
//
// Service adds go in a batch of their own, before everything else: when an add fails because
// someone else made the service since the last table read, the destinations meant for it must
// not be sent, or they would land in a service kubelvs did not create. Everything else goes in
// one batch.
func (r *Reconciler) apply(ctx context.Context, steps []Step) (map[types.NamespacedName][]string, error) {
	sending := time.Now()
	results := make([]error, len(steps))
	batchErr := r.sendSteps(ctx, steps, results)
	committing := time.Now()
	r.phases.kernel = committing.Sub(sending)
	failures := map[types.NamespacedName][]string{}
	ops := opCounts{}
	defer ops.flush(r.cfg.Metrics)
	for i := range steps {
		s := &steps[i]
		if s.Op.Kind != 0 {
			ops.add(s.Op.Kind, results[i])
		}
		// The entries of the step's VirtualService and of the service's owner before it.
		r.reportChanged(s.Owner)
		if o := r.model.services[s.Op.Service.Key()]; o != nil {
			r.reportChanged(o.Owner)
		}
		if err := results[i]; err != nil {
			if s.Op.Kind == ipvs.AddService && errors.Is(err, ipvs.ErrServiceExists) {
				r.model.Refused(s.Op.Service.Key())
			}
			failures[s.Owner] = append(failures[s.Owner], err.Error())
			continue
		}
		r.model.Commit(s)
		if s.Repair != "" {
			r.cfg.Metrics.AuditRepairs.WithLabelValues(s.Repair).Inc()
		}
	}
	r.publish(steps)
	programming := time.Now()
	r.phases.commit = programming.Sub(committing)
	r.dataplaneSteps(ctx, steps, results)
	r.phases.dataplane = time.Since(programming)
	return failures, batchErr
}

// sendSteps sends the operations of steps, service adds first (see apply), and stores their
// results.
func (r *Reconciler) sendSteps(ctx context.Context, steps []Step, results []error) error {
	var adds, rest []int
	for i := range steps {
		switch steps[i].Op.Kind {
		case 0:
		case ipvs.AddService:
			adds = append(adds, i)
		default:
			rest = append(rest, i)
		}
	}
	batchErr := r.send(ctx, steps, adds, results)
	notAdded := map[lvs.ServiceKey]error{}
	for _, i := range adds {
		if results[i] != nil {
			notAdded[steps[i].Op.Service.Key()] = results[i]
		}
	}
	if len(notAdded) > 0 {
		kept := rest[:0]
		for _, i := range rest {
			if err := notAdded[steps[i].Op.Service.Key()]; err != nil {
				results[i] = fmt.Errorf("agent: not sent: its service was not added: %w", err)
				continue
			}
			kept = append(kept, i)
		}
		rest = kept
	}
	if err := r.send(ctx, steps, rest, results); err != nil && batchErr == nil {
		batchErr = err
	}
	return batchErr
}

// send applies the operations of steps[idx...] in one batch and stores their results.
func (r *Reconciler) send(ctx context.Context, steps []Step, idx []int, results []error) error {
	if len(idx) == 0 {
		return nil
	}
	ops := make([]ipvs.Op, len(idx))
	for j, i := range idx {
		ops[j] = steps[i].Op
	}
	res, err := r.cfg.Kernel.Apply(ctx, ops)
	r.cfg.Metrics.requests(requestWrite, len(ops))
	for j, i := range idx {
		switch {
		case j < len(res) && res[j] != nil:
			results[i] = res[j]
		case j < len(res):
		case err != nil:
			results[i] = err
		default:
			results[i] = errors.New("agent: the IPVS client returned no result for the operation")
		}
	}
	if err != nil {
		return fmt.Errorf("agent: apply %d IPVS operations: %w", len(ops), err)
	}
	return nil
}

// Refused returns the VirtualServices some of whose services were refused for a conflict:
// after an audit they are synced again, since the foreign service may be gone.
func (r *Reconciler) Refused() []types.NamespacedName {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []types.NamespacedName
	for k, st := range r.states {
		if len(st.refused) > 0 {
			out = append(out, k)
		}
	}
	return out
}

// Audit reads the kernel's table and repairs every difference in the services the agent owns.
// It returns the number of repairs by kind.
func (r *Reconciler) Audit(ctx context.Context) (map[string]int, error) {
	since, start := r.model.Seq(), time.Now()
	table, err := r.ReadTable(ctx)
	if err != nil {
		return nil, err
	}
	return r.Repair(ctx, table, since, start)
}

// ReadTable reads the kernel's whole table for an audit. Unlike the rest of the reconciler
// it may run on another goroutine while the reconciler goes on: the loop reads the table
// without stopping syncs and drains, and passes it to Repair with the model's Seq from before
// the read.
func (r *Reconciler) ReadTable(ctx context.Context) ([]ipvs.TableEntry, error) { return r.table(ctx) }

// Repair repairs every difference between table (read from when the model's Seq was since,
// starting at start) and the services the agent owns that did not change since, and returns
// the number of repairs by kind.
func (r *Reconciler) Repair(ctx context.Context, table []ipvs.TableEntry, since uint64, start time.Time) (map[string]int, error) {
	defer func() { r.cfg.Metrics.AuditDuration.Observe(time.Since(start).Seconds()) }()
	steps := r.model.PlanAuditSince(table, since)
	repairs := map[string]int{}
	for i := range steps {
		if steps[i].Repair != "" {
			repairs[steps[i].Repair]++
		}
	}
	failures, err := r.apply(ctx, steps)
	for owner, f := range failures {
		r.cfg.Log.Info("audit repair failed", "virtualService", owner, "errors", f)
	}
	if len(repairs) > 0 {
		r.cfg.Log.Info("audit repaired drift", "repairs", repairs)
	}
	r.dataplaneAudit(ctx)
	r.report.all = true // the audit's safety net covers the report's entries too
	if cerr := r.saveCheckpoint(); cerr != nil && err == nil {
		err = cerr
	}
	return repairs, err
}

// PollDrains dumps the destinations of each service that has draining destinations (one dump
// per service, never the whole table) and removes those that are done.
func (r *Reconciler) PollDrains(ctx context.Context) error {
	return r.FinishDrains(ctx, r.ReadDrains(ctx, r.DrainTargets()))
}

// DrainPoll is what a drain poll dumps: the services with draining destinations, as the model
// had them when its Seq was Since.
type DrainPoll struct {
	Since    uint64
	Services []lvs.Service
}

// DrainRead is a DrainPoll's dumps, one per service (Dests[i] and Errs[i] are Services[i]'s).
type DrainRead struct {
	DrainPoll
	Dests [][]ipvs.Destination
	Errs  []error
}

// DrainTargets returns the services a drain poll dumps.
func (r *Reconciler) DrainTargets() DrainPoll {
	p := DrainPoll{Since: r.model.Seq()}
	for _, k := range r.model.Draining() {
		p.Services = append(p.Services, r.model.services[k].Service)
	}
	return p
}

// ReadDrains dumps the destinations of p's services. Unlike the rest of the reconciler it may
// run on another goroutine while the reconciler goes on (it reads the kernel only): the loop
// polls drains without stopping syncs, and passes the read to FinishDrains.
func (r *Reconciler) ReadDrains(ctx context.Context, p DrainPoll) DrainRead {
	d := DrainRead{DrainPoll: p, Dests: make([][]ipvs.Destination, len(p.Services)), Errs: make([]error, len(p.Services))}
	for i := range p.Services {
		d.Dests[i], d.Errs[i] = r.cfg.Kernel.Destinations(ctx, &p.Services[i])
		r.cfg.Metrics.requests(requestDump, 1)
	}
	return d
}

// FinishDrains removes the draining destinations d shows done, and the services being removed
// that have none left. A service the model changed after the poll began is left to the next
// poll: its dump may predate the change (a destination added since would look gone).
func (r *Reconciler) FinishDrains(ctx context.Context, d DrainRead) error {
	var steps []Step
	var errs []error
	now := r.cfg.Now()
	for i := range d.Services {
		k := d.Services[i].Key()
		if r.model.ChangedSince(k, d.Since) {
			continue
		}
		dests, err := d.Dests[i], d.Errs[i]
		if errors.Is(err, ipvs.ErrServiceNotFound) {
			dests, err = nil, nil // gone: PlanDrain forgets its destinations; the audit re-creates a wanted service
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("agent: poll drain of %s: %w", k, err))
			continue
		}
		steps = append(steps, r.model.PlanDrain(k, dests, now)...)
	}
	_, err := r.apply(ctx, steps)
	errs = append(errs, err, r.saveCheckpoint())
	r.cfg.Metrics.DrainingDestinations.Set(float64(r.model.DrainingDestinations()))
	return errors.Join(errs...)
}

// saveCheckpoint writes what changed in the checkpoint: at once when a service was added,
// otherwise at most once per CheckpointInterval (CheckpointDue tells the loop when).
func (r *Reconciler) saveCheckpoint() error { return r.save(false) }

// CheckpointDue returns when a checkpoint write that waits for CheckpointInterval is due;
// false when none waits.
func (r *Reconciler) CheckpointDue() (time.Time, bool) {
	if r.cfg.Checkpoint == nil || !r.model.CheckpointChanged() {
		return time.Time{}, false
	}
	due := r.lastSave.Add(r.checkpointInterval())
	if r.retryAt.After(due) {
		due = r.retryAt
	}
	return due, true
}

// FlushCheckpoint writes what changed in the checkpoint now (when CheckpointDue comes, and
// at shutdown).
func (r *Reconciler) FlushCheckpoint() error { return r.save(true) }

func (r *Reconciler) save(force bool) error {
	if r.cfg.Checkpoint == nil || !r.model.CheckpointChanged() {
		return nil
	}
	now := r.cfg.Now()
	if !force && !r.model.CheckpointUrgent() && now.Sub(r.lastSave) < r.checkpointInterval() {
		return nil
	}
	set, gone := r.model.CheckpointChanges()
	wrote, err := r.cfg.Checkpoint.SaveChanges(r.cfg.Node, set, gone)
	if err == nil {
		r.model.CheckpointSaved()
		r.lastSave = now
	} else {
		r.retryAt = now.Add(time.Second)
	}
	if wrote {
		r.cfg.Metrics.CheckpointWrites.Inc()
	}
	r.setCheckpointErr(err)
	return err
}

// checkpointBytesPerSecond spaces the writes that wait (drains, generations, removals) of a
// large checkpoint: the file is written whole (about 130 bytes a service), and at 10,000
// services once a second while endpoints churn it cost the loop tens of milliseconds and the
// disk an fsynced 1.3 MB/s.
const checkpointBytesPerSecond = 256 << 10

// checkpointInterval is the least time between two checkpoint writes that wait:
// CheckpointInterval, or a second per checkpointBytesPerSecond of the file when longer (a crash
// then loses at most that much drain bookkeeping, which only makes those drains start again).
func (r *Reconciler) checkpointInterval() time.Duration {
	d := r.cfg.CheckpointInterval
	if d <= 0 || r.cfg.Checkpoint == nil {
		return d
	}
	return max(d, time.Duration(float64(r.cfg.Checkpoint.Size())/checkpointBytesPerSecond*float64(time.Second)))
}

func (r *Reconciler) setCheckpointErr(err error) {
	r.mu.Lock()
	r.checkpointErr = err
	r.mu.Unlock()
}
