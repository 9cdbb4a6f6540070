//go:build ipvsvm

package dataplane

import (
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// netns makes a fresh network namespace and returns its descriptor.
func netns(t *testing.T, name string) int {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// vipRoutes lists the routes of the local tables through dev in namespace ns, IPv4 then IPv6
// ("local VIP proto 107 scope host ..."); nothing where the table or dev does not exist.
func vipRoutes(ns, dev string) string {
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		out, _ := exec.Command("ip", "-n", ns, fam, "route", "show", "table", "local", "dev", dev).Output()
		b.Write(out)
	}
	return b.String()
}

// wantRoutes fails t for each of want not in the routes through dev in namespace ns, and
// returns the routes.
func wantRoutes(t *testing.T, ns, dev string, want ...string) string {
	t.Helper()
	routes := vipRoutes(ns, dev)
	for _, w := range want {
		if !strings.Contains(routes, w) {
			t.Errorf("the routes through %s lack %q:\n%s", dev, w, routes)
		}
	}
	return routes
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The table as the kernel holds it, listed by nft -j, is the committed fixture (which the
// host's unit test checks the library's encoding against); the VIPs are local routes of the
// agent's protocol through kubelvs0, and no address.
func TestKernelTableAndAddresses(t *testing.T) {
	fd := netns(t, "dpk")
	run(t, "ip", "-n", "dpk", "link", "set", "lo", "up") // as on any node
	d := New(Config{NetNS: fd, Interface: "lo", Filter: true, Masquerade: MasqueradeRemote})
	defer d.Close()
	fixtureServices(d)
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := run(t, "ip", "netns", "exec", "dpk", "nft", "-j", "list", "table", "inet", "kubelvs")
	t.Logf("nft -j list table inet kubelvs:\n@@nft-json-begin\n%s\n@@nft-json-end", got)
	want, err := os.ReadFile(fixture)
	if err != nil {
		t.Errorf("%s: %v; nft lists:\n@@nft-json-begin\n%s\n@@nft-json-end", fixture, err, got)
	} else if diff := cmp.Diff(summaryOfJSON(t, want), summaryOfJSON(t, []byte(got))); diff != "" {
		t.Errorf("nft -j list table inet kubelvs differs from %s (-fixture +now):\n%s\nit lists:\n@@nft-json-begin\n%s\n@@nft-json-end", fixture, diff, got)
	}
	wantRoutes(t, "dpk", "lo", "local 192.0.2.10 proto 107 scope host", "local 192.0.2.11 proto 107 scope host", "local 2001:db8::10 proto 107 ")
	for _, vip := range []string{"192.0.2.10", "2001:db8::10"} {
		if got := run(t, "ip", "-n", "dpk", "route", "get", vip); !strings.HasPrefix(got, "local "+vip+" ") {
			t.Errorf("ip route get %s: %s (want a local route: the node accepts its traffic)", vip, got)
		}
	}
	if addrs := run(t, "ip", "-n", "dpk", "addr"); strings.Contains(addrs, "192.0.2.") || strings.Contains(addrs, "2001:db8::") {
		t.Errorf("a VIP is an address:\n%s", addrs)
	}
	if links := run(t, "ip", "-n", "dpk", "link"); strings.Contains(links, "dummy") || strings.Contains(links, LinkAlias) {
		t.Errorf("an interface was made for lo's routes:\n%s", links)
	}
	info, _ := d.Info()
	if info.BoundVIPs != 3 || info.Table != "inet kubelvs" {
		t.Errorf("Info = %+v", info)
	}
}

// Incremental changes, adoption after a restart without a single write, foreign addresses and
// tables left alone, and uninstall removing only the agent's.
func TestKernelAdoptForeignUninstall(t *testing.T) {
	fd := netns(t, "dpa")
	cfg := Config{NetNS: fd, Interface: "kubelvs0", Filter: true, Masquerade: MasqueradeAll}
	d := New(cfg)
	fixtureServices(d)
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Someone else's address and route on kubelvs0, and someone else's table.
	run(t, "ip", "-n", "dpa", "addr", "add", "198.51.100.9/32", "dev", "kubelvs0")
	run(t, "ip", "-n", "dpa", "route", "add", "local", "198.51.100.20", "dev", "kubelvs0", "table", "local")
	run(t, "ip", "netns", "exec", "dpa", "nft", "add", "table", "inet", "other")
	run(t, "ip", "netns", "exec", "dpa", "nft", "add", "chain", "inet", "other", "c", "{ type filter hook input priority 10 ; }")
	// The UDP service goes: its VIP goes, from the interface and the set.
	d.Remove(key(netip.MustParseAddr("192.0.2.11"), lvs.UDP, 53))
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	routes := vipRoutes("dpa", "kubelvs0")
	if strings.Contains(routes, "local 192.0.2.11 ") || !strings.Contains(routes, "local 192.0.2.10 proto 107") ||
		!strings.Contains(routes, "local 198.51.100.9 proto kernel") || !strings.Contains(routes, "local 198.51.100.20 scope host") {
		t.Errorf("after removing 192.0.2.11, the routes through kubelvs0:\n%s", routes)
	}
	if el := run(t, "ip", "netns", "exec", "dpa", "nft", "list", "set", "inet", "kubelvs", "vips4"); strings.Contains(el, "192.0.2.11") {
		t.Errorf("vips4 still has 192.0.2.11:\n%s", el)
	}
	d.Close()

	// A new agent with the same services adopts: no address, link or element written.
	m := NewMetrics()
	cfg.Metrics = m
	d2 := New(cfg)
	fixtureServices(d2)
	d2.Remove(key(netip.MustParseAddr("192.0.2.11"), lvs.UDP, 53))
	if err := d2.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"route_add", "route_delete", "nftables_transaction"} {
		if n := testutil.ToFloat64(m.Operations.WithLabelValues(op, "success")); n != 0 {
			t.Errorf("adoption did %v %s", n, op)
		}
	}
	if info, _ := d2.Info(); info.BoundVIPs != 2 {
		t.Errorf("adopted %d VIPs, want 2 (the foreign address and route are not)", info.BoundVIPs)
	}
	d2.Close()

	removed, err := Uninstall(Config{NetNS: fd, Interface: "kubelvs0"})
	if diff := cmp.Diff([]string{"nftables table inet kubelvs", "2 VIP routes", "interface kubelvs0"}, removed); err != nil || diff != "" {
		t.Fatalf("Uninstall: %v; removed (-want +got):\n%s", err, diff)
	}
	if routes := vipRoutes("dpa", "kubelvs0") + vipRoutes("dpa", "lo"); strings.Contains(routes, "proto 107") {
		t.Errorf("VIP routes left after uninstall:\n%s", routes)
	}
	if out := run(t, "ip", "netns", "exec", "dpa", "nft", "list", "tables"); strings.Contains(out, "kubelvs") || !strings.Contains(out, "table inet other") {
		t.Errorf("tables after uninstall:\n%s", out)
	}
	if out, err := exec.Command("ip", "-n", "dpa", "link", "show", "kubelvs0").CombinedOutput(); err == nil {
		t.Errorf("kubelvs0 still there:\n%s", out)
	}
}

// An interface of the name that is not the agent's is left alone and reported.
func TestKernelForeignInterface(t *testing.T) {
	fd := netns(t, "dpf")
	run(t, "ip", "-n", "dpf", "link", "add", "kubelvs0", "type", "dummy")
	d := New(Config{NetNS: fd, Interface: "kubelvs0", Filter: true})
	defer d.Close()
	fixtureServices(d)
	if err := d.Program(t.Context()); err == nil || !strings.Contains(err.Error(), "not the agent's") {
		t.Fatalf("Program on someone else's kubelvs0: %v", err)
	}
	if out := vipRoutes("dpf", "kubelvs0"); strings.Contains(out, "192.0.2.10") {
		t.Errorf("a VIP was routed through someone else's interface:\n%s", out)
	}
	// Uninstall removes only dummies with the agent's alias: this one stays.
	if removed, err := Uninstall(Config{NetNS: fd}); err != nil || slices.Contains(removed, "interface kubelvs0") {
		t.Errorf("Uninstall on a node with someone else's kubelvs0 removed %v: %v", removed, err)
	}
	run(t, "ip", "-n", "dpf", "link", "show", "kubelvs0")
}

// An audit reads the table back only when some commit since the agent's last transaction
// changed the ruleset's generation, and then repairs what was changed.
func TestKernelAuditReadsTableAfterACommit(t *testing.T) {
	fd := netns(t, "dpg")
	m := NewMetrics()
	d := New(Config{NetNS: fd, Filter: true, Masquerade: MasqueradeRemote, Metrics: m})
	defer d.Close()
	fixtureServices(d)
	ops := func(op string) float64 { return testutil.ToFloat64(m.Operations.WithLabelValues(op, "success")) }
	audit := func(step string, reads, transactions float64) {
		t.Helper()
		r0, t0 := ops("nftables_read"), ops("nftables_transaction")
		d.Audit()
		if err := d.Program(t.Context()); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if r, tr := ops("nftables_read")-r0, ops("nftables_transaction")-t0; r != reads || tr != transactions {
			t.Errorf("%s: the audit read the table %v times and made %v transactions, want %v and %v", step, r, tr, reads, transactions)
		}
	}
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := ops("nftables_read"); n != 1 {
		t.Fatalf("the first program read the table %v times, want 1", n)
	}
	audit("no commit since the agent's", 0, 0)
	audit("still none", 0, 0)
	// Another program's table: the generation moves, the agent's table is read and is right.
	run(t, "ip", "netns", "exec", "dpg", "nft", "add", "table", "inet", "other")
	audit("after another table was added", 1, 0)
	audit("after the read", 0, 0)
	// One of the agent's elements deleted by hand: read and repaired.
	run(t, "ip", "netns", "exec", "dpg", "nft", "delete", "element", "inet", "kubelvs", "vips4", "{ 192.0.2.11 }")
	audit("after an element was deleted", 1, 1)
	if el := run(t, "ip", "netns", "exec", "dpg", "nft", "list", "set", "inet", "kubelvs", "vips4"); !strings.Contains(el, "192.0.2.11") {
		t.Errorf("vips4 not repaired:\n%s", el)
	}
	audit("after the repair", 0, 0)
	// An incremental change keeps the generation known.
	d.Remove(key(netip.MustParseAddr("192.0.2.11"), lvs.UDP, 53))
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	audit("after a change of the agent's", 0, 0)
}

// A VIP that is already local (someone else's address) is not routed and not counted, and
// stays when its service goes; VIP addresses of an agent from before VIPs were routes become
// routes through lo, and the addresses and their interface go.
func TestKernelLocalAlreadyAndLegacyAddresses(t *testing.T) {
	fd := netns(t, "dpl")
	run(t, "ip", "-n", "dpl", "link", "set", "lo", "up")
	run(t, "ip", "-n", "dpl", "addr", "add", "192.0.2.11/32", "dev", "lo")
	// What the earlier agent left: its interface with two marked VIP addresses, one of a
	// service still there (192.0.2.10) and one of a service gone (192.0.2.99).
	run(t, "ip", "-n", "dpl", "link", "add", "kubelvs0", "type", "dummy")
	run(t, "ip", "-n", "dpl", "link", "set", "kubelvs0", "alias", LinkAlias, "up")
	for _, a := range []string{"192.0.2.10/32", "192.0.2.99/32", "2001:db8::10/128"} {
		run(t, "ip", "-n", "dpl", "addr", "add", a, "dev", "kubelvs0", "metric", "1802270323", "noprefixroute", "nodad")
	}
	m := NewMetrics()
	d := New(Config{NetNS: fd, Interface: "lo", Metrics: m})
	defer d.Close()
	fixtureServices(d)
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "-n", "dpl", "link", "show", "kubelvs0").CombinedOutput(); err == nil {
		t.Errorf("the earlier agent's interface is still there:\n%s", out)
	}
	routes := wantRoutes(t, "dpl", "lo", "local 192.0.2.10 proto 107", "local 2001:db8::10 proto 107")
	if strings.Contains(routes, "192.0.2.99") || strings.Contains(routes, "192.0.2.11 proto 107") {
		t.Errorf("the routes through lo have a VIP no service wants or one already local:\n%s", routes)
	}
	if info, _ := d.Info(); info.BoundVIPs != 2 {
		t.Errorf("bound %d VIPs, want 2 (192.0.2.11 is lo's)", info.BoundVIPs)
	}
	if n := testutil.ToFloat64(m.Operations.WithLabelValues("route_add", "success")); n != 2 {
		t.Errorf("%v routes added, want 2", n)
	}
	d.Remove(key(netip.MustParseAddr("192.0.2.11"), lvs.UDP, 53))
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(run(t, "ip", "-n", "dpl", "addr", "show", "dev", "lo"), "192.0.2.11/32") {
		t.Error("lo's address went with the service on it")
	}
}

// An agent started with another --vip-interface moves the VIP routes: the old ones through
// kubelvs0 go, the same VIPs are routed through lo and counted.
func TestKernelInterfaceChange(t *testing.T) {
	fd := netns(t, "dpc")
	run(t, "ip", "-n", "dpc", "link", "set", "lo", "up")
	d := New(Config{NetNS: fd, Interface: "kubelvs0"})
	fixtureServices(d)
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.Close()
	m := NewMetrics()
	d2 := New(Config{NetNS: fd, Interface: "lo", Metrics: m})
	defer d2.Close()
	fixtureServices(d2)
	if err := d2.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	if routes := vipRoutes("dpc", "kubelvs0"); strings.Contains(routes, "proto 107") {
		t.Errorf("VIP routes left through kubelvs0:\n%s", routes)
	}
	wantRoutes(t, "dpc", "lo", "local 192.0.2.10 proto 107", "local 192.0.2.11 proto 107", "local 2001:db8::10 proto 107")
	if info, _ := d2.Info(); info.BoundVIPs != 3 {
		t.Errorf("bound %d VIPs, want 3", info.BoundVIPs)
	}
	for op, want := range map[string]float64{"route_delete": 3, "route_add": 3} {
		if n := testutil.ToFloat64(m.Operations.WithLabelValues(op, "success")); n != want {
			t.Errorf("%v %s, want %v", n, op, want)
		}
	}
}

// An earlier agent's VIP addresses on the very dummy the agent now routes through: deleting
// the last IPv4 one makes the kernel drop every route through the link, so the agent routes
// again, and every VIP ends up routed.
func TestKernelLegacyAddressesOnTheRoutedDummy(t *testing.T) {
	fd := netns(t, "dpd")
	run(t, "ip", "-n", "dpd", "link", "add", "kubelvs0", "type", "dummy")
	run(t, "ip", "-n", "dpd", "link", "set", "kubelvs0", "alias", LinkAlias, "up")
	for _, a := range []string{"192.0.2.10/32", "192.0.2.11/32"} {
		run(t, "ip", "-n", "dpd", "addr", "add", a, "dev", "kubelvs0", "metric", "1802270323", "noprefixroute")
	}
	d := New(Config{NetNS: fd, Interface: "kubelvs0"})
	defer d.Close()
	fixtureServices(d)
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	if addrs := run(t, "ip", "-n", "dpd", "addr", "show", "dev", "kubelvs0"); strings.Contains(addrs, "192.0.2.") {
		t.Errorf("the legacy VIP addresses are still on kubelvs0:\n%s", addrs)
	}
	wantRoutes(t, "dpd", "kubelvs0", "local 192.0.2.10 proto 107", "local 192.0.2.11 proto 107", "local 2001:db8::10 proto 107")
	if info, _ := d.Info(); info.BoundVIPs != 3 {
		t.Errorf("bound %d VIPs, want 3", info.BoundVIPs)
	}
}

// The ranges not masqueraded follow the node's prefixes and the mode, each change one
// transaction the kernel accepts (ends moved, ranges added and removed), nft lists them as
// prefixes, and a restarted agent reads them back equal (no transaction); a table of an agent
// from before the ranges (a set of masqueraded backends) is replaced.
func TestKernelNoMasqRanges(t *testing.T) {
	fd := netns(t, "dpm")
	old := "table inet kubelvs {\n set masq4 { type ipv4_addr; elements = { 10.244.2.7 } }\n}\n"
	cmd := exec.Command("ip", "netns", "exec", "dpm", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(old)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("an earlier agent's table: %v\n%s", err, out)
	}
	m := NewMetrics()
	transactions := func() float64 {
		return testutil.ToFloat64(m.Operations.WithLabelValues("nftables_transaction", "success"))
	}
	list := func(set string) string {
		t.Helper()
		out := run(t, "ip", "netns", "exec", "dpm", "nft", "list", "set", "inet", "kubelvs", set)
		_, rest, ok := strings.Cut(out, "elements = { ")
		elems, _, _ := strings.Cut(rest, " }")
		if !ok {
			return ""
		}
		return elems
	}
	d := New(Config{NetNS: fd, Filter: true, Masquerade: MasqueradeRemote, Metrics: m})
	defer d.Close()
	d.Set(key(netip.MustParseAddr("192.0.2.30"), lvs.TCP, 80))
	for _, step := range []struct {
		name       string
		prefixes   []netip.Prefix
		want4      string
		want6      string
		wantCommit float64
	}{
		{"the pod CIDR, over the earlier agent's table", pfx("10.244.1.0/24"), "10.244.1.0/24", "", 1},
		{"the same: nothing sent", pfx("10.244.1.0/24"), "10.244.1.0/24", "", 0},
		{"wider: the end moves", pfx("10.244.0.0/16"), "10.244.0.0/16", "", 1},
		{"three ranges, two families", pfx("10.250.0.0/16", "10.244.1.0/24", "fd00:10:244:1::/64"), "10.244.1.0/24, 10.250.0.0/16", "fd00:10:244:1::/64", 1},
		{"adjacent ones merged", pfx("10.244.0.0/24", "10.244.1.0/24"), "10.244.0.0/23", "", 1},
		{"none", nil, "", "", 1},
	} {
		before := transactions()
		d.SetLocalPrefixes(step.prefixes)
		if err := d.Program(t.Context()); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := transactions() - before; got != step.wantCommit {
			t.Errorf("%s: %v transactions, want %v", step.name, got, step.wantCommit)
		}
		if got4, got6 := list("nomasq4"), list("nomasq6"); got4 != step.want4 || got6 != step.want6 {
			t.Errorf("%s: nomasq4 { %s }, nomasq6 { %s }; want { %s } and { %s }", step.name, got4, got6, step.want4, step.want6)
		}
	}
	if tbl := run(t, "ip", "netns", "exec", "dpm", "nft", "list", "table", "inet", "kubelvs"); strings.Contains(tbl, "set masq4 ") || strings.Contains(tbl, "10.244.2.7") {
		t.Errorf("the earlier agent's set is still there:\n%s", tbl)
	}
	d.SetLocalPrefixes(pfx("10.244.1.0/24", "fd00:10:244:1::/64"))
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A restarted agent reads the ranges back as it wrote them, the ends' flags included.
	m2 := NewMetrics()
	d2 := New(Config{NetNS: fd, Filter: true, Masquerade: MasqueradeRemote, Metrics: m2})
	defer d2.Close()
	d2.Set(key(netip.MustParseAddr("192.0.2.30"), lvs.TCP, 80))
	d2.SetLocalPrefixes(pfx("fd00:10:244:1::/64", "10.244.1.0/24"))
	if err := d2.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(m2.Operations.WithLabelValues("nftables_transaction", "success")); n != 0 {
		t.Errorf("the restarted agent made %v transactions, want 0 (its reading of the ranges differs from what it wrote)", n)
	}
	// --masquerade=none: every address of both families.
	d3 := New(Config{NetNS: fd, Filter: true, Masquerade: MasqueradeNone, Metrics: NewMetrics()})
	defer d3.Close()
	d3.Set(key(netip.MustParseAddr("192.0.2.30"), lvs.TCP, 80))
	if err := d3.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got4, got6 := list("nomasq4"), list("nomasq6"); got4 != "0.0.0.0/0" || got6 != "::/0" {
		t.Errorf("none: nomasq4 { %s }, nomasq6 { %s }; want 0.0.0.0/0 and ::/0", got4, got6)
	}
}
