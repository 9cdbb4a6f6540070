//go:build ipvsvm

package dataplane

import (
	"net/netip"
	"os"
	"os/exec"
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

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The table as the kernel holds it, listed by nft -j, is the committed fixture (which the
// host's unit test checks the library's encoding against); addresses carry the marker.
func TestKernelTableAndAddresses(t *testing.T) {
	fd := netns(t, "dpk")
	d := New(Config{NetNS: fd, Interface: "kubelvs0", Filter: true, Masquerade: MasqueradeRemote})
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
	addrs := run(t, "ip", "-n", "dpk", "addr", "show", "dev", "kubelvs0")
	for _, w := range []string{"192.0.2.10/32", "192.0.2.11/32", "2001:db8::10/128", "metric 1802270323", "noprefixroute", "nodad"} {
		if !strings.Contains(addrs, w) {
			t.Errorf("ip addr show dev kubelvs0 lacks %q:\n%s", w, addrs)
		}
	}
	if !strings.Contains(run(t, "ip", "-n", "dpk", "link", "show", "kubelvs0"), "alias "+LinkAlias) {
		t.Error("kubelvs0 has no alias")
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
	// Someone else's address on kubelvs0 and someone else's table.
	run(t, "ip", "-n", "dpa", "addr", "add", "198.51.100.9/32", "dev", "kubelvs0")
	run(t, "ip", "netns", "exec", "dpa", "nft", "add", "table", "inet", "other")
	run(t, "ip", "netns", "exec", "dpa", "nft", "add", "chain", "inet", "other", "c", "{ type filter hook input priority 10 ; }")
	// The UDP service goes: its VIP goes, from the interface and the set.
	d.Remove(key(netip.MustParseAddr("192.0.2.11"), lvs.UDP, 53))
	if err := d.Program(t.Context()); err != nil {
		t.Fatal(err)
	}
	addrs := run(t, "ip", "-n", "dpa", "addr", "show", "dev", "kubelvs0")
	if strings.Contains(addrs, "192.0.2.11/") || !strings.Contains(addrs, "198.51.100.9/32") {
		t.Errorf("after removing 192.0.2.11:\n%s", addrs)
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
	for _, op := range []string{"address_add", "address_delete", "nftables_transaction"} {
		if n := testutil.ToFloat64(m.Operations.WithLabelValues(op, "success")); n != 0 {
			t.Errorf("adoption did %v %s", n, op)
		}
	}
	if info, _ := d2.Info(); info.BoundVIPs != 2 {
		t.Errorf("adopted %d VIPs, want 2 (the foreign address is not one)", info.BoundVIPs)
	}
	d2.Close()

	removed, err := Uninstall(Config{NetNS: fd, Interface: "kubelvs0"})
	if err != nil || len(removed) != 2 {
		t.Fatalf("Uninstall removed %v: %v", removed, err)
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
	if out := run(t, "ip", "-n", "dpf", "addr", "show", "dev", "kubelvs0"); strings.Contains(out, "192.0.2.10") {
		t.Errorf("a VIP went on someone else's interface:\n%s", out)
	}
	if _, err := Uninstall(Config{NetNS: fd, Interface: "kubelvs0"}); err == nil {
		t.Error("Uninstall did not report that kubelvs0 is not the agent's")
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
