package agent

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// fakeDataplane records what the reconciler tells it.
type fakeDataplane struct {
	services map[lvs.ServiceKey]bool
	sets     int
	removes  int
	programs int
	audits   int
	fail     error
}

func (f *fakeDataplane) Set(k lvs.ServiceKey) {
	f.services[k] = true
	f.sets++
}
func (f *fakeDataplane) Remove(k lvs.ServiceKey)         { delete(f.services, k); f.removes++ }
func (f *fakeDataplane) SetLocalPrefixes([]netip.Prefix) {}
func (f *fakeDataplane) Program(context.Context) error {
	f.programs++
	return f.fail
}
func (f *fakeDataplane) Audit() { f.audits++ }
func (f *fakeDataplane) Info() (v1alpha1.DataplaneInfo, error) {
	return v1alpha1.DataplaneInfo{VIPInterface: "kubelvs0", BoundVIPs: int32(len(f.services))}, f.fail
}

// The dataplane hears of each service a batch changed, once, and is programmed once per batch;
// a batch with no change costs no program; a failed program is retried with the next batch and
// reported.
func TestReconcilerDrivesDataplane(t *testing.T) {
	k := newFakeKernel()
	dp := &fakeDataplane{services: map[lvs.ServiceKey]bool{}}
	c := &clock{now: time.Unix(1e9, 0)}
	r := NewReconciler(Config{Node: "n1", Kernel: k, Now: c.Now, Dataplane: dp,
		Checkpoint: &CheckpointFile{Path: filepath.Join(t.TempDir(), "cp.json")}})
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if dp.audits != 1 || dp.programs != 1 {
		t.Fatalf("start: %d audits, %d programs; want 1 and 1", dp.audits, dp.programs)
	}
	wants := bigWants(3, 2)
	mustSync(t, r, wants...)
	if len(dp.services) != 3 || dp.sets != 3 || dp.programs != 2 {
		t.Fatalf("after the first batch: services %v, %d sets, %d programs; want 3, 3 and 2", dp.services, dp.sets, dp.programs)
	}
	sets := dp.sets
	mustSync(t, r, wants...)
	if dp.programs != 2 || dp.sets != sets {
		t.Errorf("a batch without change: %d programs, %d sets (want 2 and %d)", dp.programs, dp.sets, sets)
	}
	// A weight change and a new destination are nothing to the dataplane.
	wants[1].Services[0].Destinations[0].Weight = 5
	wants[1].Services[0].Destinations = append(wants[1].Services[0].Destinations, wants[1].Services[0].Destinations[0])
	wants[1].Services[0].Destinations[2].Address = netip.MustParseAddr("10.1.9.9")
	wants[1].Generation, wants[1].Services[0].Generation = 2, 2
	mustSync(t, r, wants[1])
	if dp.sets != sets || dp.programs != 2 {
		t.Errorf("destination changes: %d sets, %d programs (want %d and 2)", dp.sets, dp.programs, sets)
	}
	// A new service: one set, one program.
	more := bigWants(4, 2)
	mustSync(t, r, more[3])
	if dp.sets != sets+1 || dp.programs != 3 {
		t.Errorf("a new service: %d sets, %d programs (want %d and 3)", dp.sets, dp.programs, sets+1)
	}
	// A failing program: reported, retried with the next batch even without a change.
	dp.fail = errors.New("nftables: boom")
	mustSync(t, r, bigWants(5, 2)[4])
	rep := r.Report()
	if rep.DataplaneError == "" || rep.Dataplane == nil || rep.Dataplane.VIPInterface != "kubelvs0" {
		t.Errorf("report %+v", rep)
	}
	dp.fail = nil
	before := dp.programs
	mustSync(t, r, wants[0])
	if dp.programs != before+1 {
		t.Errorf("the failed program was not retried")
	}
	if r.Report().DataplaneError != "" {
		t.Errorf("the error stays reported after a successful program")
	}
	// Audits reach the dataplane.
	if _, err := r.Audit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if dp.audits != 2 {
		t.Errorf("%d audits, want 2", dp.audits)
	}
	var keys []string
	for k := range dp.services {
		keys = append(keys, k.String())
	}
	slices.Sort(keys)
	if diff := cmp.Diff([]string{"TCP 10.96.0.0:80", "TCP 10.96.0.1:80", "TCP 10.96.0.2:80", "TCP 10.96.0.3:80", "TCP 10.96.0.4:80"}, keys); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}

// DataplaneReady follows the dataplane's error, and Ready with it.
func TestStatusDataplaneCondition(t *testing.T) {
	w := &StatusWriter{Node: "n1"}
	w.setIPVS(nil)
	info := &v1alpha1.DataplaneInfo{VIPInterface: "kubelvs0"}
	for _, tt := range []struct {
		rep           NodeReport
		dp, ready     string
		wantDataplane bool
	}{
		{NodeReport{Dataplane: info}, "True", "True", true},
		{NodeReport{Dataplane: info, DataplaneError: "dataplane: boom"}, "False", "False", true},
		{NodeReport{}, "True", "True", false},
	} {
		st := w.Status(tt.rep, nil)
		got := map[string]string{}
		for _, c := range st.Conditions {
			got[c.Type] = string(c.Status)
		}
		if got[v1alpha1.NodeConditionDataplaneReady] != tt.dp || got[v1alpha1.NodeConditionReady] != tt.ready || (st.Dataplane != nil) != tt.wantDataplane {
			t.Errorf("report %+v: conditions %v, dataplane %v", tt.rep, got, st.Dataplane)
		}
	}
}
