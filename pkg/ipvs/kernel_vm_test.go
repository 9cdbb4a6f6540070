//go:build ipvsvm

package ipvs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// These tests run inside hack/vm's kernel (make test-vm), in the guest's initial network
// namespace, one at a time; each starts from an empty table.

func TestMain(m *testing.M) {
	if os.Getenv("KUBELVS_VM") != "1" {
		fmt.Fprintln(os.Stderr, "ipvsvm tests need a kernel with IPVS: run them with make test-vm (hack/vm)")
		os.Exit(1)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "ipvs0", "type", "dummy"},
		{"link", "set", "ipvs0", "up", "multicast", "on"},
		{"addr", "add", "10.99.0.1/24", "dev", "ipvs0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "ip %s: %v\n%s", strings.Join(args, " "), err, out)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func vmClient(t *testing.T) *Client {
	t.Helper()
	return vmClientWith(t, &Config{Timeout: 60 * time.Second})
}

func vmClientWith(t *testing.T, cfg *Config) *Client {
	t.Helper()
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Flush(context.Background())
		_ = c.Close()
	})
	return c
}

func sortDests(table []TableEntry) {
	for i := range table {
		slices.SortFunc(table[i].Destinations, func(a, b Destination) int {
			return cmpAddrPort(a.Address, a.Port, b.Address, b.Port)
		})
	}
}

func cmpAddrPort(a netip.Addr, ap uint16, b netip.Addr, bp uint16) int {
	if c := a.Compare(b); c != 0 {
		return c
	}
	return int(ap) - int(bp)
}

var (
	addrOpt  = cmpopts.EquateComparable(netip.Addr{})
	noStats  = cmpopts.IgnoreFields(Destination{}, "Stats", "Stats32", "ActiveConns", "InactiveConns", "PersistentConns")
	noSStats = cmpopts.IgnoreFields(Service{}, "Stats", "Stats32")
)

func TestVMRoundTrip(t *testing.T) {
	c := vmClient(t)
	svcs := testServices()
	for _, s := range svcs {
		if err := c.AddService(ctx(t), &s); err != nil {
			t.Fatalf("add %s: %v", s.Key(), err)
		}
	}
	dests := testDests()
	dests[6].Address = mustAddr("10.99.0.1") // a local address: the kernel makes it Local itself
	for _, d := range dests {
		if err := c.AddDestination(ctx(t), &svcs[0], &d); err != nil {
			t.Fatalf("add %s: %v", d.Key(), err)
		}
	}
	v6 := dst("2001:db8::20", 443, lvs.DirectRouting, 3)
	if err := c.AddDestination(ctx(t), &svcs[3], &v6); err != nil {
		t.Fatal(err)
	}
	fwm := dst("10.1.0.9", 0, lvs.DirectRouting, 4)
	if err := c.AddDestination(ctx(t), &svcs[5], &fwm); err != nil {
		t.Fatal(err)
	}
	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var want []TableEntry
	for i, s := range svcs {
		e := TableEntry{Service: asRead(s)}
		switch i {
		case 0:
			for _, d := range dests {
				d.Family = lvs.FamilyOf(d.Address)
				e.Destinations = append(e.Destinations, Destination{Destination: d})
			}
		case 3:
			v6.Family = lvs.IPv6
			e.Destinations = []Destination{{Destination: v6}}
		case 5:
			fwm.Family = lvs.IPv4
			e.Destinations = []Destination{{Destination: fwm}}
		}
		want = append(want, e)
	}
	sortDests(want)
	sortDests(table)
	sortTable(want)
	sortTable(table)
	if d := cmp.Diff(want, table, addrOpt, noStats, noSStats, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}

	// Updates in place, read back one by one.
	u := svcs[0]
	u.Scheduler, u.Flags, u.TimeoutSeconds, u.PersistencePrefixLength = "mh", lvs.FlagPersistent|lvs.FlagMHFallback|lvs.FlagMHPort, 77, 16
	if err := c.UpdateService(ctx(t), &u); err != nil {
		t.Fatal(err)
	}
	got, err := c.Service(ctx(t), svcs[0].ServiceKey)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(asRead(u), got, addrOpt, noSStats); d != "" {
		t.Errorf("updated service (-want +got):\n%s", d)
	}
	ud := dests[3]
	ud.Weight, ud.UpperThreshold, ud.LowerThreshold, ud.TunnelType, ud.TunnelPort, ud.TunnelFlags = 9, 50, 5, lvs.TunnelGRE, 0, lvs.TunnelChecksum
	if err := c.UpdateDestination(ctx(t), &svcs[0], &ud); err != nil {
		t.Fatal(err)
	}
	ds, err := c.Destinations(ctx(t), svcs[0].ServiceKey)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ds, func(d Destination) bool { return d.Key() == ud.Key() })
	ud.Family = lvs.IPv4
	if i < 0 {
		t.Fatalf("updated destination missing from %v", ds)
	} else if d := cmp.Diff(Destination{Destination: ud}, ds[i], addrOpt, noStats); d != "" {
		t.Errorf("updated destination (-want +got):\n%s", d)
	}
	if err := c.DeleteDestination(ctx(t), &svcs[0], &ud); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteService(ctx(t), &svcs[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Service(ctx(t), svcs[1].ServiceKey); !errors.Is(err, ErrServiceNotFound) {
		t.Errorf("deleted service: %v", err)
	}
	if ds2, err := c.Destinations(ctx(t), svcs[0].ServiceKey); err != nil || len(ds2) != len(ds)-1 {
		t.Errorf("after deleting a destination: %d destinations, %v", len(ds2), err)
	}
}

func longCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

func sortTable(t []TableEntry) {
	slices.SortFunc(t, func(a, b TableEntry) int { return strings.Compare(a.Key().String(), b.Key().String()) })
}

// schedulers lists the scheduler modules this kernel has.
func schedulers(t *testing.T) []string {
	t.Helper()
	var uts syscall.Utsname
	if err := syscall.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	var rel []byte
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	files, err := filepath.Glob("/lib/modules/" + string(rel) + "/kernel/net/netfilter/ipvs/ip_vs_*.ko*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no IPVS modules in /lib/modules/%s: %v", rel, err)
	}
	var out []string
	for _, f := range files {
		name := strings.TrimPrefix(filepath.Base(f), "ip_vs_")
		name, _, _ = strings.Cut(name, ".ko")
		if name == "ftp" || strings.HasPrefix(name, "pe_") {
			continue
		}
		out = append(out, name)
	}
	if len(out) < 13 {
		t.Fatalf("only %d scheduler modules: %v", len(out), out)
	}
	return out
}

// ipvsadmScript is a table written for ipvsadm -R: both families, every protocol, firewall
// marks, persistence with netmasks and an engine, sh/mh flags, one-packet scheduling, every
// forwarding method ipvsadm has, IPIP/GUE/GRE tunnels with checksum options, thresholds, a
// mixed-family tunnelled destination; plus one service per scheduler module.
func ipvsadmScript(t *testing.T) string {
	s := `
-A -t 10.50.0.1:80 -s wrr
-a -t 10.50.0.1:80 -r 10.50.1.1:8080 -m -w 3
-a -t 10.50.0.1:80 -r 10.50.1.2:80 -g -w 0 -x 1000 -y 100
-a -t 10.50.0.1:80 -r 10.50.1.3:80 -i -w 2
-a -t 10.50.0.1:80 -r 10.50.1.4:80 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum
-a -t 10.50.0.1:80 -r 10.50.1.5:80 -i -w 2 --tun-type gue --tun-port 6081 --tun-remcsum
-a -t 10.50.0.1:80 -r 10.50.1.6:80 -i -w 2 --tun-type gre --tun-csum
-a -t 10.50.0.1:80 -r [2001:db8::50]:80 -i -w 1
-A -u 10.50.0.2:53 -s rr -o
-a -u 10.50.0.2:53 -r 10.50.1.1:53 -m -w 1
-A --sctp-service 10.50.0.3:3868 -s sh -b sh-fallback,sh-port
-a --sctp-service 10.50.0.3:3868 -r 10.50.1.1:3868 -m -w 1
-A -t [2001:db8::1]:443 -s mh -p 600 -M 64 -b mh-fallback,mh-port
-a -t [2001:db8::1]:443 -r [2001:db8::2]:8443 -m -w 5
-a -t [2001:db8::1]:443 -r [2001:db8::3]:443 -g -w 5 -x 10
-A -t 10.50.0.4:0 -s lc -p 120 -M 255.255.255.0
-a -t 10.50.0.4:0 -r 10.50.1.7:0 -g -w 1
-A -u 10.50.0.5:5060 -s rr -p 30 --pe sip
-a -u 10.50.0.5:5060 -r 10.50.1.8:5060 -m -w 1
-A -f 7 -s wlc
-a -f 7 -r 10.50.1.9:0 -g -w 1
-A -f 8 -6 -s rr -p 60
-a -f 8 -6 -r [2001:db8::9]:0 -g -w 1
`
	for i, name := range schedulers(t) {
		s += fmt.Sprintf("-A -t 10.51.0.%d:80 -s %s\n-a -t 10.51.0.%d:80 -r 10.51.1.%d:80 -m -w 1\n", i+1, name, i+1, i+1)
	}
	return s
}

func TestVMIpvsadmToLibrary(t *testing.T) {
	c := vmClient(t)
	script := ipvsadmScript(t)
	ipvsadm(t, script, "-R")
	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := canon(parseRules(t, script))
	saved := canon(parseRules(t, ipvsadm(t, "", "-Sn")))
	got := canon(table)
	if d := cmp.Diff(want, saved); d != "" {
		t.Errorf("ipvsadm -Sn differs from the script it restored (-script +saved):\n%s", d)
	}
	if d := cmp.Diff(saved, got); d != "" {
		t.Errorf("pkg/ipvs reads the table differently from ipvsadm -Sn (-ipvsadm +pkg/ipvs):\n%s", d)
	}
	if d := cmp.Diff(thresholds(t, ipvsadm(t, "", "-Ln", "--thresholds")), tableThresholds(table)); d != "" {
		t.Errorf("thresholds and connection counts (-ipvsadm -Ln --thresholds +pkg/ipvs):\n%s", d)
	}
	if tableThresholds(table)["TCP 10.50.0.1:80 -> 10.50.1.2:80"] != [4]uint64{1000, 100, 0, 0} {
		t.Errorf("thresholds of 10.50.1.2:80 not read: %v", tableThresholds(table))
	}
	if len(got) < 40 {
		t.Errorf("only %d lines: the script did not create the table", len(got))
	}
	// Every scheduler module present came back by name.
	for _, name := range schedulers(t) {
		if !slices.ContainsFunc(table, func(e TableEntry) bool { return e.Service.Scheduler == name }) {
			t.Errorf("no service with scheduler %s in the table", name)
		}
	}
}

func TestVMLibraryToIpvsadm(t *testing.T) {
	c := vmClient(t)
	want := parseRules(t, ipvsadmScript(t))
	var ops []Op
	for _, e := range want {
		ops = append(ops, Op{Kind: AddService, Service: ptr(e.Service.Service)})
		for _, d := range e.Destinations {
			ops = append(ops, Op{Kind: AddDestination, Service: ptr(e.Service.Service), Destination: ptr(d.Destination)})
		}
	}
	res, err := c.Apply(ctx(t), ops)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r != nil {
			t.Errorf("%s: %v", &ops[i], r)
		}
	}
	saved := canon(parseRules(t, ipvsadm(t, "", "-Sn")))
	if d := cmp.Diff(canon(want), saved); d != "" {
		t.Errorf("ipvsadm -Sn of the table pkg/ipvs programmed (-programmed +ipvsadm):\n%s", d)
	}
	if d := cmp.Diff(tableThresholds(want), thresholds(t, ipvsadm(t, "", "-Ln", "--thresholds"))); d != "" {
		t.Errorf("thresholds (-programmed +ipvsadm -Ln --thresholds):\n%s", d)
	}
}

// echoService starts a TCP echo server on the guest and a service on vip (added to ipvs0) with
// it as its masquerade destination (NAT delivers to 10.99.0.1, local forwarding to the VIP).
func echoService(t *testing.T, c *Client, vip string) lvs.Service {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer conn.Close(); _, _ = io.Copy(conn, conn) }()
		}
	}()
	if out, err := exec.Command("ip", "addr", "add", vip+"/32", "dev", "ipvs0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "addr", "del", vip+"/32", "dev", "ipvs0").Run() })
	svc := svc(lvs.TCP, vip, port, "rr")
	if err := c.AddService(ctx(t), &svc); err != nil {
		t.Fatal(err)
	}
	if err := c.AddDestination(ctx(t), &svc, ptr(dst("10.99.0.1", port, lvs.Masquerade, 1))); err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestVMTraffic sends real TCP traffic through a service with a local destination and checks
// that the 64-bit counters and the connection counts move, and that they match ipvsadm's.
func TestVMTraffic(t *testing.T) {
	c := vmClient(t)
	svc := echoService(t, c, "10.99.0.100")
	vip, port := svc.Address, svc.Port
	const conns, payload = 5, 100000
	var open []net.Conn
	for range conns {
		conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(vip, port).String(), 10*time.Second)
		if err != nil {
			t.Fatalf("dial the virtual service: %v", err)
		}
		open = append(open, conn)
		msg := strings.Repeat("x", payload)
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(bufio.NewReader(conn), make([]byte, payload)); err != nil {
			t.Fatalf("echo through the virtual service: %v", err)
		}
	}
	// The kernel folds its per-CPU counters into the ones it reports every 2 s (the rate
	// estimator): wait for them.
	var (
		ds  []Destination
		err error
	)
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		ds, err = c.Destinations(ctx(t), svc.ServiceKey)
		if err != nil || len(ds) != 1 {
			t.Fatalf("destinations: %v, %v", ds, err)
		}
		if ds[0].Stats.Conns == conns || time.Since(start) > 10*time.Second {
			break
		}
	}
	d := ds[0]
	if d.ActiveConns != conns {
		t.Errorf("active connections %d while %d are open", d.ActiveConns, conns)
	}
	if d.Stats.Conns != conns || d.Stats.InBytes < conns*payload || d.Stats.InPackets == 0 {
		t.Errorf("destination counters %+v after %d connections of %d bytes", d.Stats, conns, payload)
	}
	for _, conn := range open {
		conn.Close()
	}
	// Closed connections leave the active count (FIN_WAIT/TIME_WAIT count as inactive).
	deadline := time.Now().Add(10 * time.Second)
	for {
		ds, err = c.Destinations(ctx(t), svc.ServiceKey)
		if err != nil {
			t.Fatal(err)
		}
		if ds[0].ActiveConns == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ds[0].ActiveConns != 0 || ds[0].InactiveConns == 0 {
		t.Errorf("after closing: %d active, %d inactive connections", ds[0].ActiveConns, ds[0].InactiveConns)
	}
	time.Sleep(2500 * time.Millisecond) // one more estimator round, for the last packets
	got, err := c.Service(ctx(t), svc.ServiceKey)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stats.Conns != conns || got.Stats.InBytes < conns*payload || got.Stats32.Conns != conns {
		t.Errorf("service counters %+v / %+v", got.Stats, got.Stats32)
	}
	// ipvsadm -Ln --exact --stats shows the same counters.
	st := parseStats(t, ipvsadm(t, "", "-Ln", "--exact", "--stats"))
	ds, _ = c.Destinations(ctx(t), svc.ServiceKey)
	got, _ = c.Service(ctx(t), svc.ServiceKey)
	wantStats := []statLine{
		{fmt.Sprintf("TCP %s:%d", vip, port), [5]uint64{got.Stats.Conns, got.Stats.InPackets, got.Stats.OutPackets, got.Stats.InBytes, got.Stats.OutBytes}},
		{fmt.Sprintf("-> 10.99.0.1:%d", port), [5]uint64{ds[0].Stats.Conns, ds[0].Stats.InPackets, ds[0].Stats.OutPackets, ds[0].Stats.InBytes, ds[0].Stats.OutBytes}},
	}
	if d := cmp.Diff(wantStats, st, cmp.AllowUnexported(statLine{})); d != "" {
		t.Errorf("ipvsadm -Ln --exact --stats (-pkg/ipvs +ipvsadm):\n%s", d)
	}
	// Zeroing clears them.
	if err := c.ZeroService(ctx(t), svc.ServiceKey); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if got, _ = c.Service(ctx(t), svc.ServiceKey); got.Stats.Conns != 0 || got.Stats.InBytes != 0 {
		t.Errorf("after zero: %+v", got.Stats)
	}
}

func TestVMErrorsLeaveTableUnchanged(t *testing.T) {
	c := vmClient(t)
	svc := svc(lvs.TCP, "10.60.0.1", 80, "rr")
	dst := dst("10.60.1.1", 80, lvs.Masquerade, 1)
	if err := c.AddService(ctx(t), &svc); err != nil {
		t.Fatal(err)
	}
	if err := c.AddDestination(ctx(t), &svc, &dst); err != nil {
		t.Fatal(err)
	}
	missing := svc
	missing.Address = mustAddr("10.60.0.9")
	other := dst
	other.Address = mustAddr("10.60.1.9")
	tests := []struct {
		name  string
		do    func() error
		want  error
		errno syscall.Errno
	}{
		{"duplicate service", func() error { return c.AddService(ctx(t), &svc) }, ErrServiceExists, syscall.EEXIST},
		{"unknown scheduler", func() error { s := missing; s.Scheduler = "nosuch"; return c.AddService(ctx(t), &s) }, ErrSchedulerNotFound, syscall.ENOENT},
		{"unknown persistence engine", func() error { s := missing; s.PersistenceEngine = "nosuch"; return c.AddService(ctx(t), &s) }, ErrSchedulerNotFound, syscall.ENOENT},
		{"update to unknown scheduler", func() error { s := svc; s.Scheduler = "nosuch"; return c.UpdateService(ctx(t), &s) }, ErrSchedulerNotFound, syscall.ENOENT},
		{"update missing service", func() error { return c.UpdateService(ctx(t), &missing) }, ErrServiceNotFound, syscall.ESRCH},
		{"update missing service to unknown scheduler", func() error { s := missing; s.Scheduler = "nosuch"; return c.UpdateService(ctx(t), &s) }, ErrServiceNotFound, syscall.ESRCH},
		{"delete missing service", func() error { return c.DeleteService(ctx(t), &missing) }, ErrServiceNotFound, syscall.ESRCH},
		{"get missing service", func() error { _, err := c.Service(ctx(t), missing.ServiceKey); return err }, ErrServiceNotFound, syscall.ESRCH},
		{"destinations of missing service", func() error { _, err := c.Destinations(ctx(t), missing.ServiceKey); return err }, ErrServiceNotFound, syscall.ESRCH},
		{"duplicate destination", func() error { return c.AddDestination(ctx(t), &svc, &dst) }, ErrDestExists, syscall.EEXIST},
		{"destination of missing service", func() error { return c.AddDestination(ctx(t), &missing, &other) }, ErrServiceNotFound, syscall.ESRCH},
		{"update missing destination", func() error { return c.UpdateDestination(ctx(t), &svc, &other) }, ErrDestNotFound, syscall.ENOENT},
		{"delete missing destination", func() error { return c.DeleteDestination(ctx(t), &svc, &other) }, ErrDestNotFound, syscall.ENOENT},
		{"lower threshold above upper", func() error {
			d := other
			d.UpperThreshold, d.LowerThreshold = 10, 20
			return c.AddDestination(ctx(t), &svc, &d)
		}, ErrInvalid, syscall.ERANGE},
		{"GUE without a port", func() error {
			d := other
			d.Forwarding, d.TunnelType = lvs.Tunnel, lvs.TunnelGUE
			return c.AddDestination(ctx(t), &svc, &d)
		}, ErrInvalid, syscall.EINVAL},
		{"stop a daemon that is not running", func() error { return c.StopDaemon(ctx(t), DaemonBackup) }, ErrDaemonNotRunning, syscall.ESRCH},
	}
	before, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	savedBefore := ipvsadm(t, "", "-Sn")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.want) || !errors.Is(err, tc.errno) {
				t.Fatalf("error %v, want %v with errno %v", err, tc.want, tc.errno)
			}
		})
	}
	// The same failures in one batch: each operation gets its own error, the valid one applies.
	ops := []Op{
		{Kind: AddService, Service: &svc},
		{Kind: AddService, Service: &lvs.Service{ServiceKey: key(lvs.TCP, "10.60.0.8", 1), Scheduler: "nosuch"}},
		{Kind: AddDestination, Service: &missing, Destination: &other},
		{Kind: DeleteDestination, Service: &svc, Destination: &other},
		{Kind: AddDestination, Service: &svc, Destination: &dst},
	}
	res, err := c.Apply(ctx(t), ops)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []error{ErrServiceExists, ErrSchedulerNotFound, ErrServiceNotFound, ErrDestNotFound, ErrDestExists} {
		if !errors.Is(res[i], want) {
			t.Errorf("batch op %d (%s): %v, want %v", i, &ops[i], res[i], want)
		}
	}
	after, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, after, addrOpt); d != "" {
		t.Errorf("failed operations changed the table (-before +after):\n%s", d)
	}
	if savedAfter := ipvsadm(t, "", "-Sn"); savedAfter != savedBefore {
		t.Errorf("ipvsadm -Sn changed:\n%s\n->\n%s", savedBefore, savedAfter)
	}
}

func TestVMInfoTimeoutsDaemons(t *testing.T) {
	c := vmClient(t)
	info, err := c.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.VersionString() != "1.2.1" || info.ConnTableSize == 0 {
		t.Errorf("info %+v", info)
	}
	if out := ipvsadm(t, "", "-Ln"); !strings.Contains(out, fmt.Sprintf("version %s (size=%d)", info.VersionString(), info.ConnTableSize)) {
		t.Errorf("ipvsadm -Ln reports another version or size than %+v:\n%s", info, out)
	}
	old, err := c.Timeouts(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.SetTimeouts(context.Background(), old) }()
	if err := c.SetTimeouts(ctx(t), Timeouts{TCPSeconds: 1234, TCPFinSeconds: 56, UDPSeconds: 78}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Timeouts(ctx(t)); err != nil || got != (Timeouts{1234, 56, 78}) {
		t.Errorf("timeouts %+v, %v", got, err)
	}
	if out := ipvsadm(t, "", "-L", "--timeout"); !strings.Contains(out, "1234 56 78") {
		t.Errorf("ipvsadm --timeout: %s", out)
	}
	if err := c.SetTimeouts(ctx(t), Timeouts{UDPSeconds: 90}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Timeouts(ctx(t)); got != (Timeouts{1234, 56, 90}) {
		t.Errorf("a zero timeout changed the others: %+v", got)
	}

	d := Daemon{State: DaemonMaster, Interface: "ipvs0", SyncID: 42}
	if err := c.StartDaemon(ctx(t), d); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.StopDaemon(context.Background(), DaemonMaster) }()
	if err := c.StartDaemon(ctx(t), d); !errors.Is(err, ErrDaemonRunning) {
		t.Errorf("second master daemon: %v, want ErrDaemonRunning", err)
	}
	ds, err := c.Daemons(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].State != DaemonMaster || ds[0].Interface != "ipvs0" || ds[0].SyncID != 42 {
		t.Errorf("daemons %+v", ds)
	}
	if out := ipvsadm(t, "", "-L", "--daemon"); !strings.Contains(out, "master sync daemon (mcast=ipvs0, syncid=42") {
		t.Errorf("ipvsadm --daemon: %s", out)
	}
	if err := c.StopDaemon(ctx(t), DaemonMaster); err != nil {
		t.Fatal(err)
	}
	if ds, err := c.Daemons(ctx(t)); err != nil || len(ds) != 0 {
		t.Errorf("daemons after stop: %+v, %v", ds, err)
	}
}

// TestVMTableLarge reads a table with services whose destinations take several replies (250
// destinations of 356 bytes) and empty ones, and checks it against one-by-one reads and ipvsadm.
func TestVMTableLarge(t *testing.T) {
	c := vmClient(t)
	ctx := func(*testing.T) context.Context { return longCtx(t) }
	var ops []Op
	sizes := []int{250, 3, 0, 250, 1}
	for n := range 200 {
		s := lvs.Service{ServiceKey: lvs.ServiceKey{Protocol: lvs.UDP, Address: netip.AddrFrom4([4]byte{10, 70, byte(n >> 8), byte(n)}), Port: 53}, Scheduler: "rr"}
		ops = append(ops, Op{Kind: AddService, Service: ptr(s)})
		for j := range sizes[n%len(sizes)] {
			ops = append(ops, Op{Kind: AddDestination, Service: ptr(s), Destination: ptr(lvs.Destination{
				Address: netip.AddrFrom4([4]byte{10, 71, byte(j >> 8), byte(j)}), Port: 53, Weight: uint32(j % 7)})})
		}
	}
	res, err := c.Apply(ctx(t), ops)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r != nil {
			t.Fatalf("%s: %v", &ops[i], r)
		}
	}
	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := range table {
		one, err := c.Destinations(ctx(t), table[i].ServiceKey)
		if err != nil && (!errors.Is(err, ErrServiceNotFound) || len(table[i].Destinations) != 0) {
			t.Fatal(err)
		}
		if d := cmp.Diff(one, table[i].Destinations, addrOpt, noStats, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("destinations of %s (-one by one +table):\n%s", table[i].Key(), d)
		}
		total += len(table[i].Destinations)
	}
	if len(table) != 200 || total != 40*(250+3+0+250+1) {
		t.Errorf("table has %d services, %d destinations", len(table), total)
	}
	if d := cmp.Diff(canon(parseRules(t, ipvsadm(t, "", "-Sn"))), canon(table)); d != "" {
		t.Errorf("table differs from ipvsadm -Sn (-ipvsadm +pkg/ipvs):\n%s", d)
	}
}

func TestVMNetworkNamespaces(t *testing.T) {
	// A client in a fresh network namespace (Config.NetNS) sees and programs that namespace's
	// own table: IPVS is per namespace.
	c := vmClient(t)
	if err := c.AddService(ctx(t), ptr(svc(lvs.TCP, "10.80.0.1", 1, ""))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	nc, err := New(ctx(t), &Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if tab, err := nc.Table(ctx(t)); err != nil || len(tab) != 0 {
		t.Errorf("table of a fresh namespace: %v, %v", tab, err)
	}
	if err := nc.AddService(ctx(t), ptr(svc(lvs.TCP, "10.80.0.2", 1, ""))); err != nil {
		t.Fatal(err)
	}
	if tab, _ := c.Table(ctx(t)); len(tab) != 1 {
		t.Errorf("the initial namespace sees %d services, want its own 1", len(tab))
	}
}

// TestVMApplyErrorsAcrossWindows: Apply asks the kernel to acknowledge only the last request of
// each sendmsg and learns of the others only when they fail. Failures as the last and the first
// request of a window, in the middle of one and as the very last request each get their own
// error, and every other operation is applied.
func TestVMApplyErrorsAcrossWindows(t *testing.T) {
	c := vmClientWith(t, &Config{Timeout: 60 * time.Second, Window: 100})
	const nsvc, ndst = 50, 10
	var ops []Op
	for i := range nsvc {
		ops = append(ops, Op{Kind: AddService, Service: ptr(lvs.Service{ServiceKey: lvs.ServiceKey{Protocol: lvs.TCP, Address: netip.AddrFrom4([4]byte{10, 80, 0, byte(i)}), Port: 80}, Scheduler: "rr"})})
	}
	// Apply sends services first, then destinations in order: op i is the i-th request sent.
	dups := map[int]bool{}
	for i := range nsvc {
		for j := range ndst {
			if p := len(ops); p == 99 || p == 100 || p == 250 {
				dups[p] = true
				ops = append(ops, ops[p-1]) // the previous destination again: EEXIST
			}
			ops = append(ops, Op{Kind: AddDestination, Service: ops[i].Service,
				Destination: ptr(lvs.Destination{Address: netip.AddrFrom4([4]byte{10, 81, byte(i), byte(j)}), Port: 8080, Weight: 1})})
		}
	}
	dups[len(ops)] = true
	ops = append(ops, ops[len(ops)-1])
	res, err := c.Apply(ctx(t), ops)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if dups[i] != errors.Is(r, ErrDestExists) || (!dups[i] && r != nil) {
			t.Errorf("op %d (%s): %v", i, &ops[i], r)
		}
	}
	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	dests := 0
	for _, e := range table {
		dests += len(e.Destinations)
	}
	if len(table) != nsvc || dests != nsvc*ndst {
		t.Errorf("table has %d services and %d destinations, want %d and %d", len(table), dests, nsvc, nsvc*ndst)
	}
	if n := strings.Count(ipvsadm(t, "", "-Sn"), "\n"); n != nsvc*(1+ndst) {
		t.Errorf("ipvsadm -Sn has %d lines, want %d", n, nsvc*(1+ndst))
	}
}

// TestVMSyncDaemonBackup runs the connection synchronization both ways of a keepalived pair: a
// master sync daemon in the guest's namespace and a backup in another namespace behind a veth
// pair, each started through pkg/ipvs. Connections through a service on the master appear in
// the backup's connection table, as ipvsadm -Lnc there shows.
func TestVMSyncDaemonBackup(t *testing.T) {
	master := vmClient(t)
	const ns = "kubelvs-sync"
	t.Cleanup(func() {
		_ = exec.Command("/sbin/ip", "netns", "del", ns).Run()
		_ = exec.Command("/sbin/ip", "link", "del", "syncm").Run()
	})
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", "syncm", "type", "veth", "peer", "name", "syncb", "netns", ns},
		{"addr", "add", "10.97.0.1/24", "dev", "syncm"},
		{"link", "set", "syncm", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", "10.97.0.2/24", "dev", "syncb"},
		{"-n", ns, "link", "set", "syncb", "up"},
	} {
		if out, err := exec.Command("/sbin/ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	nsf, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	backup, err := New(ctx(t), &Config{NetNS: int(nsf.Fd()), Timeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer backup.Close()
	inBackup := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("/sbin/ip", append([]string{"netns", "exec", ns, "ipvsadm"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ipvsadm %s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
		}
		return string(out)
	}

	if err := backup.StartDaemon(ctx(t), Daemon{State: DaemonBackup, Interface: "syncb", SyncID: 7}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = backup.StopDaemon(context.Background(), DaemonBackup) }()
	if err := master.StartDaemon(ctx(t), Daemon{State: DaemonMaster, Interface: "syncm", SyncID: 7}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = master.StopDaemon(context.Background(), DaemonMaster) }()
	ds, err := backup.Daemons(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].State != DaemonBackup || ds[0].Interface != "syncb" || ds[0].SyncID != 7 {
		t.Errorf("backup namespace's daemons %+v", ds)
	}
	if out := inBackup("-L", "--daemon"); !strings.Contains(out, "backup sync daemon (mcast=syncb, syncid=7") {
		t.Errorf("ipvsadm --daemon in the backup namespace: %s", out)
	}
	if ds, err := master.Daemons(ctx(t)); err != nil || len(ds) != 1 || ds[0].State != DaemonMaster {
		t.Errorf("master namespace's daemons %+v, %v", ds, err)
	}

	// A service on the master with an echo server behind it, and connections through it.
	svc := echoService(t, master, "10.99.0.101")
	want := netip.AddrPortFrom(svc.Address, svc.Port).String()
	for range 3 {
		conn, err := net.DialTimeout("tcp", want, 10*time.Second)
		if err != nil {
			t.Fatalf("dial the virtual service: %v", err)
		}
		defer conn.Close()
		for range 5 { // the master syncs a connection from its third packet on
			if _, err := conn.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(conn, make([]byte, 4)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out := ipvsadm(t, "", "-Lnc"); strings.Count(out, want) != 3 {
		t.Fatalf("the master's connection table has not the 3 connections to %s:\n%s", want, out)
	}
	// The master sends what it has at least every 2 s.
	var out string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if out = inBackup("-Lnc"); strings.Count(out, want) == 3 {
			break
		}
	}
	if n := strings.Count(out, want); n != 3 {
		t.Errorf("the backup's connection table has %d of the 3 connections to %s:\n%s", n, want, out)
	}
	if err := backup.StopDaemon(ctx(t), DaemonBackup); err != nil {
		t.Fatal(err)
	}
	if ds, err := backup.Daemons(ctx(t)); err != nil || len(ds) != 0 {
		t.Errorf("backup daemons after stop: %+v, %v", ds, err)
	}
}
