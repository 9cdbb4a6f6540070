//go:build ipvsvm

package smoketest

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNewNetns runs a command in a fresh network namespace, the way hack/bench isolates contenders.
func inNewNetns(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in new netns: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sortedLines returns the non-empty lines of s, sorted (the kernel lists dests newest first).
func sortedLines(s string) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

func loadedModules(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	mods := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			mods[f[0]] = true
		}
	}
	return mods
}

func TestInsideVM(t *testing.T) {
	if got := os.Getenv("KUBELVS_VM"); got != "1" {
		t.Fatalf("KUBELVS_VM=%q: ipvsvm tests must run inside hack/vm (make test-vm)", got)
	}
	if os.Getuid() != 0 {
		t.Fatalf("uid %d: the guest runs tests as root", os.Getuid())
	}
}

func TestProcNetIPVS(t *testing.T) {
	b, err := os.ReadFile("/proc/net/ip_vs")
	if err != nil {
		t.Fatalf("the guest kernel has no IPVS: %v", err)
	}
	if !bytes.Contains(b, []byte("IP Virtual Server version")) {
		t.Fatalf("/proc/net/ip_vs has no version header:\n%s", b)
	}
}

func TestIpvsadmRoundTrip(t *testing.T) {
	// Runs in its own netns so other tests' services do not show up in -Sn.
	// A fresh netns has lo down, and the kernel then refuses IPv4 destinations ("address not unicast").
	script := `set -e
ip link set lo up
ipvsadm -A -t 10.10.0.1:80 -s wrr
ipvsadm -a -t 10.10.0.1:80 -r 10.10.1.1:8080 -m -w 3
ipvsadm -a -t 10.10.0.1:80 -r 10.10.1.2:80 -i -w 1
ipvsadm -A -u [2001:db8::1]:53 -s sh -b sh-port -p 60
ipvsadm -a -u [2001:db8::1]:53 -r [2001:db8::2]:53 -m -w 2
ipvsadm -A -f 7 -s lc
ipvsadm -a -f 7 -r 10.10.2.1:0 -g
ipvsadm -Sn`
	got := sortedLines(inNewNetns(t, "sh", "-c", script))
	want := sortedLines(`
-A -t 10.10.0.1:80 -s wrr
-a -t 10.10.0.1:80 -r 10.10.1.1:8080 -m -w 3
-a -t 10.10.0.1:80 -r 10.10.1.2:80 -i -w 1 --tun-type ipip
-A -u [2001:db8::1]:53 -s sh -p 60 -b sh-port
-a -u [2001:db8::1]:53 -r [2001:db8::2]:53 -m -w 2
-A -f 7 -s lc
-a -f 7 -r 10.10.2.1:0 -g -w 1
`)
	if !slices.Equal(want, got) {
		t.Errorf("ipvsadm -Sn after -A/-a:\n got: %q\nwant: %q", got, want)
	}
}

func TestSchedulerAutoload(t *testing.T) {
	// ip_vs_mh is used by no other test in this package; init loads only ip_vs and its dependencies.
	if loadedModules(t)["ip_vs_mh"] {
		t.Fatal("ip_vs_mh is loaded before first use: the test would prove nothing")
	}
	run(t, "ipvsadm", "-A", "-t", "10.20.0.1:80", "-s", "mh")
	defer run(t, "ipvsadm", "-D", "-t", "10.20.0.1:80")
	if !loadedModules(t)["ip_vs_mh"] {
		t.Fatal("ip_vs_mh was not autoloaded through /sbin/modprobe")
	}
	if out := run(t, "ipvsadm", "-Ln", "-t", "10.20.0.1:80"); !strings.Contains(out, " mh") {
		t.Fatalf("service does not use mh:\n%s", out)
	}
	out, err := exec.Command("ipvsadm", "-A", "-t", "10.20.0.2:80", "-s", "nosuchsched").CombinedOutput()
	if err == nil {
		t.Fatalf("unknown scheduler accepted:\n%s", out)
	}
}

func TestNetnsIsolation(t *testing.T) {
	run(t, "ipvsadm", "-A", "-t", "10.30.0.1:80", "-s", "rr")
	defer run(t, "ipvsadm", "-D", "-t", "10.30.0.1:80")
	if out := inNewNetns(t, "ipvsadm", "-Sn"); strings.TrimSpace(out) != "" {
		t.Fatalf("a fresh network namespace sees IPVS services:\n%s", out)
	}
	if out := run(t, "ipvsadm", "-Ln", "-t", "10.30.0.1:80"); !strings.Contains(out, "10.30.0.1:80") {
		t.Fatalf("service missing in the initial namespace:\n%s", out)
	}
}

func TestVirtualInterfaces(t *testing.T) {
	// Both need modules (dummy, veth) that the kernel requests by alias through /sbin/modprobe.
	run(t, "ip", "link", "add", "smoke0", "type", "dummy")
	defer run(t, "ip", "link", "del", "smoke0")
	run(t, "ip", "link", "add", "smokea", "type", "veth", "peer", "name", "smokeb")
	defer run(t, "ip", "link", "del", "smokea")
	run(t, "ip", "addr", "add", "10.40.0.1/24", "dev", "smoke0")
	run(t, "ip", "link", "set", "smoke0", "up")
	if out := run(t, "ip", "addr", "show", "dev", "smoke0"); !strings.Contains(out, "10.40.0.1/24") {
		t.Fatalf("address not set:\n%s", out)
	}
}
