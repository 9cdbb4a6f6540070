package ipvs

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
	"github.com/kubelvs/kubelvs/pkg/lvs"
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
func testServices() []lvs.Service {
	return []lvs.Service{
		svc(lvs.TCP, "10.0.0.1", 80, "rr"),
		{ServiceKey: key(lvs.UDP, "10.0.0.1", 53), Scheduler: "wrr", Flags: lvs.FlagOnePacket},
		{ServiceKey: key(lvs.SCTP, "10.0.0.2", 3868), Scheduler: "sh", Flags: lvs.FlagSHFallback | lvs.FlagSHPort},
		{ServiceKey: key(lvs.TCP, "2001:db8::1", 443), Scheduler: "mh", Flags: lvs.FlagMHPort | lvs.FlagPersistent, TimeoutSeconds: 300, PersistencePrefixLength: 64},
		{ServiceKey: key(lvs.TCP, "10.0.0.3", 0), Scheduler: "lc", Flags: lvs.FlagPersistent, TimeoutSeconds: 60, PersistencePrefixLength: 24},
		{ServiceKey: lvs.ServiceKey{FirewallMark: 7}, Scheduler: "wlc"},
		{ServiceKey: lvs.ServiceKey{Family: lvs.IPv6, FirewallMark: 7}, Scheduler: "lblcr"},
		{ServiceKey: key(lvs.UDP, "10.0.0.4", 5060), Scheduler: "rr", Flags: lvs.FlagPersistent, TimeoutSeconds: 30, PersistenceEngine: "sip"},
	}
}

func key(p lvs.Protocol, addr string, port uint16) lvs.ServiceKey {
	return lvs.ServiceKey{Protocol: p, Address: mustAddr(addr), Port: port}
}

func svc(p lvs.Protocol, addr string, port uint16, sched string) lvs.Service {
	return lvs.Service{ServiceKey: key(p, addr, port), Scheduler: sched}
}

func dst(addr string, port uint16, fwd lvs.Forwarding, weight uint32) lvs.Destination {
	return lvs.Destination{Address: mustAddr(addr), Port: port, Forwarding: fwd, Weight: weight}
}

// asRead is what the kernel reports for a service added as s.
func asRead(s lvs.Service) Service {
	s.ServiceKey = s.Key()
	s.Flags |= lvs.FlagHashed
	if s.PersistencePrefixLength == 0 {
		s.PersistencePrefixLength = uint8(s.Family.Bits())
	}
	if s.Scheduler == "" {
		s.Scheduler = "wlc"
	}
	return Service{Service: s, Stats: Stats{Conns: 5, InBytes: 100, OutBytes: 1 << 33}, Stats32: Stats{Conns: 5, InBytes: 100}}
}

func TestServicesRoundTrip(t *testing.T) {
	_, c := newTestClient(t)
	want := testServices()
	for _, s := range want {
		if err := c.AddService(ctx(t), &s); err != nil {
			t.Fatalf("add %s: %v", s.Key(), err)
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
		one, err := c.Service(ctx(t), s.ServiceKey)
		if err != nil {
			t.Fatalf("get %s: %v", s.Key(), err)
		}
		if d := cmp.Diff(asRead(s), one, cmpopts.EquateComparable(netip.Addr{})); d != "" {
			t.Errorf("get %s (-want +got):\n%s", s.Key(), d)
		}
	}
	// Update in place: scheduler, flags, persistence.
	u := want[0]
	u.Scheduler, u.Flags, u.TimeoutSeconds = "mh", lvs.FlagPersistent|lvs.FlagMHFallback, 120
	if err := c.UpdateService(ctx(t), &u); err != nil {
		t.Fatal(err)
	}
	one, err := c.Service(ctx(t), want[0].ServiceKey)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(asRead(u), one, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("after update (-want +got):\n%s", d)
	}
}

func TestServiceEncoding(t *testing.T) {
	f, c := newTestClient(t)
	s := lvs.Service{ServiceKey: key(lvs.TCP, "192.0.2.1", 8080), Scheduler: "rr", Flags: lvs.FlagPersistent | lvs.FlagHashed, TimeoutSeconds: 10, PersistencePrefixLength: 24}
	if err := c.AddService(ctx(t), &s); err != nil {
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
		7: append(ne(uint32(lvs.FlagPersistent)), 0xff, 0xff, 0xff, 0xff), // hashed is never sent
		8: ne(10),
		9: {255, 255, 255, 0},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("NEW_SERVICE attributes (-want +got):\n%s", d)
	}
	// IPv6 persistence netmasks go as a host-order prefix length.
	s6 := lvs.Service{ServiceKey: key(lvs.TCP, "2001:db8::2", 1), Flags: lvs.FlagPersistent, PersistencePrefixLength: 48}
	if err := c.AddService(ctx(t), &s6); err != nil {
		t.Fatal(err)
	}
	w, _ := wireSvc(&s6)
	if binary.NativeEndian.Uint32(w.Netmask[:]) != 48 || w.SchedName != "wlc" {
		t.Errorf("IPv6 netmask %v, scheduler %q", w.Netmask, w.SchedName)
	}
}

func testDests() []lvs.Destination {
	return []lvs.Destination{
		dst("10.1.0.1", 8080, lvs.Masquerade, 1),
		{Address: mustAddr("10.1.0.2"), Port: 8080, Forwarding: lvs.DirectRouting, Weight: 100, UpperThreshold: 1000, LowerThreshold: 10},
		dst("10.1.0.3", 8080, lvs.Tunnel, 0),
		{Address: mustAddr("10.1.0.4"), Port: 8080, Forwarding: lvs.Tunnel, TunnelType: lvs.TunnelGUE, TunnelPort: 6080, TunnelFlags: lvs.TunnelChecksum, Weight: 5},
		{Address: mustAddr("10.1.0.5"), Port: 8080, Forwarding: lvs.Tunnel, TunnelType: lvs.TunnelGRE, TunnelFlags: lvs.TunnelRemoteChecksum, Weight: 5},
		dst("2001:db8::10", 8080, lvs.Tunnel, 2), // mixed family
		dst("127.0.0.1", 80, lvs.Local, 1),
		dst("10.1.0.6", 8080, lvs.Bypass, 1),
	}
}

// destAsRead is what the fake kernel reports for a destination added as d.
func destAsRead(d lvs.Destination) Destination {
	d.Family = lvs.FamilyOf(d.Address)
	return Destination{Destination: d, ActiveConns: 3, Stats: Stats{Conns: 7, InBytes: 1 << 40}, Stats32: Stats{Conns: 7, InBytes: 1 << 40}}
}

func TestDestinationsAndTable(t *testing.T) {
	_, c := newTestClient(t)
	svcs := testServices()
	for _, s := range svcs {
		if err := c.AddService(ctx(t), &s); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range testDests() {
		if err := c.AddDestination(ctx(t), &svcs[0], &d); err != nil {
			t.Fatalf("add %s: %v", d.Key(), err)
		}
	}
	v6 := lvs.Destination{Address: mustAddr("2001:db8::20"), Port: 443, Weight: 3}
	if err := c.AddDestination(ctx(t), &svcs[3], &v6); err != nil {
		t.Fatal(err)
	}
	var want []Destination
	for _, d := range testDests() {
		want = append(want, destAsRead(d))
	}
	got, err := c.Destinations(ctx(t), svcs[0].ServiceKey)
	if err != nil {
		t.Fatal(err)
	}
	opts := cmpopts.EquateComparable(netip.Addr{})
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("destinations (-want +got):\n%s", d)
	}
	upd := testDests()[1]
	upd.Weight, upd.Forwarding, upd.UpperThreshold, upd.LowerThreshold = 0, lvs.Masquerade, 0, 0
	if err := c.UpdateDestination(ctx(t), &svcs[0], &upd); err != nil {
		t.Fatal(err)
	}
	want[1] = destAsRead(upd)
	if err := c.DeleteDestination(ctx(t), &svcs[0], ptr(testDests()[7])); err != nil {
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
	if ds, err := c.Destinations(ctx(t), svcs[1].ServiceKey); err != nil || len(ds) != 0 {
		t.Errorf("destinations of an empty service: %v, %v", ds, err)
	}
	missing := key(lvs.TCP, "10.9.9.9", 1)
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
		if err := c.AddService(ctx(t), &s); err != nil {
			t.Fatal(err)
		}
	}
	var want []Destination
	for _, d := range testDests() {
		if err := c.AddDestination(ctx(t), &svcs[0], &d); err != nil {
			t.Fatalf("add %s: %v", d.Key(), err)
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
	svc := svc(lvs.TCP, "10.0.0.1", 80, "rr")
	dst := dst("10.1.0.1", 80, lvs.Masquerade, 1)
	if err := c.AddService(ctx(t), &svc); err != nil {
		t.Fatal(err)
	}
	if err := c.AddDestination(ctx(t), &svc, &dst); err != nil {
		t.Fatal(err)
	}
	missing := svc
	missing.Address = mustAddr("10.0.0.9")
	other := dst
	other.Address = mustAddr("10.1.0.9")
	tests := []struct {
		name    string
		do      func() error
		want    error
		errno   syscall.Errno // 0: refused before reaching the kernel
		notSent bool
	}{
		{"duplicate service", func() error { return c.AddService(ctx(t), &svc) }, ErrServiceExists, syscall.EEXIST, false},
		{"unknown scheduler", func() error { s := missing; s.Scheduler = "nope"; return c.AddService(ctx(t), &s) }, ErrSchedulerNotFound, syscall.ENOENT, false},
		{"unknown engine", func() error { s := missing; s.PersistenceEngine = "nope"; return c.AddService(ctx(t), &s) }, ErrSchedulerNotFound, syscall.ENOENT, false},
		{"update unknown scheduler", func() error { s := svc; s.Scheduler = "nope"; return c.UpdateService(ctx(t), &s) }, ErrSchedulerNotFound, syscall.ENOENT, false},
		{"update missing service", func() error { return c.UpdateService(ctx(t), &missing) }, ErrServiceNotFound, syscall.ESRCH, false},
		{"update missing service, unknown scheduler", func() error { s := missing; s.Scheduler = "nope"; return c.UpdateService(ctx(t), &s) }, ErrServiceNotFound, syscall.ESRCH, false},
		{"delete missing service", func() error { return c.DeleteService(ctx(t), &missing) }, ErrServiceNotFound, syscall.ESRCH, false},
		{"get missing service", func() error { _, err := c.Service(ctx(t), missing.ServiceKey); return err }, ErrServiceNotFound, syscall.ESRCH, false},
		{"duplicate destination", func() error { return c.AddDestination(ctx(t), &svc, &dst) }, ErrDestExists, syscall.EEXIST, false},
		{"destination of missing service", func() error { return c.AddDestination(ctx(t), &missing, &other) }, ErrServiceNotFound, syscall.ESRCH, false},
		{"update missing destination", func() error { return c.UpdateDestination(ctx(t), &svc, &other) }, ErrDestNotFound, syscall.ENOENT, false},
		{"delete missing destination", func() error { return c.DeleteDestination(ctx(t), &svc, &other) }, ErrDestNotFound, syscall.ENOENT, false},
		{"thresholds inverted", func() error {
			d := other
			d.UpperThreshold, d.LowerThreshold = 1, 2
			return c.AddDestination(ctx(t), &svc, &d)
		}, ErrInvalid, syscall.ERANGE, false},
		{"mixed family masquerade", func() error {
			d := other
			d.Address = mustAddr("2001:db8::1")
			return c.AddDestination(ctx(t), &svc, &d)
		}, ErrInvalid, 0, true},
		{"weight too large", func() error { d := other; d.Weight = 1 << 31; return c.AddDestination(ctx(t), &svc, &d) }, ErrInvalid, 0, true},
		{"long scheduler name", func() error { s := missing; s.Scheduler = "abcdefghijklmnop"; return c.AddService(ctx(t), &s) }, ErrInvalid, 0, true},
		{"no address", func() error {
			return c.AddService(ctx(t), &lvs.Service{ServiceKey: lvs.ServiceKey{Protocol: lvs.TCP, Port: 1}})
		}, ErrInvalid, 0, true},
		{"address of the wrong family", func() error {
			return c.AddService(ctx(t), &lvs.Service{ServiceKey: lvs.ServiceKey{Family: lvs.IPv6, Protocol: lvs.TCP, Address: mustAddr("10.0.0.5")}})
		}, ErrInvalid, 0, true},
		{"no protocol", func() error {
			return c.AddService(ctx(t), &lvs.Service{ServiceKey: lvs.ServiceKey{Address: mustAddr("10.0.0.5")}})
		}, ErrInvalid, 0, true},
		{"netmask too long", func() error { s := missing; s.PersistencePrefixLength = 33; return c.AddService(ctx(t), &s) }, ErrInvalid, 0, true},
		{"unknown flags", func() error { s := missing; s.Flags = 0x100; return c.AddService(ctx(t), &s) }, ErrInvalid, 0, true},
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
				Destination: ptr(lvs.Destination{Address: netip.AddrFrom4([4]byte{10, 2, byte(i), byte(j)}), Port: 80, Weight: uint32(j)})})
		}
	}
	for _, s := range svcs {
		ops = append(ops, Op{Kind: AddService, Service: ptr(s)})
	}
	ops = append(ops,
		Op{Kind: AddService, Service: ptr(svcs[0])}, // duplicate
		Op{Kind: DeleteDestination, Service: ptr(svcs[1]), Destination: ptr(lvs.Destination{Address: mustAddr("10.9.0.1"), Port: 1})},      // missing
		Op{Kind: AddDestination, Service: ptr(svcs[0]), Destination: ptr(lvs.Destination{Address: mustAddr("10.9.0.2"), Weight: 1 << 31})}, // invalid
		Op{Kind: UpdateService, Service: ptr(svc(lvs.TCP, "10.8.8.8", 1, "nope"))},
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
		s := lvs.Service{ServiceKey: lvs.ServiceKey{Protocol: lvs.TCP, Address: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Port: 80}, Scheduler: "rr"}
		ops = append(ops, Op{Kind: AddService, Service: ptr(s)})
		for j := range ndst {
			ops = append(ops, Op{Kind: AddDestination, Service: ptr(s), Destination: ptr(lvs.Destination{Address: netip.AddrFrom4([4]byte{10, 1, byte(i), byte(j)}), Port: 8080, Weight: 1})})
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
	if err := c.AddService(ctx(t), ptr(testServices()[0])); err != nil {
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
		if err := c.AddService(ctx(t), &s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Zero(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.ZeroService(ctx(t), testServices()[0].ServiceKey); err != nil {
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
		{(&Op{Kind: DeleteDestination, Service: ptr(lvs.Service{ServiceKey: lvs.ServiceKey{FirewallMark: 1}}), Destination: ptr(dst("10.0.0.1", 80, 0, 0))}).String(), "delete destination 10.0.0.1:80 of fwmark 1/IPv4"},
		{(&Op{Kind: AddService, Service: ptr(svc(lvs.UDP, "2001:db8::1", 53, ""))}).String(), "add service UDP [2001:db8::1]:53"},
		{Info{Version: 0x010201}.VersionString(), "1.2.1"},
		{DaemonBackup.String(), "backup"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestApplyEncodingStrict checks that every request Apply sends carries its service and
// destination as nests flagged NLA_F_NESTED (strict encoding), as gnl encodes the declarations.
func TestApplyEncodingStrict(t *testing.T) {
	var ops []Op
	for _, s := range testServices() {
		ops = append(ops, Op{Kind: AddService, Service: ptr(s)}, Op{Kind: UpdateService, Service: ptr(s)}, Op{Kind: DeleteService, Service: ptr(s)})
		for _, d := range testDests() {
			if lvs.FamilyOf(d.Address) != s.Key().Family {
				d.Forwarding = lvs.Tunnel
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
