package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// FieldOwner is the server-side apply field manager of everything the agent writes.
const FieldOwner = "kubelvs-agent"

// StatusWriter keeps the node's IPVSNode (created owner-referenced to the Node, its status
// written by server-side apply only when it changes) and renews the node's Lease.
type StatusWriter struct {
	Client client.Client
	Node   string
	Agent  v1alpha1.AgentInfo
	Kernel v1alpha1.KernelInfo
	// LeaseNamespace and LeaseDuration: the Lease "kubelvs-agent-<node>"; empty namespace: none.
	LeaseNamespace string
	LeaseDuration  time.Duration
	Log            logr.Logger
	Now            func() time.Time

	// ExtraConditions, when set, adds conditions of other parts of the agent (pod taskstats).
	ExtraConditions func() []metav1.Condition

	// MinInterval is the least time between two status writes (default 1 s): a burst of
	// changes costs one write, and the writes never hold up programming. A large status waits
	// longer: one second per BytesPerSecond of the last write (default 128 KiB), so that a
	// node with 10,000 VirtualServices (a 1.3 MB status) writes it every 10 s while endpoints
	// churn, not every second (each write is an etcd write of the whole object, and its encoding
	// and the answer's decoding cost the node CPU).
	MinInterval    time.Duration
	BytesPerSecond int

	mu        sync.Mutex
	pending   *NodeReport // the newest report not yet written
	wake      chan struct{}
	nodeUID   string
	ipvsErr   error
	ipvsKnown bool
	last      *v1alpha1.IPVSNodeStatus // last written
	created   bool
	leaseAt   time.Time
	lastSize  int // bytes of the last status write's body
}

// interval is the time to wait after a status write.
func (w *StatusWriter) interval() time.Duration {
	d := w.MinInterval
	if d <= 0 {
		d = time.Second
	}
	bps := w.BytesPerSecond
	if bps <= 0 {
		bps = 128 << 10
	}
	w.mu.Lock()
	size := w.lastSize
	w.mu.Unlock()
	return max(d, time.Duration(float64(size)/float64(bps)*float64(time.Second)))
}

func (w *StatusWriter) now() time.Time {
	if w == nil || w.Now == nil {
		return time.Now()
	}
	return w.Now()
}

// SetKernel replaces what IPVSNode reports about the kernel (once IPVS could be opened).
func (w *StatusWriter) SetKernel(k v1alpha1.KernelInfo) {
	w.mu.Lock()
	w.Kernel = k
	w.mu.Unlock()
}

func (w *StatusWriter) setIPVS(err error) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.ipvsErr, w.ipvsKnown = err, true
	w.mu.Unlock()
}

func (w *StatusWriter) setNode(n *corev1.Node) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.nodeUID = string(n.UID)
	w.mu.Unlock()
}

// LeaseName is the name of a node's agent Lease.
func LeaseName(node string) string { return "kubelvs-agent-" + node }

// Status builds the IPVSNode status from a report, carrying transition times over from prev.
func (w *StatusWriter) Status(rep NodeReport, prev *v1alpha1.IPVSNodeStatus) v1alpha1.IPVSNodeStatus {
	w.mu.Lock()
	ipvsErr, known, kernel := w.ipvsErr, w.ipvsKnown, w.Kernel
	w.mu.Unlock()
	st := v1alpha1.IPVSNodeStatus{Agent: ptr.To(w.Agent), Kernel: ptr.To(kernel), Counts: ptr.To(rep.Counts),
		VirtualServices: rep.VirtualServices, Dataplane: rep.Dataplane}
	if prev != nil {
		st.Conditions = append(st.Conditions, prev.Conditions...)
	}
	now := metav1.NewTime(w.now())
	set := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: now})
	}
	switch {
	case !known:
		set(v1alpha1.NodeConditionIPVSAvailable, false, "Unknown", "the agent has not read the IPVS table yet")
	case ipvsErr != nil:
		set(v1alpha1.NodeConditionIPVSAvailable, false, "IPVSUnavailable", truncate(ipvsErr.Error(), 1024))
	default:
		set(v1alpha1.NodeConditionIPVSAvailable, true, "IPVSAvailable", "the kernel answers the IPVS family")
	}
	if len(rep.Conflicts) > 0 {
		set(v1alpha1.NodeConditionConflictFree, false, ReasonConflict, truncate("services kubelvs did not create have keys VirtualServices want: "+strings.Join(rep.Conflicts, "; "), 1024))
	} else {
		set(v1alpha1.NodeConditionConflictFree, true, "NoConflicts", "no service kubelvs did not create has a key a VirtualService wants")
	}
	dataplaneCondition(&rep, set)
	if w.ExtraConditions != nil {
		for _, c := range w.ExtraConditions() {
			set(c.Type, c.Status == metav1.ConditionTrue, c.Reason, c.Message)
		}
	}
	failed := 0
	for _, e := range rep.VirtualServices {
		if e.State == v1alpha1.StateFailed {
			failed++
		}
	}
	switch {
	case !known || ipvsErr != nil:
		set(v1alpha1.NodeConditionReady, false, "IPVSUnavailable", "IPVS is not available")
	case rep.CheckpointError != "":
		set(v1alpha1.NodeConditionReady, false, "CheckpointError", truncate(rep.CheckpointError, 1024))
	case failed > 0:
		set(v1alpha1.NodeConditionReady, false, v1alpha1.ReasonProgrammingFailed, fmt.Sprintf("%d VirtualServices failed on this node", failed))
	case rep.DataplaneError != "":
		set(v1alpha1.NodeConditionReady, false, "DataplaneError", "the dataplane is not programmed (see DataplaneReady)")
	default:
		set(v1alpha1.NodeConditionReady, true, v1alpha1.ReasonProgrammed, "the node's IPVS table matches its VirtualServices")
	}
	return st
}

// Publish hands the writer the newest report; it returns at once (Run writes it).
func (w *StatusWriter) Publish(rep NodeReport) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.pending = &rep
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
	}
	wake := w.wake
	w.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

// Run writes published reports and renews the Lease until ctx ends, on its own goroutine:
// the API server's latency (or absence) never delays the kernel's programming.
func (w *StatusWriter) Run(ctx context.Context) {
	if w == nil || w.Client == nil {
		return
	}
	w.mu.Lock()
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
	}
	wake := w.wake
	w.mu.Unlock()
	lease := time.NewTicker(max(w.LeaseDuration/4, time.Second))
	defer lease.Stop()
	var next <-chan time.Time // while set, the next status write waits for it
	for {
		var wakeCh <-chan struct{}
		if next == nil {
			wakeCh = wake
		}
		select {
		case <-ctx.Done():
			return
		case <-lease.C:
			w.renewLease(ctx) // also while a status write waits: the Lease must not expire
		case <-next:
			next = nil
		case <-wakeCh:
			w.mu.Lock()
			rep := w.pending
			w.pending = nil
			w.mu.Unlock()
			if rep != nil {
				w.write(ctx, *rep)
			}
			next = time.After(w.interval())
		}
	}
}

// write writes the IPVSNode's status when it differs from what was last written, and renews
// the Lease when it is due. Failures are logged and retried on the next call: while the API
// server is unreachable the agent goes on programming and draining.
func (w *StatusWriter) write(ctx context.Context, rep NodeReport) {
	if w == nil || w.Client == nil {
		return
	}
	w.renewLease(ctx)
	w.mu.Lock()
	prev, uid := w.last, w.nodeUID
	w.mu.Unlock()
	st := w.Status(rep, prev)
	if prev != nil && reflect.DeepEqual(*prev, st) {
		return
	}
	if err := w.ensure(ctx, uid); err != nil {
		w.Log.Error(err, "creating the IPVSNode")
		return
	}
	if err := w.apply(ctx, &st); err != nil {
		w.Log.Error(err, "writing the IPVSNode status")
		return
	}
	w.mu.Lock()
	w.last = &st
	w.mu.Unlock()
}

// ensure creates the IPVSNode, owner-referenced to the Node so that it goes with it.
func (w *StatusWriter) ensure(ctx context.Context, uid string) error {
	if w.created {
		return nil
	}
	if uid == "" {
		return fmt.Errorf("agent: the Node %s is not known yet", w.Node)
	}
	obj := map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "IPVSNode",
		"metadata": map[string]any{"name": w.Node, "ownerReferences": []any{map[string]any{
			"apiVersion": "v1", "kind": "Node", "name": w.Node, "uid": uid,
		}}},
	}
	ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: obj})
	if err := w.Client.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("agent: apply IPVSNode %s: %w", w.Node, err)
	}
	w.created = true
	return nil
}

// statusApply is the server-side apply body of the IPVSNode's status. It is encoded from
// the typed status: converting it to an unstructured object first and decoding the answer
// into one cost three times the CPU at thousands of entries.
type statusApply struct {
	APIVersion string                   `json:"apiVersion"`
	Kind       string                   `json:"kind"`
	Metadata   statusApplyMeta          `json:"metadata"`
	Status     *v1alpha1.IPVSNodeStatus `json:"status"`
}

type statusApplyMeta struct {
	Name string `json:"name"`
}

func (w *StatusWriter) apply(ctx context.Context, st *v1alpha1.IPVSNodeStatus) error {
	body, err := json.Marshal(statusApply{APIVersion: v1alpha1.GroupVersion.String(), Kind: "IPVSNode",
		Metadata: statusApplyMeta{Name: w.Node}, Status: st})
	if err != nil {
		return fmt.Errorf("agent: encode IPVSNode %s status: %w", w.Node, err)
	}
	w.mu.Lock()
	w.lastSize = len(body)
	w.mu.Unlock()
	// The answer is read as metadata only: decoded whole, the object the server sends back
	// (every entry) cost more CPU than the write, in bursts that delayed the node's changes.
	out := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "IPVSNode"},
		ObjectMeta: metav1.ObjectMeta{Name: w.Node}}
	if err := w.Client.Status().Patch(ctx, out, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		if apierrors.IsNotFound(err) {
			w.created = false // deleted behind our back: create it again next time
		}
		return fmt.Errorf("agent: apply IPVSNode %s status: %w", w.Node, err)
	}
	return nil
}

// renewLease renews the Lease every quarter of its duration.
func (w *StatusWriter) renewLease(ctx context.Context) {
	if w.LeaseNamespace == "" || w.LeaseDuration <= 0 {
		return
	}
	now := w.now()
	if !w.leaseAt.IsZero() && now.Sub(w.leaseAt) < w.LeaseDuration/4 {
		return
	}
	if err := w.putLease(ctx, now); err != nil {
		w.Log.Error(err, "renewing the Lease")
		return
	}
	w.leaseAt = now
}

func (w *StatusWriter) putLease(ctx context.Context, now time.Time) error {
	key := client.ObjectKey{Namespace: w.LeaseNamespace, Name: LeaseName(w.Node)}
	var l coordinationv1.Lease
	err := w.Client.Get(ctx, key, &l)
	if apierrors.IsNotFound(err) {
		l = coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		fillLease(&l, w.Node, w.LeaseDuration, now)
		if err := w.Client.Create(ctx, &l); err != nil {
			return fmt.Errorf("agent: create Lease %s: %w", key, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent: get Lease %s: %w", key, err)
	}
	fillLease(&l, w.Node, w.LeaseDuration, now)
	if err := w.Client.Update(ctx, &l); err != nil {
		return fmt.Errorf("agent: renew Lease %s: %w", key, err)
	}
	return nil
}

func fillLease(l *coordinationv1.Lease, node string, d time.Duration, now time.Time) {
	l.Spec.HolderIdentity = ptr.To(node)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(d / time.Second))
	l.Spec.RenewTime = &metav1.MicroTime{Time: now}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
