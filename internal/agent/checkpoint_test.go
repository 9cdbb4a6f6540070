package agent

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubelvs/kubelvs/pkg/desired"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

func sampleCheckpoint() *Checkpoint {
	return &Checkpoint{Node: "n1", Services: []CheckpointService{
		{Key: key(lvs.TCP, "192.0.2.10", 80), Owner: web, Generation: 3, DrainTimeout: time.Minute,
			Drains: []CheckpointDrain{{Destination: lvs.DestinationKey{Address: netip.MustParseAddr("10.1.0.2"), Port: 8080},
				Since: t0, Timeout: 90 * time.Second}}},
		{Key: key(lvs.UDP, "2001:db8::10", 53), Owner: api, Generation: 1, Removing: true, DrainTimeout: 0},
		{Key: lvs.ServiceKey{Family: lvs.IPv6, FirewallMark: 16}, Owner: api, Generation: 1, DrainTimeout: 5 * time.Second},
	}}
}

func TestCheckpointRoundTrip(t *testing.T) {
	cp := sampleCheckpoint()
	b, err := MarshalCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalCheckpoint(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if diff := cmp.Diff(cp, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// The format is a contract across agent versions: field names as written here.
	for _, s := range []string{`"version": 1`, `"owner": "default/web"`, `"drainTimeout": "1m0s"`, `"firewallMark": 16`,
		`"since": "2026-12-01T10:00:00Z"`, `"protocol": "UDP"`, `"removing": true`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("checkpoint lacks %s:\n%s", s, b)
		}
	}
}

func TestCheckpointRejects(t *testing.T) {
	for _, tt := range []struct{ name, content, msg string }{
		{"not JSON", "{", "unexpected EOF"},
		{"another version", `{"version": 2, "node": "n1", "services": []}`, "version 2"},
		{"unknown field", `{"version": 1, "node": "n1", "services": [], "extra": 1}`, "unknown field"},
		{"bad family", `{"version": 1, "services": [{"family": "IPv5", "owner": "a/b", "drainTimeout": "1s"}]}`, "family"},
		{"address of the wrong family", `{"version": 1, "services": [{"family": "IPv6", "protocol": "TCP", "address": "10.0.0.1", "port": 80, "owner": "a/b", "drainTimeout": "1s"}]}`, "is not IPv6"},
		{"owner without namespace", `{"version": 1, "services": [{"family": "IPv4", "protocol": "TCP", "address": "10.0.0.1", "port": 80, "owner": "b", "drainTimeout": "1s"}]}`, "namespace/name"},
		{"bad duration", `{"version": 1, "services": [{"family": "IPv4", "protocol": "TCP", "address": "10.0.0.1", "port": 80, "owner": "a/b", "drainTimeout": "soon"}]}`, "duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := UnmarshalCheckpoint([]byte(tt.content))
			if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want an ErrCheckpoint saying %q", err, tt.msg)
			}
		})
	}
}

func TestCheckpointFile(t *testing.T) {
	dir := t.TempDir()
	f := &CheckpointFile{Path: filepath.Join(dir, "state", "agent-checkpoint.json")}
	cp, err := f.Load(t0)
	if err != nil || len(cp.Services) != 0 {
		t.Fatalf("missing file: %v, %v; want an empty checkpoint", cp, err)
	}
	wrote, err := f.Save(sampleCheckpoint())
	if err != nil || !wrote {
		t.Fatalf("save: %v %v", wrote, err)
	}
	if wrote, err := f.Save(sampleCheckpoint()); err != nil || wrote {
		t.Errorf("saving the same checkpoint again wrote %v (%v); want no write", wrote, err)
	}
	f2 := &CheckpointFile{Path: f.Path}
	got, err := f2.Load(t0)
	if err != nil || len(got.Services) != 3 {
		t.Fatalf("load: %v %v", got, err)
	}
	if wrote, _ := f2.Save(got); wrote {
		t.Errorf("saving what was loaded wrote again")
	}
	entries, _ := os.ReadDir(filepath.Dir(f.Path))
	if len(entries) != 1 {
		t.Errorf("state dir holds %d files, want only the checkpoint (no temporary files left)", len(entries))
	}
}

// A corrupt checkpoint is moved aside (kept for inspection), reported, and the agent starts
// owning nothing: it never flushes or takes over services it cannot prove it made.
func TestCheckpointCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent-checkpoint.json")
	if err := os.WriteFile(path, []byte(`{"version": 1, "services": [{"fam`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &CheckpointFile{Path: path}
	cp, err := f.Load(t0)
	if !errors.Is(err, ErrCheckpoint) || cp == nil || len(cp.Services) != 0 {
		t.Fatalf("got %v, %v; want an empty checkpoint and an ErrCheckpoint", cp, err)
	}
	aside := path + ".corrupt-" + "1796119200"
	if !strings.Contains(err.Error(), aside) {
		t.Errorf("error %q does not say where the file went (%s)", err, aside)
	}
	if b, rerr := os.ReadFile(aside); rerr != nil || !strings.Contains(string(b), `"fam`) {
		t.Errorf("the corrupt file was not kept at %s: %v", aside, rerr)
	}
	if _, serr := os.Stat(path); !os.IsNotExist(serr) {
		t.Errorf("the corrupt file is still at %s", path)
	}
}

// SaveChanges writes only what changed, and the file always reads back as the whole
// checkpoint: services added, changed and removed in any order, a failed write retried.
func TestCheckpointSaveChanges(t *testing.T) {
	dir := t.TempDir()
	f := &CheckpointFile{Path: filepath.Join(dir, "cp.json")}
	svc := func(addr string, gen int64) CheckpointService {
		return CheckpointService{Key: key(lvs.TCP, addr, 80), Owner: web, Generation: gen, DrainTimeout: time.Minute}
	}
	readBack := func(step string, want ...CheckpointService) {
		t.Helper()
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalCheckpoint(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", step, err, b)
		}
		if diff := cmp.Diff(&Checkpoint{Node: "n1", Services: want}, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%s (-want +got):\n%s", step, diff)
		}
	}
	save := func(set []CheckpointService, gone ...lvs.ServiceKey) bool {
		t.Helper()
		wrote, err := f.SaveChanges("n1", set, gone)
		if err != nil {
			t.Fatal(err)
		}
		return wrote
	}
	save([]CheckpointService{svc("192.0.2.30", 1), svc("192.0.2.10", 1), svc("192.0.2.20", 1)})
	readBack("three added", svc("192.0.2.10", 1), svc("192.0.2.20", 1), svc("192.0.2.30", 1))
	save([]CheckpointService{svc("192.0.2.20", 2), svc("192.0.2.15", 1)}, key(lvs.TCP, "192.0.2.30", 80))
	readBack("one changed, one added, one gone", svc("192.0.2.10", 1), svc("192.0.2.15", 1), svc("192.0.2.20", 2))
	if save(nil) {
		t.Error("a save without a change wrote")
	}
	save(nil, key(lvs.TCP, "192.0.2.99", 80)) // never recorded: nothing to drop
	readBack("an unknown key dropped", svc("192.0.2.10", 1), svc("192.0.2.15", 1), svc("192.0.2.20", 2))

	// A write that fails (the directory is a regular file: even root cannot write there)
	// keeps its records: the next write has those of both calls.
	good := f.Path
	blocker := filepath.Join(dir, "blocker")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.Path = filepath.Join(blocker, "cp.json")
	if _, err := f.SaveChanges("n1", []CheckpointService{svc("192.0.2.40", 1)}, nil); err == nil {
		t.Fatal("a write under a regular file succeeded")
	}
	f.Path = good
	save(nil, key(lvs.TCP, "192.0.2.10", 80))
	readBack("after the failed write", svc("192.0.2.15", 1), svc("192.0.2.20", 2), svc("192.0.2.40", 1))
}

// Writes that wait (here a drain start) come at most once per CheckpointInterval, or once per
// second per 256 KiB of the checkpoint when that is longer; a service added is written at once.
func TestCheckpointIntervalGrowsWithSize(t *testing.T) {
	fk, dir, c := newFakeKernel(), t.TempDir(), &clock{now: t0}
	r := NewReconciler(Config{Node: "n1", Kernel: fk, Now: c.Now, CheckpointInterval: time.Second,
		Checkpoint: &CheckpointFile{Path: filepath.Join(dir, "agent-checkpoint.json")}})
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	wants := bigWants(5000, 2)
	mustSync(t, r, wants...)
	size := r.cfg.Checkpoint.Size()
	want := time.Duration(float64(size) / (256 << 10) * float64(time.Second))
	if want <= time.Second {
		t.Fatalf("a checkpoint of %d bytes: the test needs one over 256 KiB", size)
	}
	writes := func() float64 { return testutil.ToFloat64(r.cfg.Metrics.CheckpointWrites) }
	w0 := writes()
	// One destination removed: a drain starts (a write that waits).
	drain := func(i int) {
		t.Helper()
		w := wants[i]
		w.Generation++
		s := w.Services[0]
		s.Destinations = s.Destinations[1:]
		w.Services = []desired.Service{s}
		mustSync(t, r, w)
	}
	c.now = t0.Add(time.Second + 100*time.Millisecond)
	drain(1)
	if got := writes() - w0; got != 0 {
		t.Errorf("a drain %v after the last write of a %d-byte checkpoint was written (%v writes); it waits %v", c.now.Sub(t0), size, got, want)
	}
	if due, ok := r.CheckpointDue(); !ok || !due.Equal(t0.Add(want)) {
		t.Errorf("CheckpointDue = %v, %v; want %v", due.Sub(t0), ok, want)
	}
	c.now = t0.Add(want)
	if err := r.FlushCheckpoint(); err != nil {
		t.Fatal(err)
	}
	if got := writes() - w0; got != 1 {
		t.Errorf("at the due time: %v writes, want 1", got)
	}
}
