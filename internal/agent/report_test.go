package agent

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/desired"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// entryLines are the report entry as "ns/name State active/draining".
func entryLines(rep NodeReport) []string {
	var out []string
	for _, e := range rep.VirtualServices {
		s := e.Namespace + "/" + e.Name + " " + string(e.State)
		if e.RealServers != nil {
			s += " " + itoa(e.RealServers.Active) + "/" + itoa(e.RealServers.Draining)
		}
		out = append(out, s)
	}
	return out
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// The report rebuilds only the entries of VirtualServices that changed: after every kind of
// change it must equal a rebuild of every entry, and say what the node has.
func TestReportIncremental(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	k1, k2, k3 := key(lvs.TCP, "192.0.2.10", 80), key(lvs.TCP, "192.0.2.11", 80), key(lvs.TCP, "192.0.2.12", 80)
	fk.hand(ipvs.Op{Kind: ipvs.AddService, Service: &lvs.Service{ServiceKey: k3, Scheduler: "rr"}}) // someone else's
	db := types.NamespacedName{Namespace: "default", Name: "db"}
	r := newTestReconciler(t, fk, dir, c)
	svc := func(owner types.NamespacedName, k lvs.ServiceKey, dests ...desired.Destination) desired.Service {
		s := wsvc(k, "wrr", dests...)
		s.Owner, s.DrainTimeout = owner, time.Minute
		return s
	}
	want := func(owner types.NamespacedName, gen int64, svcs ...desired.Service) Want {
		return Want{Key: owner, Generation: gen, Services: svcs}
	}
	check := func(step string, lines ...string) {
		t.Helper()
		inc := r.Report()
		r.report.all = true
		full := r.Report()
		if diff := cmp.Diff(full, inc); diff != "" {
			t.Errorf("%s: the incremental report differs from a full one (-full +incremental):\n%s", step, diff)
		}
		if diff := cmp.Diff(lines, entryLines(inc)); diff != "" {
			t.Errorf("%s: entries (-want +got):\n%s", step, diff)
		}
	}
	check("empty")

	mustSync(t, r, want(web, 1, svc(web, k1, dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))),
		want(api, 1, svc(api, k2, dst("10.1.0.3", 8080, 1))))
	check("programmed", "default/api Programmed 1/0", "default/web Programmed 2/0")

	// Two reports without a change in between; then one endpoint removed: web's entry only.
	// A report handed out does not change with the later ones (they share its entries until
	// one changes).
	r.Report()
	before := r.Report()
	beforeLines := entryLines(before)
	fk.setConns(k1, lvs.DestinationKey{Address: dst("10.1.0.2", 8080, 1).Address, Port: 8080}, 1, 0)
	mustSync(t, r, want(web, 2, svc(web, k1, dst("10.1.0.1", 8080, 1))))
	if err := r.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("draining", "default/api Programmed 1/0", "default/web Programmed 1/1")
	if diff := cmp.Diff(beforeLines, entryLines(before)); diff != "" {
		t.Errorf("a report handed out changed with a later one (-then +now):\n%s", diff)
	}

	// The drain times out.
	c.now = t0.Add(2 * time.Minute)
	if err := r.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("drained", "default/api Programmed 1/0", "default/web Programmed 1/0")

	// web takes api's service over (api no longer wants it): both entries change in one step.
	mustSync(t, r, want(api, 2), want(web, 3, svc(web, k1, dst("10.1.0.1", 8080, 1)), svc(web, k2, dst("10.1.0.3", 8080, 1))))
	check("taken over", "default/web Programmed 2/0")
	// Handed over in place: no drain of 10.1.0.3 (planned one VirtualService after the other,
	// api's drain landed after web's takeover and left it at weight 0).
	if diff := cmp.Diff([]string{
		"-A TCP 192.0.2.10:80 -s wrr",
		"-A TCP 192.0.2.11:80 -s wrr",
		"-A TCP 192.0.2.12:80 -s rr",
		"-a TCP 192.0.2.10:80 -r 10.1.0.1:8080 -w 1 Masquerade",
		"-a TCP 192.0.2.11:80 -r 10.1.0.3:8080 -w 1 Masquerade",
	}, fk.dump()); diff != "" {
		t.Errorf("table after the handover (-want +got):\n%s", diff)
	}

	// db wants the key someone else has: a conflict.
	mustSync(t, r, want(db, 1, svc(db, k3, dst("10.1.0.4", 8080, 1))))
	check("conflict", "default/db Failed 0/0", "default/web Programmed 2/0")
	if diff := cmp.Diff([]string{"default/db: TCP 192.0.2.12:80"}, r.Report().Conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}

	// Everything deleted: web drains (no connections: its destinations go at the next poll),
	// then its services go and its entry with them.
	mustSync(t, r, want(web, 4), want(db, 2))
	check("deleted", "default/web Draining 0/2")
	if err := r.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.PollDrains(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("gone")
}

// A status write waits at least MinInterval, and a second per BytesPerSecond of the last one.
func TestStatusWriterInterval(t *testing.T) {
	for _, tc := range []struct {
		min  time.Duration
		bps  int
		size int
		want time.Duration
	}{
		{0, 0, 0, time.Second},
		{0, 0, 100 << 10, time.Second},
		{0, 0, 1300 << 10, time.Duration(1300.0 / 128 * float64(time.Second))},
		{2 * time.Second, 0, 128 << 10, 2 * time.Second},
		{0, 1 << 20, 4 << 20, 4 * time.Second},
	} {
		w := &StatusWriter{MinInterval: tc.min, BytesPerSecond: tc.bps, lastSize: tc.size}
		if got := w.interval(); got != tc.want {
			t.Errorf("MinInterval %v, BytesPerSecond %d, last write %d bytes: interval %v, want %v", tc.min, tc.bps, tc.size, got, tc.want)
		}
	}
}

// BenchmarkReport is the loop's report once a second while endpoints churn: 10,000
// VirtualServices of 10 destinations, one of them changed since the last report.
func BenchmarkReport(b *testing.B) {
	fk, c := newFakeKernel(), &clock{now: t0}
	r := NewReconciler(Config{Node: "n1", Kernel: fk, Now: c.Now})
	if err := r.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	wants := bigWants(10000, 10)
	if retry, err := r.Sync(b.Context(), wants); err != nil || len(retry) > 0 {
		b.Fatalf("sync: %v, retry %v", err, retry)
	}
	r.Report()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.reportChanged(wants[i%len(wants)].Key)
		if rep := r.Report(); len(rep.VirtualServices) != len(wants) {
			b.Fatalf("%d entries", len(rep.VirtualServices))
		}
	}
}
