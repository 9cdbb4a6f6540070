package agent

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/desired"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// bigWants is n VirtualServices of one TCP service with d destinations each.
func bigWants(n, d int) []Want {
	wants := make([]Want, n)
	for i := range wants {
		vs := types.NamespacedName{Namespace: "bench", Name: fmt.Sprintf("vs-%d", i)}
		a := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
		s := desired.Service{Service: lvs.Service{ServiceKey: lvs.ServiceKey{Family: lvs.IPv4, Protocol: lvs.TCP, Address: a, Port: 80}, Scheduler: "wrr"},
			Owner: vs, Generation: 1, DrainTimeout: time.Minute}
		for j := 0; j < d; j++ {
			s.Destinations = append(s.Destinations, desired.Destination{Destination: lvs.Destination{
				Address: netip.AddrFrom4([4]byte{10, 244, byte(j), byte(i % 250)}), Port: uint16(8000 + i/250), Weight: 1}})
		}
		wants[i] = Want{Key: vs, Generation: 1, Services: []desired.Service{s}}
	}
	return wants
}

func newTestReconciler(t *testing.T, k Kernel, dir string, c *clock) *Reconciler {
	t.Helper()
	r := NewReconciler(Config{Node: "n1", Kernel: k, Now: c.Now,
		Checkpoint: &CheckpointFile{Path: filepath.Join(dir, "agent-checkpoint.json")}})
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return r
}

func mustSync(t *testing.T, r *Reconciler, wants ...Want) {
	t.Helper()
	retry, err := r.Sync(t.Context(), wants)
	if err != nil || len(retry) > 0 {
		t.Fatalf("sync: %v, retry %v", err, retry)
	}
}

func requests(r *Reconciler, kind string) int {
	return int(testutil.ToFloat64(r.cfg.Metrics.NetlinkRequests.WithLabelValues(kind)))
}

// At 10,000 services × 10 destinations: programming from empty is one write per object, a
// sync without change sends nothing, one endpoint change is exactly one operation, and a
// restart over the programmed table writes nothing.
func TestReconcilerAtScale(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	r := newTestReconciler(t, fk, dir, c)
	wants := bigWants(10000, 10)
	mustSync(t, r, wants...)
	if w, _ := fk.counts(); w != 110000 {
		t.Fatalf("programming from empty took %d writes, want 110,000", w)
	}
	fk.resetCounts()
	mustSync(t, r, wants...)
	if w, d := fk.counts(); w != 0 || d != 0 {
		t.Errorf("a sync without change sent %d writes and %d dumps, want none", w, d)
	}
	changed := wants[4242]
	changed.Services = []desired.Service{changed.Services[0]}
	changed.Services[0].Destinations = append([]desired.Destination(nil), changed.Services[0].Destinations...)
	changed.Services[0].Destinations[3].Weight = 5
	writes := testutil.ToFloat64(r.cfg.Metrics.CheckpointWrites)
	mustSync(t, r, changed)
	if got := testutil.ToFloat64(r.cfg.Metrics.CheckpointWrites) - writes; got != 0 {
		t.Errorf("a weight change wrote the checkpoint %v times; it records no weights", got)
	}
	if w, _ := fk.counts(); w != 1 || fk.kind(ipvs.UpdateDestination) != 1 {
		t.Errorf("one endpoint change took %d writes (%v), want 1 destination update", w, fk.kinds())
	}
	if got := requests(r, requestWrite); got != 110001 {
		t.Errorf("kubelvs_agent_netlink_requests_total{kind=write} = %d, want 110,001", got)
	}

	// Restart: a new reconciler over the same kernel and checkpoint.
	wants[4242] = changed
	fk.resetCounts()
	r2 := newTestReconciler(t, fk, dir, c)
	mustSync(t, r2, wants...)
	if w, d := fk.counts(); w != 0 || d != 10001 {
		t.Errorf("restart: %d writes and %d dumps, want 0 writes and one table read (10,001 dumps)", w, d)
	}
}

func TestReconcilerDrainSurvivesRestart(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	k := key(lvs.TCP, "192.0.2.10", 80)
	d2 := lvs.DestinationKey{Address: netip.MustParseAddr("10.1.0.2"), Port: 8080}
	r := newTestReconciler(t, fk, dir, c)
	mustSync(t, r, Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))}})
	fk.setConns(k, d2, 1, 0)
	c.now = t0.Add(10 * time.Second)
	one := Want{Key: web, Generation: 2, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}}
	mustSync(t, r, one)
	if err := r.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{
		"-A TCP 192.0.2.10:80 -s wrr",
		"-a TCP 192.0.2.10:80 -r 10.1.0.1:8080 -w 1 Masquerade",
		"-a TCP 192.0.2.10:80 -r 10.1.0.2:8080 -w 0 Masquerade",
	}, fk.dump()); diff != "" {
		t.Fatalf("draining table (-want +got):\n%s", diff)
	}

	// The agent is killed and starts again 30 s later: no write, and the drain keeps its start.
	c.now = t0.Add(40 * time.Second)
	fk.resetCounts()
	r2 := newTestReconciler(t, fk, dir, c)
	mustSync(t, r2, one)
	if w, _ := fk.counts(); w != 0 {
		t.Errorf("restart wrote %d times, want 0", w)
	}
	od := r2.Model().Owned(k).Dest(d2)
	if od == nil || !od.DrainSince.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("after restart the drain is %+v, want it started at +10s", od)
	}
	c.now = t0.Add(69 * time.Second)
	if err := r2.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	if w, _ := fk.counts(); w != 0 {
		t.Errorf("the drain ended before its deadline (%d writes)", w)
	}
	c.now = t0.Add(70 * time.Second)
	if err := r2.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	if w, _ := fk.counts(); w != 1 || fk.kind(ipvs.DeleteDestination) != 1 {
		t.Errorf("at the deadline: %d writes (%v), want one destination delete", w, fk.kinds())
	}
}

// A drain poll's dumps are made while the reconciler goes on: the result of a service that
// changed after the poll began is left to the next poll (its dump predates the change), and
// the others' are applied.
func TestReconcilerDrainPollOvertaken(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	r := newTestReconciler(t, fk, dir, c)
	ka, kb := key(lvs.TCP, "192.0.2.10", 80), key(lvs.TCP, "192.0.2.11", 80)
	other := types.NamespacedName{Namespace: "ns", Name: "other"}
	mustSync(t, r,
		Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(ka, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))}},
		Want{Key: other, Generation: 1, Services: []desired.Service{wsvc(kb, "wrr", dst("10.2.0.1", 8080, 1), dst("10.2.0.2", 8080, 1))}})
	// Both lose their second destination, which drains (no connections: done at the next poll).
	mustSync(t, r,
		Want{Key: web, Generation: 2, Services: []desired.Service{wsvc(ka, "wrr", dst("10.1.0.1", 8080, 1))}},
		Want{Key: other, Generation: 2, Services: []desired.Service{wsvc(kb, "wrr", dst("10.2.0.1", 8080, 1))}})
	poll := r.DrainTargets()
	if len(poll.Services) != 2 {
		t.Fatalf("the poll dumps %d services, want 2", len(poll.Services))
	}
	read := r.ReadDrains(t.Context(), poll)
	// After the dumps, web gets a destination the dump does not show.
	mustSync(t, r, Want{Key: web, Generation: 3, Services: []desired.Service{wsvc(ka, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.3", 8080, 1))}})
	fk.resetCounts()
	if err := r.FinishDrains(t.Context(), read); err != nil {
		t.Fatal(err)
	}
	if w, _ := fk.counts(); w != 1 || fk.kind(ipvs.DeleteDestination) != 1 {
		t.Errorf("finishing the overtaken poll: %d writes (%v), want other's drained destination deleted only", w, fk.kinds())
	}
	if diff := cmp.Diff([]string{
		"-A TCP 192.0.2.10:80 -s wrr",
		"-A TCP 192.0.2.11:80 -s wrr",
		"-a TCP 192.0.2.10:80 -r 10.1.0.1:8080 -w 1 Masquerade",
		"-a TCP 192.0.2.10:80 -r 10.1.0.2:8080 -w 0 Masquerade",
		"-a TCP 192.0.2.10:80 -r 10.1.0.3:8080 -w 1 Masquerade",
		"-a TCP 192.0.2.11:80 -r 10.2.0.1:8080 -w 1 Masquerade",
	}, fk.dump()); diff != "" {
		t.Errorf("table after the overtaken poll (-want +got):\n%s", diff)
	}
	if r.Model().Owned(ka).Dest(lvs.DestinationKey{Address: netip.MustParseAddr("10.1.0.3"), Port: 8080}) == nil {
		t.Errorf("the model forgot the destination added after the dump")
	}
	// The next poll dumps web anew and ends its drain.
	fk.resetCounts()
	if err := r.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	if w, d := fk.counts(); w != 1 || d != 1 || fk.kind(ipvs.DeleteDestination) != 1 {
		t.Errorf("the next poll: %d writes (%v), %d dumps; want one delete after one dump", w, fk.kinds(), d)
	}
}

// A VirtualService deleted while the agent was down is drained and removed when it starts
// again; a service someone else made is never touched.
func TestReconcilerCleansUpAfterDowntime(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	k := key(lvs.TCP, "192.0.2.10", 80)
	other := &lvs.Service{ServiceKey: key(lvs.TCP, "192.0.2.10", 22), Scheduler: "rr"}
	fk.hand(ipvs.Op{Kind: ipvs.AddService, Service: other})
	r := newTestReconciler(t, fk, dir, c)
	mustSync(t, r, Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}})

	r2 := newTestReconciler(t, fk, dir, c)
	// The restarted agent's informers no longer list web; the runner syncs every owner of the
	// model, so web gets an empty Want.
	owners := r2.Model().Owners()
	if diff := cmp.Diff([]types.NamespacedName{web}, owners); diff != "" {
		t.Fatalf("owners after restart (-want +got):\n%s", diff)
	}
	mustSync(t, r2, Want{Key: web})
	fk.setConns(k, lvs.DestinationKey{Address: netip.MustParseAddr("10.1.0.1"), Port: 8080}, 0, 0)
	if err := r2.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"-A TCP 192.0.2.10:22 -s rr"}, fk.dump()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	rep := r2.Report()
	if len(rep.VirtualServices) != 0 {
		t.Errorf("report still lists %v", rep.VirtualServices)
	}
}

// A foreign service on a wanted key is a conflict: reported, left alone, nothing else blocked.
func TestReconcilerConflict(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	k := key(lvs.TCP, "192.0.2.10", 80)
	fk.hand(ipvs.Op{Kind: ipvs.AddService, Service: &lvs.Service{ServiceKey: k, Scheduler: "rr"}})
	r := newTestReconciler(t, fk, dir, c)
	k2 := key(lvs.TCP, "192.0.2.11", 80)
	mustSync(t, r, Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}},
		Want{Key: api, Generation: 1, Services: []desired.Service{func() desired.Service {
			s := wsvc(k2, "wrr", dst("10.1.0.1", 8080, 1))
			s.Owner = api
			return s
		}()}})
	if diff := cmp.Diff([]string{
		"-A TCP 192.0.2.10:80 -s rr",
		"-A TCP 192.0.2.11:80 -s wrr",
		"-a TCP 192.0.2.11:80 -r 10.1.0.1:8080 -w 1 Masquerade",
	}, fk.dump()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	rep := r.Report()
	want := []string{"default/api Programmed", "default/web Failed Conflict"}
	var got []string
	for _, e := range rep.VirtualServices {
		s := e.Namespace + "/" + e.Name + " " + string(e.State)
		if e.State == v1alpha1.StateFailed {
			s += " " + e.Reason
		}
		got = append(got, s)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"default/web: TCP 192.0.2.10:80"}, rep.Conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}

	// The foreign service goes; after the next audit web is synced again and gets its key.
	fk.hand(ipvs.Op{Kind: ipvs.DeleteService, Service: &lvs.Service{ServiceKey: k}})
	if _, err := r.Audit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]types.NamespacedName{web}, r.Refused()); diff != "" {
		t.Fatalf("refused (-want +got):\n%s", diff)
	}
	mustSync(t, r, Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}})
	if diff := cmp.Diff([]string{
		"-A TCP 192.0.2.10:80 -s wrr",
		"-A TCP 192.0.2.11:80 -s wrr",
		"-a TCP 192.0.2.10:80 -r 10.1.0.1:8080 -w 1 Masquerade",
		"-a TCP 192.0.2.11:80 -r 10.1.0.1:8080 -w 1 Masquerade",
	}, fk.dump()); diff != "" {
		t.Errorf("table once the foreign service went (-want +got):\n%s", diff)
	}
}

// An audit repairs drift in owned services and counts each repair; with no drift it writes
// nothing.
func TestReconcilerAudit(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	k := key(lvs.TCP, "192.0.2.10", 80)
	r := newTestReconciler(t, fk, dir, c)
	want := Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))}}
	mustSync(t, r, want)
	before := fk.dump()
	fk.resetCounts()
	repairs, err := r.Audit(t.Context())
	if err != nil || len(repairs) != 0 {
		t.Fatalf("audit without drift: %v %v", repairs, err)
	}
	if w, d := fk.counts(); w != 0 || d != 2 {
		t.Errorf("audit without drift: %d writes, %d dumps; want 0 and 2", w, d)
	}
	svc := &lvs.Service{ServiceKey: k, Scheduler: "wrr"}
	fk.hand(ipvs.Op{Kind: ipvs.DeleteService, Service: svc})
	repairs, err = r.Audit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{RepairServiceMissing: 1, RepairDestinationMissing: 2}, repairs); diff != "" {
		t.Errorf("repairs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, fk.dump()); diff != "" {
		t.Errorf("table after repair (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(r.cfg.Metrics.AuditRepairs.WithLabelValues(RepairDestinationMissing)); got != 2 {
		t.Errorf("kubelvs_agent_audit_repairs_total{kind=DestinationMissing} = %v, want 2", got)
	}
}

// A service someone makes after the agent's last table read, on a key a VirtualService then
// wants: the add fails, and the destinations meant for it are not sent into the foreign service.
func TestReconcilerRaceWithForeignAdd(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	r := newTestReconciler(t, fk, dir, c)
	k := key(lvs.TCP, "192.0.2.10", 80)
	fk.hand(ipvs.Op{Kind: ipvs.AddService, Service: &lvs.Service{ServiceKey: k, Scheduler: "rr"}})
	retry, err := r.Sync(t.Context(), []Want{{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}}})
	if err != nil || len(retry) != 1 {
		t.Fatalf("sync: %v, retry %v; want web to retry", err, retry)
	}
	if diff := cmp.Diff([]string{"-A TCP 192.0.2.10:80 -s rr"}, fk.dump()); diff != "" {
		t.Errorf("the foreign service changed (-want +got):\n%s", diff)
	}
	if !r.Model().Foreign(k) {
		t.Errorf("the key is not recorded as foreign")
	}
	// The retry is refused as a conflict, with nothing sent.
	fk.resetCounts()
	mustSync(t, r, Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}})
	if w, _ := fk.counts(); w != 0 {
		t.Errorf("the retry sent %d writes", w)
	}
	if rep := r.Report(); len(rep.Conflicts) != 1 {
		t.Errorf("conflicts %v", rep.Conflicts)
	}
}

// An audit whose table read began before changes the loop made meanwhile (the read runs on
// its own goroutine) repairs nothing those changes touched: a service added after the read is
// not re-added, one deleted after it is not taken for a foreign service, and an edit made by
// hand to a service that did not change is still repaired.
func TestReconcilerAuditOfAnOlderRead(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	r := newTestReconciler(t, fk, dir, c)
	kOld, kNew, kDel := key(lvs.TCP, "192.0.2.10", 80), key(lvs.TCP, "192.0.2.11", 80), key(lvs.TCP, "192.0.2.12", 80)
	other := types.NamespacedName{Namespace: "default", Name: "other"}
	gone := types.NamespacedName{Namespace: "default", Name: "gone"}
	mustSync(t, r,
		Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(kOld, "wrr", dst("10.1.0.1", 8080, 1))}},
		Want{Key: gone, Generation: 1, Services: []desired.Service{wsvc(kDel, "wrr")}})
	since := r.Model().Seq()
	table, err := r.ReadTable(t.Context()) // the read, before the changes below
	must(t, err)
	// Meanwhile: a new VirtualService is programmed, another is deleted (no destinations: its
	// service goes at once), and someone edits the weight of an untouched service by hand.
	mustSync(t, r, Want{Key: other, Generation: 1, Services: []desired.Service{wsvc(kNew, "wrr", dst("10.1.0.3", 8080, 1))}},
		Want{Key: gone})
	if r.Model().Owned(kDel) != nil {
		t.Fatalf("the deleted VirtualService's service is still owned")
	}
	fk.hand(ipvs.Op{Kind: ipvs.UpdateDestination, Service: &lvs.Service{ServiceKey: kOld, Scheduler: "wrr"},
		Destination: &lvs.Destination{Address: netip.MustParseAddr("10.1.0.1"), Port: 8080, Weight: 7, Forwarding: lvs.Masquerade}})
	for i := range table {
		if table[i].Key() == kOld {
			table[i].Destinations = []ipvs.Destination{{Destination: lvs.Destination{Family: lvs.IPv4,
				Address: netip.MustParseAddr("10.1.0.1"), Port: 8080, Weight: 7, Forwarding: lvs.Masquerade}}}
		}
	}
	fk.resetCounts()
	repairs, err := r.Repair(t.Context(), table, since, time.Now())
	must(t, err)
	if diff := cmp.Diff(map[string]int{RepairDestinationChanged: 1}, repairs); diff != "" {
		t.Errorf("repairs (-want +got):\n%s", diff)
	}
	if w, _ := fk.counts(); w != 1 {
		t.Errorf("%d writes, want the one repair", w)
	}
	if r.Model().Foreign(kDel) {
		t.Errorf("the service deleted after the read is taken for a foreign one")
	}
	if rep := r.Report(); len(rep.Conflicts) != 0 {
		t.Errorf("conflicts %v", rep.Conflicts)
	}
}

// A drain whose start a crash kept out of the checkpoint (the weight 0 reached the kernel, the
// checkpoint write was still waiting): the restarted agent starts it again in its model only,
// without writing the weight again, and removes the destination at the new deadline.
func TestReconcilerRestartDuringAnUnrecordedDrain(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	k := key(lvs.TCP, "192.0.2.10", 80)
	d2 := lvs.DestinationKey{Address: netip.MustParseAddr("10.1.0.2"), Port: 8080}
	r := newTestReconciler(t, fk, dir, c)
	two := wsvc(k, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))
	two.DrainTimeout = time.Minute
	mustSync(t, r, Want{Key: web, Generation: 1, Services: []desired.Service{two}})
	// The killed agent's drain: weight 0 in the kernel, nothing in the checkpoint.
	fk.hand(ipvs.Op{Kind: ipvs.UpdateDestination, Service: &two.Service,
		Destination: &lvs.Destination{Address: d2.Address, Port: d2.Port, Weight: 0, Forwarding: lvs.Masquerade}})
	fk.setConns(k, d2, 1, 0)
	fk.resetCounts()
	c.now = t0.Add(10 * time.Second)
	r2 := newTestReconciler(t, fk, dir, c)
	one := wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))
	one.DrainTimeout = time.Minute
	mustSync(t, r2, Want{Key: web, Generation: 2, Services: []desired.Service{one}})
	if w, _ := fk.counts(); w != 0 {
		t.Errorf("the restart wrote %d times (%v), want 0", w, fk.kinds())
	}
	od := r2.Model().Owned(k).Dest(d2)
	if od == nil || !od.DrainSince.Equal(c.now) {
		t.Fatalf("after the restart the destination is %+v, want it draining since the restart", od)
	}
	c.now = t0.Add(70 * time.Second)
	if err := r2.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	if w, _ := fk.counts(); w != 1 || fk.kind(ipvs.DeleteDestination) != 1 {
		t.Errorf("at the new deadline: %d writes (%v), want one destination delete", w, fk.kinds())
	}
}
