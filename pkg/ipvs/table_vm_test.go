//go:build ipvsvm

package ipvs

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// TestVMTableOfAnotherNamespace reads a non-empty table in another network namespace after the
// caller has closed the namespace descriptor it gave New, and its number has come to name the
// initial namespace: every destination must come from the client's namespace. Table used to
// open its dump socket from Config.NetNS on first use, and so read the initial namespace's
// destinations (none: the service came back empty).
func TestVMTableOfAnotherNamespace(t *testing.T) {
	host := vmClient(t)
	hs := svc(lvs.TCP, "10.81.0.1", 80, "rr")
	if err := host.AddService(ctx(t), &hs); err != nil {
		t.Fatal(err)
	}
	const ns = "kubelvs-table"
	ipNetns := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("/sbin/ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ipNetns("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("/sbin/ip", "netns", "del", ns).Run() })
	ipNetns("-n", ns, "link", "set", "lo", "up") // IPv4 destinations need lo up
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	c, err := New(ctx(t), &Config{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := svc(lvs.TCP, "10.82.0.1", 80, "rr")
	ops := []Op{{Kind: AddService, Service: &s}}
	for _, a := range []string{"10.82.1.1", "10.82.1.2"} {
		d := dst(a, 8080, lvs.Masquerade, 1)
		ops = append(ops, Op{Kind: AddDestination, Service: &s, Destination: &d})
	}
	if _, err := c.Apply(ctx(t), ops); err != nil {
		t.Fatal(err)
	}
	// The caller is done with the descriptor; its number is reused for the initial namespace.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	self, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if int(self.Fd()) != fd { // the lowest free number is usually fd itself already
		if err := unix.Dup3(int(self.Fd()), fd, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
	}

	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != 1 || table[0].Address != s.Address || len(table[0].Destinations) != 2 {
		t.Fatalf("table of namespace %s: %+v, want service %s with its 2 destinations", ns, table, s.Key())
	}
	for _, d := range table[0].Destinations {
		if !strings.HasPrefix(d.Address.String(), "10.82.1.") {
			t.Errorf("destination %s is not one of the namespace's", d.Key())
		}
	}
}
