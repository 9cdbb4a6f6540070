package ipvs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

func newTestClient(t *testing.T) (*fakeIPVS, *Client) {
	t.Helper()
	f, k := newFake()
	conn := k.Dial(&gnl.Config{Timeout: 5 * time.Second})
	t.Cleanup(func() { _ = conn.Close() })
	return f, NewWithConn(conn, nil)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestDeclarations(t *testing.T) {
	for _, c := range checks {
		if err := c.Check(); err != nil {
			t.Error(err)
		}
	}
}

var mustAddr = netip.MustParseAddr

// testServices covers every kind of service: families, protocols, firewall marks, flags,
// persistence with netmasks, an engine.
func testServices() []Service {
	return []Service{
		{Protocol: TCP, Address: mustAddr("10.0.0.1"), Port: 80, Scheduler: "rr"},
		{Protocol: UDP, Address: mustAddr("10.0.0.1"), Port: 53, Scheduler: "wrr", Flags: FlagOnePacket},
		{Protocol: SCTP, Address: mustAddr("10.0.0.2"), Port: 3868, Scheduler: "sh", Flags: FlagSHFallback | FlagSHPort},
		{Protocol: TCP, Address: mustAddr("2001:db8::1"), Port: 443, Scheduler: "mh", Flags: FlagMHPort | FlagPersistent, Timeout: 300, Netmask: 64},
		{Protocol: TCP, Address: mustAddr("10.0.0.3"), Port: 0, Scheduler: "lc", Flags: FlagPersistent, Timeout: 60, Netmask: 24},
		{FWMark: 7, Scheduler: "wlc"},
		{Family: IPv6, FWMark: 7, Scheduler: "lblcr"},
		{Protocol: UDP, Address: mustAddr("10.0.0.4"), Port: 5060, Scheduler: "rr", Flags: FlagPersistent, Timeout: 30, PersistenceEngine: "sip"},
	}
}

// asRead is what the kernel reports for a service added as s.
func asRead(s Service) Service {
	s.Family = s.family()
	s.Flags |= FlagHashed
	if s.Netmask == 0 {
		s.Netmask = 32
		if s.Family == IPv6 {
			s.Netmask = 128
		}
	}
	if s.Scheduler == "" {
		s.Scheduler = "wlc"
	}
	s.Stats = Stats{Conns: 5, InBytes: 100, OutBytes: 1 << 33}
	s.Stats32 = Stats{Conns: 5, InBytes: 100}
	return s
}

func TestServicesRoundTrip(t *testing.T) {
	_, c := newTestClient(t)
	want := testServices()
	for _, s := range want {
		if err := c.AddService(ctx(t), s); err != nil {
			t.Fatalf("add %s: %v", &s, err)
		}
	}
	got, err := c.Services(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var exp []Service
	for _, s := range want {
		exp = append(exp, asRead(s))
	}
	if d := cmp.Diff(exp, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("services (-want +got):\n%s", d)
	}
	for _, s := range want {
		one, err := c.Service(ctx(t), Service{Family: s.Family, Protocol: s.Protocol, Address: s.Address, Port: s.Port, FWMark: s.FWMark})
		if err != nil {
			t.Fatalf("get %s: %v", &s, err)
		}
		if d := cmp.Diff(asRead(s), one, cmpopts.EquateComparable(netip.Addr{})); d != "" {
			t.Errorf("get %s (-want +got):\n%s", &s, d)
		}
	}
	// Update in place: scheduler, flags, persistence.
	u := want[0]
	u.Scheduler, u.Flags, u.Timeout = "mh", FlagPersistent|FlagMHFallback, 120
	if err := c.UpdateService(ctx(t), u); err != nil {
		t.Fatal(err)
	}
	one, err := c.Service(ctx(t), want[0])
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(asRead(u), one, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("after update (-want +got):\n%s", d)
	}
}

func TestServiceEncoding(t *testing.T) {
	f, c := newTestClient(t)
	s := Service{Protocol: TCP, Address: mustAddr("192.0.2.1"), Port: 8080, Scheduler: "rr", Flags: FlagPersistent | FlagHashed, Timeout: 10, Netmask: 24}
	if err := c.AddService(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	req := f.reqs[len(f.reqs)-1]
	top, err := gnl.Attrs(req.Attrs)
	if err != nil || len(top) != 1 || top[0].Type != 1 || !top[0].Nested() {
		t.Fatalf("top-level attributes %+v, %v: want one nested IPVS_CMD_ATTR_SERVICE", top, err)
	}
	attrs, err := gnl.Attrs(top[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint16][]byte{}
	for _, a := range attrs {
		got[a.Type] = a.Data
	}
	ne := func(v uint32) []byte { b := make([]byte, 4); binary.NativeEndian.PutUint32(b, v); return b }
	want := map[uint16][]byte{
		1: {2, 0}, // AF_INET, host order
		2: {6, 0}, // IPPROTO_TCP
		3: append([]byte{192, 0, 2, 1}, make([]byte, 12)...),
		4: {0x1f, 0x90}, // 8080, network order
		6: []byte("rr\x00"),
		7: append(ne(uint32(FlagPersistent)), 0xff, 0xff, 0xff, 0xff), // hashed is never sent
		8: ne(10),
		9: {255, 255, 255, 0},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("NEW_SERVICE attributes (-want +got):\n%s", d)
	}
	// IPv6 persistence netmasks go as a host-order prefix length.
	s6 := Service{Protocol: TCP, Address: mustAddr("2001:db8::2"), Port: 1, Flags: FlagPersistent, Netmask: 48}
	if err := c.AddService(ctx(t), s6); err != nil {
		t.Fatal(err)
	}
	w, _ := s6.wire()
	if binary.NativeEndian.Uint32(w.Netmask[:]) != 48 || w.SchedName != "wlc" {
		t.Errorf("IPv6 netmask %v, scheduler %q", w.Netmask, w.SchedName)
	}
}

func testDests() []Destination {
	return []Destination{
		{Address: mustAddr("10.1.0.1"), Port: 8080, Forward: Masquerade, Weight: 1},
		{Address: mustAddr("10.1.0.2"), Port: 8080, Forward: DirectRoute, Weight: 100, UpperThreshold: 1000, LowerThreshold: 10},
		{Address: mustAddr("10.1.0.3"), Port: 8080, Forward: Tunnel, Weight: 0},
		{Address: mustAddr("10.1.0.4"), Port: 8080, Forward: Tunnel, TunnelType: TunnelGUE, TunnelPort: 6080, TunnelFlags: TunnelCsum, Weight: 5},
		{Address: mustAddr("10.1.0.5"), Port: 8080, Forward: Tunnel, TunnelType: TunnelGRE, TunnelFlags: TunnelRemCsum, Weight: 5},
		{Address: mustAddr("2001:db8::10"), Port: 8080, Forward: Tunnel, Weight: 2}, // mixed family
		{Address: mustAddr("127.0.0.1"), Port: 80, Forward: Local, Weight: 1},
		{Address: mustAddr("10.1.0.6"), Port: 8080, Forward: Bypass, Weight: 1},
	}
}

func destAsRead(d Destination) Destination {
	d.Family = d.family()
	d.ActiveConns = 3
	d.Stats = Stats{Conns: 7, InBytes: 1 << 40}
	return d
}

func TestDestinationsAndTable(t *testing.T) {
	_, c := newTestClient(t)
	svcs := testServices()
	for _, s := range svcs {
		if err := c.AddService(ctx(t), s); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range testDests() {
		if err := c.AddDestination(ctx(t), svcs[0], d); err != nil {
			t.Fatalf("add %s: %v", &d, err)
		}
	}
	v6 := Destination{Address: mustAddr("2001:db8::20"), Port: 443, Weight: 3}
	if err := c.AddDestination(ctx(t), svcs[3], v6); err != nil {
		t.Fatal(err)
	}
	var want []Destination
	for _, d := range testDests() {
		want = append(want, destAsRead(d))
	}
	got, err := c.Destinations(ctx(t), svcs[0])
	if err != nil {
		t.Fatal(err)
	}
	opts := cmpopts.EquateComparable(netip.Addr{})
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("destinations (-want +got):\n%s", d)
	}
	upd := testDests()[1]
	upd.Weight, upd.Forward, upd.UpperThreshold = 0, Masquerade, 0
	if err := c.UpdateDestination(ctx(t), svcs[0], upd); err != nil {
		t.Fatal(err)
	}
	want[1] = destAsRead(upd)
	if err := c.DeleteDestination(ctx(t), svcs[0], testDests()[7]); err != nil {
		t.Fatal(err)
	}
	want = want[:7]

	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var wantTable []TableEntry
	for i, s := range svcs {
		e := TableEntry{Service: asRead(s)}
		switch i {
		case 0:
			e.Destinations = want
		case 3:
			e.Destinations = []Destination{destAsRead(v6)}
		}
		wantTable = append(wantTable, e)
	}
	if d := cmp.Diff(wantTable, table, opts, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	// A service without destinations lists none; a missing one is an error, although the
	// kernel's dump of it is merely empty.
	if ds, err := c.Destinations(ctx(t), svcs[1]); err != nil || len(ds) != 0 {
		t.Errorf("destinations of an empty service: %v, %v", ds, err)
	}
	missing := Service{Protocol: TCP, Address: mustAddr("10.9.9.9"), Port: 1}
	if _, err := c.Destinations(ctx(t), missing); !errors.Is(err, ErrServiceNotFound) {
		t.Errorf("destinations of a missing service: %v, want ErrServiceNotFound", err)
	}
}

// Table runs its destination dumps on Config.DumpConn when one is given.
func TestTableOnDumpConn(t *testing.T) {
	_, k := newFake()
	conn := k.Dial(&gnl.Config{Timeout: 5 * time.Second})
	t.Cleanup(func() { _ = conn.Close() })
	dconn := k.Dial(&gnl.Config{Timeout: 5 * time.Second, MessageBuffer: 4096})
	c := NewWithConn(conn, &Config{DumpConn: dconn})
	svcs := testServices()
	for _, s := range svcs {
		if err := c.AddService(ctx(t), s); err != nil {
			t.Fatal(err)
		}
	}
	var want []Destination
	for _, d := range testDests() {
		if err := c.AddDestination(ctx(t), svcs[0], d); err != nil {
			t.Fatalf("add %s: %v", &d, err)
		}
		want = append(want, destAsRead(d))
	}
	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var wantTable []TableEntry
	for i, s := range svcs {
		e := TableEntry{Service: asRead(s)}
		if i == 0 {
			e.Destinations = want
		}
		wantTable = append(wantTable, e)
	}
	opts := cmpopts.EquateComparable(netip.Addr{})
	if d := cmp.Diff(wantTable, table, opts, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	// The destinations came through the dump connection: closed, Table fails on it.
	_ = dconn.Close()
	if _, err := c.Table(ctx(t)); !errors.Is(err, gnl.ErrClosed) {
		t.Errorf("table with the dump connection closed: %v, want gnl.ErrClosed", err)
	}
}

func TestErrors(t *testing.T) {
	f, c := newTestClient(t)
	svc := Service{Protocol: TCP, Address: mustAddr("10.0.0.1"), Port: 80, Scheduler: "rr"}
	dst := Destination{Address: mustAddr("10.1.0.1"), Port: 80, Weight: 1}
	if err := c.AddService(ctx(t), svc); err != nil {
		t.Fatal(err)
	}
	if err := c.AddDestination(ctx(t), svc, dst); err != nil {
		t.Fatal(err)
	}
	missing := Service{Protocol: TCP, Address: mustAddr("10.0.0.9"), Port: 80, Scheduler: "rr"}
	other := Destination{Address: mustAddr("10.1.0.9"), Port: 80, Weight: 1}
	tests := []struct {
		name    string
		do      func() error
		want    error
		errno   syscall.Errno // 0: refused before reaching the kernel
		notSent bool
	}{
		{"duplicate service", func() error { return c.AddService(ctx(t), svc) }, ErrServiceExists, syscall.EEXIST, false},
		{"unknown scheduler", func() error { s := missing; s.Scheduler = "nope"; return c.AddService(ctx(t), s) }, ErrSchedulerNotFound, syscall.ENOENT, false},
		{"unknown engine", func() error { s := missing; s.PersistenceEngine = "nope"; return c.AddService(ctx(t), s) }, ErrSchedulerNotFound, syscall.ENOENT, false},
		{"update unknown scheduler", func() error { s := svc; s.Scheduler = "nope"; return c.UpdateService(ctx(t), s) }, ErrSchedulerNotFound, syscall.ENOENT, false},
		{"update missing service", func() error { return c.UpdateService(ctx(t), missing) }, ErrServiceNotFound, syscall.ESRCH, false},
		{"update missing service, unknown scheduler", func() error { s := missing; s.Scheduler = "nope"; return c.UpdateService(ctx(t), s) }, ErrServiceNotFound, syscall.ESRCH, false},
		{"delete missing service", func() error { return c.DeleteService(ctx(t), missing) }, ErrServiceNotFound, syscall.ESRCH, false},
		{"get missing service", func() error { _, err := c.Service(ctx(t), missing); return err }, ErrServiceNotFound, syscall.ESRCH, false},
		{"duplicate destination", func() error { return c.AddDestination(ctx(t), svc, dst) }, ErrDestExists, syscall.EEXIST, false},
		{"destination of missing service", func() error { return c.AddDestination(ctx(t), missing, other) }, ErrServiceNotFound, syscall.ESRCH, false},
		{"update missing destination", func() error { return c.UpdateDestination(ctx(t), svc, other) }, ErrDestNotFound, syscall.ENOENT, false},
		{"delete missing destination", func() error { return c.DeleteDestination(ctx(t), svc, other) }, ErrDestNotFound, syscall.ENOENT, false},
		{"thresholds inverted", func() error {
			d := other
			d.UpperThreshold, d.LowerThreshold = 1, 2
			return c.AddDestination(ctx(t), svc, d)
		}, ErrInvalid, syscall.ERANGE, false},
		{"mixed family masquerade", func() error { d := other; d.Address = mustAddr("2001:db8::1"); return c.AddDestination(ctx(t), svc, d) }, ErrInvalid, 0, true},
		{"negative weight", func() error { d := other; d.Weight = -1; return c.AddDestination(ctx(t), svc, d) }, ErrInvalid, 0, true},
		{"long scheduler name", func() error { s := missing; s.Scheduler = "abcdefghijklmnop"; return c.AddService(ctx(t), s) }, ErrInvalid, 0, true},
		{"no address", func() error { return c.AddService(ctx(t), Service{Protocol: TCP, Port: 1}) }, ErrInvalid, 0, true},
		{"address of the wrong family", func() error {
			return c.AddService(ctx(t), Service{Family: IPv6, Protocol: TCP, Address: mustAddr("10.0.0.5")})
		}, ErrInvalid, 0, true},
		{"no protocol", func() error { return c.AddService(ctx(t), Service{Address: mustAddr("10.0.0.5")}) }, ErrInvalid, 0, true},
		{"netmask too long", func() error { s := missing; s.Netmask = 33; return c.AddService(ctx(t), s) }, ErrInvalid, 0, true},
		{"unknown flags", func() error { s := missing; s.Flags = 0x100; return c.AddService(ctx(t), s) }, ErrInvalid, 0, true},
		{"stop daemon not running", func() error { return c.StopDaemon(ctx(t), DaemonBackup) }, ErrDaemonNotRunning, syscall.ESRCH, false},
	}
	before, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := len(f.reqs)
			err := tc.do()
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if tc.errno != 0 && !errors.Is(err, tc.errno) {
				t.Errorf("error %v does not keep errno %v", err, tc.errno)
			}
			if tc.notSent && len(f.reqs) != n {
				t.Errorf("an invalid request was sent to the kernel")
			}
			for _, s := range []error{ErrServiceExists, ErrServiceNotFound, ErrDestExists, ErrDestNotFound, ErrSchedulerNotFound, ErrInvalid} {
				if !errors.Is(s, tc.want) && errors.Is(err, s) {
					t.Errorf("error %v also matches %v", err, s)
				}
			}
		})
	}
	after, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, after, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("failed operations changed the table (-before +after):\n%s", d)
	}
}

func TestNotAvailable(t *testing.T) {
	conn := new(gnltest.Kernel).Dial(nil) // a kernel without IPVS
	defer conn.Close()
	c := NewWithConn(conn, nil)
	_, err := c.Services(ctx(t))
	if !errors.Is(err, ErrNotAvailable) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("services without the IPVS family: %v, want ErrNotAvailable", err)
	}
}

func TestApply(t *testing.T) {
	f, c := newTestClient(t)
	svcs := testServices()
	// Out of order on purpose: destinations before their services, a delete first.
	var ops []Op
	ops = append(ops, Op{Kind: DeleteService, Service: ptr(svcs[2])})
	for i, s := range svcs[:2] {
		for j := range 3 {
			ops = append(ops, Op{Kind: AddDestination, Service: ptr(s),
				Destination: ptr(Destination{Address: netip.AddrFrom4([4]byte{10, 2, byte(i), byte(j)}), Port: 80, Weight: j})})
		}
	}
	for _, s := range svcs {
		ops = append(ops, Op{Kind: AddService, Service: ptr(s)})
	}
	ops = append(ops,
		Op{Kind: AddService, Service: ptr(svcs[0])}, // duplicate
		Op{Kind: DeleteDestination, Service: ptr(svcs[1]), Destination: ptr(Destination{Address: mustAddr("10.9.0.1"), Port: 1})}, // missing
		Op{Kind: AddDestination, Service: ptr(svcs[0]), Destination: ptr(Destination{Address: mustAddr("10.9.0.2"), Weight: -5})}, // invalid
		Op{Kind: UpdateService, Service: ptr(Service{Protocol: TCP, Address: mustAddr("10.8.8.8"), Port: 1, Scheduler: "nope"})},
	)
	res, err := c.Apply(ctx(t), ops)
	if err != nil {
		t.Fatal(err)
	}
	// Invalid operations never reach the kernel; the others do.
	f.mu.Lock()
	sent := len(f.reqs)
	f.mu.Unlock()
	if want := len(ops) - 1; sent != want {
		t.Errorf("the kernel saw %d requests, want %d", sent, want)
	}
	n := len(ops)
	for i, r := range res {
		var want error
		switch i {
		case n - 4:
			want = ErrServiceExists
		case n - 3:
			want = ErrDestNotFound
		case n - 2:
			want = ErrInvalid
		case n - 1:
			want = ErrServiceNotFound
		}
		if i == 0 { // svcs[2] is re-added in the same batch, so its delete runs first, and fails
			want = ErrServiceNotFound
		}
		if want == nil && r != nil || want != nil && !errors.Is(r, want) {
			t.Errorf("result %d (%s): %v, want %v", i, &ops[i], r, want)
		}
	}
	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != len(svcs) || len(table[0].Destinations) != 3 || len(table[1].Destinations) != 3 {
		t.Errorf("table after apply: %d services, %d+%d destinations", len(table), len(table[0].Destinations), len(table[1].Destinations))
	}
}

func TestApplyLarge(t *testing.T) {
	_, k := newFake()
	conn := k.Dial(&gnl.Config{Window: 64})
	defer conn.Close()
	c := NewWithConn(conn, nil)
	var ops []Op
	const nsvc, ndst = 200, 10
	for i := range nsvc {
		s := Service{Protocol: TCP, Address: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Port: 80, Scheduler: "rr"}
		ops = append(ops, Op{Kind: AddService, Service: ptr(s)})
		for j := range ndst {
			ops = append(ops, Op{Kind: AddDestination, Service: ptr(s), Destination: ptr(Destination{Address: netip.AddrFrom4([4]byte{10, 1, byte(i), byte(j)}), Port: 8080, Weight: 1})})
		}
	}
	res, err := c.Apply(ctx(t), ops)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r != nil {
			t.Fatalf("op %d: %v", i, r)
		}
	}
	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, e := range table {
		total += len(e.Destinations)
	}
	if len(table) != nsvc || total != nsvc*ndst {
		t.Errorf("table has %d services, %d destinations; want %d, %d", len(table), total, nsvc, nsvc*ndst)
	}
}

func TestInterruptedDumpRetried(t *testing.T) {
	f, c := newTestClient(t)
	if err := c.AddService(ctx(t), testServices()[0]); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.intrDumps = 2
	f.mu.Unlock()
	got, err := c.Services(ctx(t))
	if err != nil || len(got) != 1 {
		t.Fatalf("services after two interrupted dumps: %v, %v", got, err)
	}
	f.mu.Lock()
	f.intrDumps = maxDumpRetries + 1
	f.mu.Unlock()
	if _, err := c.Services(ctx(t)); !errors.Is(err, gnl.ErrDumpInterrupted) {
		t.Errorf("services with every dump interrupted: %v, want ErrDumpInterrupted", err)
	}
}

func TestInfoTimeoutsDaemonsFlushZero(t *testing.T) {
	_, c := newTestClient(t)
	info, err := c.Info(ctx(t))
	if err != nil || info.VersionString() != "1.2.1" || info.ConnTableSize != 4096 {
		t.Errorf("info %+v (%s), %v", info, info.VersionString(), err)
	}
	if err := c.SetTimeouts(ctx(t), Timeouts{TCPSeconds: 100, UDPSeconds: 5}); err != nil {
		t.Fatal(err)
	}
	to, err := c.Timeouts(ctx(t))
	if err != nil || to != (Timeouts{TCPSeconds: 100, TCPFinSeconds: 120, UDPSeconds: 5}) {
		t.Errorf("timeouts %+v, %v", to, err)
	}
	d := Daemon{State: DaemonMaster, Interface: "eth0", SyncID: 9, MaxLen: 1400, Group: mustAddr("239.1.2.3"), Port: 8848, TTL: 2}
	if err := c.StartDaemon(ctx(t), d); err != nil {
		t.Fatal(err)
	}
	if err := c.StartDaemon(ctx(t), d); !errors.Is(err, ErrDaemonRunning) {
		t.Errorf("second master: %v, want ErrDaemonRunning", err)
	}
	ds, err := c.Daemons(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Daemon{d}, ds, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("daemons (-want +got):\n%s", diff)
	}
	if err := c.StopDaemon(ctx(t), DaemonMaster); err != nil {
		t.Fatal(err)
	}
	if err := c.StartDaemon(ctx(t), Daemon{State: DaemonBackup}); !errors.Is(err, ErrInvalid) {
		t.Errorf("daemon without interface: %v, want ErrInvalid", err)
	}
	for _, s := range testServices() {
		if err := c.AddService(ctx(t), s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Zero(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.ZeroService(ctx(t), testServices()[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Services(ctx(t)); err != nil || len(s) != 0 {
		t.Errorf("after flush: %v, %v", s, err)
	}
}

func TestStringers(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{(FlagPersistent | FlagHashed | FlagSched1 | 0x100).String(), "persistent,hashed,flag-1,0x100"},
		{DirectRoute.String(), "route"},
		{TunnelGUE.String(), "gue"},
		{SCTP.String(), "sctp"},
		{fmt.Sprint(&Service{FWMark: 3}), "fwm 3/ipv4"},
		{fmt.Sprint(&Service{Protocol: UDP, Address: mustAddr("2001:db8::1"), Port: 53}), "udp [2001:db8::1]:53"},
		{(&Op{Kind: DeleteDestination, Service: ptr(Service{FWMark: 1}), Destination: ptr(Destination{Address: mustAddr("10.0.0.1"), Port: 80})}).String(), "delete destination 10.0.0.1:80 of fwm 1/ipv4"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, s := range []string{"masq", "local", "tunnel", "route", "bypass"} {
		m, err := ParseForwardMethod(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseForwardMethod(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseProtocol("icmp"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseProtocol(icmp): %v", err)
	}
}

// TestApplyEncodingStrict checks that every request Apply sends carries its service and
// destination as nests flagged NLA_F_NESTED (strict encoding), as gnl encodes the declarations.
func TestApplyEncodingStrict(t *testing.T) {
	var ops []Op
	for _, s := range testServices() {
		ops = append(ops, Op{Kind: AddService, Service: ptr(s)}, Op{Kind: UpdateService, Service: ptr(s)}, Op{Kind: DeleteService, Service: ptr(s)})
		for _, d := range testDests() {
			if d.family() != s.family() {
				d.Forward = Tunnel
			}
			ops = append(ops, Op{Kind: AddDestination, Service: ptr(s), Destination: ptr(d)},
				Op{Kind: UpdateDestination, Service: ptr(s), Destination: ptr(d)}, Op{Kind: DeleteDestination, Service: ptr(s), Destination: ptr(d)})
		}
	}
	var enc encoder
	for i := range ops {
		var b gnl.Batch
		if err := enc.add(&b, &ops[i]); err != nil {
			t.Fatalf("%s: %v", &ops[i], err)
		}
		h := batchBytes(t, &b)
		n := 0
		for off := 20; off+4 <= len(h); n++ {
			l := int(binary.NativeEndian.Uint16(h[off:]))
			typ := binary.NativeEndian.Uint16(h[off+2:])
			if typ&gnl.FlagNested == 0 {
				t.Errorf("%s: top-level attribute %d without NLA_F_NESTED", &ops[i], typ)
			}
			if l < 4 {
				t.Fatalf("%s: attribute of %d bytes", &ops[i], l)
			}
			off += (l + 3) &^ 3
		}
		want := 2
		if ops[i].Destination == nil {
			want = 1
		}
		if n != want {
			t.Errorf("%s: %d top-level attributes, want %d", &ops[i], n, want)
		}
	}
}

// batchBytes sends a one-request batch to a fake kernel and returns the request it received.
func batchBytes(t *testing.T, b *gnl.Batch) []byte {
	t.Helper()
	var got []byte
	k := &gnltest.Kernel{}
	k.Register(&gnltest.Family{Name: "IPVS", Version: 1, Handle: func(r gnltest.Request) ([]gnltest.Message, error) {
		got = append(make([]byte, 20), r.Attrs...) // headers zeroed: only attributes compared
		return nil, nil
	}})
	conn := k.Dial(nil)
	defer conn.Close()
	if err := conn.SendBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return got
}

func ptr[T any](v T) *T { return &v }

func TestApplyNilOperands(t *testing.T) {
	f, c := newTestClient(t)
	res, err := c.Apply(ctx(t), []Op{{Kind: AddService}, {Kind: AddDestination, Service: ptr(testServices()[0])}, {Kind: 99, Service: ptr(testServices()[0])}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if !errors.Is(r, ErrInvalid) {
			t.Errorf("op %d: %v, want ErrInvalid", i, r)
		}
	}
	if len(f.reqs) != 0 {
		t.Errorf("%d invalid requests reached the kernel", len(f.reqs))
	}
	if err := c.exec(ctx(t), Op{Kind: DeleteDestination, Service: ptr(testServices()[0])}); !errors.Is(err, ErrInvalid) {
		t.Errorf("exec without destination: %v", err)
	}
}
