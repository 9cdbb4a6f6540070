//go:build ipvsvm

package ipvs

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// A long-lived client survives ip_vs being unloaded and loaded again: the IPVS family comes back
// under a new generic netlink id, the client's cached id draws ENOENT, and gnl looks the family
// up again and resends the request. (The agent keeps its client for its whole life.) It uses
// only New, Config, Info and Close of this package, and ipvsadm and modprobe for the rest.
func TestVMFamilyReload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := New(ctx, &Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info before the reload: %v", err)
	}
	oldID := ipvsFamilyID(ctx, t)

	// A service loads its scheduler's module (the kernel runs modprobe), so that there is a
	// scheduler to remove first; scheduler modules stay in use while services refer to them, so
	// the table is emptied before the removal.
	if out, err := exec.CommandContext(ctx, "ipvsadm", "-A", "-t", "10.99.0.1:8080", "-s", "wlc").CombinedOutput(); err != nil {
		t.Fatalf("ipvsadm -A: %v\n%s", err, out)
	}
	flushAllNamespaces(ctx, t)
	// The ip_vs_* modules (schedulers, ftp, sip) depend on ip_vs: remove them first.
	mods := ipvsModules(t)
	slices.SortFunc(mods, func(a, b string) int {
		return boolInt(a == "ip_vs") - boolInt(b == "ip_vs")
	})
	for _, m := range mods {
		removeModule(ctx, t, m)
	}
	if left := ipvsModules(t); len(left) != 0 {
		t.Fatalf("ip_vs modules still loaded after modprobe -r: %v", left)
	}
	if out, err := exec.CommandContext(ctx, "modprobe", "ip_vs").CombinedOutput(); err != nil {
		t.Fatalf("modprobe ip_vs: %v\n%s", err, out)
	}
	newID := ipvsFamilyID(ctx, t)
	t.Logf("removed %v; the IPVS family id went from %d to %d", mods, oldID, newID)
	if newID == oldID {
		t.Fatalf("the IPVS family kept id %d across the reload: the test cannot see a stale id", oldID)
	}

	after, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info on the same client after the reload: %v", err)
	}
	if after != before {
		t.Errorf("Info after the reload %+v, before %+v", after, before)
	}
}

// flushAllNamespaces empties the IPVS table of the initial network namespace and of every named
// one that earlier tests may have left: their services keep scheduler modules in use.
func flushAllNamespaces(ctx context.Context, t *testing.T) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, "ipvsadm", "-C").CombinedOutput(); err != nil {
		t.Fatalf("ipvsadm -C: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return // no named namespaces
	}
	for line := range strings.Lines(string(out)) {
		if ns, _, _ := strings.Cut(strings.TrimSpace(line), " "); ns != "" {
			_ = exec.CommandContext(ctx, "ip", "netns", "exec", ns, "ipvsadm", "-C").Run()
		}
	}
}

// removeModule unloads a module, retrying for a while: references to a scheduler go away only
// once namespaces that earlier tests deleted are cleaned up and RCU callbacks have run. Busybox's
// modprobe -r also tries to remove the module's dependencies and fails when ip_vs is still in use
// by the other schedulers: what counts is that the module itself is gone.
func removeModule(ctx context.Context, t *testing.T, m string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, "modprobe", "-r", m).CombinedOutput()
		if err == nil || !slices.Contains(ipvsModules(t), m) {
			return
		}
		if time.Now().After(deadline) {
			mods, _ := os.ReadFile("/proc/modules")
			var lines []string
			for line := range strings.Lines(string(mods)) {
				if strings.HasPrefix(line, "ip_vs") {
					lines = append(lines, line)
				}
			}
			t.Fatalf("modprobe -r %s: %v\n%s\nip_vs modules:\n%s", m, err, out, strings.Join(lines, ""))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ipvsFamilyID asks nlctrl, on a connection of its own, which id the IPVS family has now.
func ipvsFamilyID(ctx context.Context, t *testing.T) uint16 {
	t.Helper()
	conn, err := gnl.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fi, err := conn.Family(ctx, "IPVS")
	if err != nil {
		t.Fatal(err)
	}
	return fi.ID
}

// ipvsModules lists the loaded modules named ip_vs or ip_vs_*, from /proc/modules.
func ipvsModules(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	for line := range strings.Lines(string(b)) {
		name, _, _ := strings.Cut(line, " ")
		if name == "ip_vs" || strings.HasPrefix(name, "ip_vs_") {
			mods = append(mods, name)
		}
	}
	return mods
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
