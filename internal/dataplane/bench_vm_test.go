//go:build ipvsvm

package dataplane

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// The dataplane benchmark (make bench-dataplane): 10,000 VIPs (one TCP service each) bound and
// filtered from empty, and one VIP added to a node that has 10,000, by the agent's dataplane
// and, side by side in the same VM, by the tools a script would use: `ip -batch` with one
// `route add local` per VIP and one `nft -f` adding the elements (from empty), `ip route add`
// and one `nft` with both `add element` commands (one VIP). Both start from the same namespace
// and empty table (made by the dataplane, not timed), and do the same work: 10,000 local
// routes and 20,000 set elements (vips4 and ports4).

const benchVIPs = 10000

func benchVIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
}

// benchNode makes a namespace with lo up and the agent's empty table.
func benchNode(b *testing.B, name string) (int, func()) {
	b.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v %s", err, out)
	}
	benchRun(b, "ip", "-n", name, "link", "set", "lo", "up")
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		b.Fatal(err)
	}
	d := New(Config{NetNS: int(f.Fd()), Interface: "lo", Filter: true, Masquerade: MasqueradeAll})
	if err := d.Program(b.Context()); err != nil {
		b.Fatal(err)
	}
	d.Close()
	return int(f.Fd()), func() {
		f.Close()
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

func benchRun(b *testing.B, name string, args ...string) {
	b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// scriptFiles writes the ip -batch and nft -f files for VIPs [from, to).
func scriptFiles(b *testing.B, from, to int) (ipFile, nftFile string) {
	b.Helper()
	var ipb, vips, ports strings.Builder
	for i := from; i < to; i++ {
		v := benchVIP(i)
		fmt.Fprintf(&ipb, "route add local %s/32 dev lo table local proto %d\n", v, RouteProtocol)
		if i > from {
			vips.WriteString(", ")
			ports.WriteString(", ")
		}
		fmt.Fprintf(&vips, "%s", v)
		fmt.Fprintf(&ports, "%s . tcp . 80", v)
	}
	dir := b.TempDir()
	ipFile, nftFile = filepath.Join(dir, "ip.batch"), filepath.Join(dir, "elements.nft")
	nft := fmt.Sprintf("add element inet kubelvs vips4 { %s }\nadd element inet kubelvs ports4 { %s }\n", vips.String(), ports.String())
	if err := os.WriteFile(ipFile, []byte(ipb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(nftFile, []byte(nft), 0o600); err != nil {
		b.Fatal(err)
	}
	return ipFile, nftFile
}

func setBench(d *Dataplane, from, to int) {
	for i := from; i < to; i++ {
		d.Set(lvs.ServiceKey{Family: lvs.FamilyOf(benchVIP(i)), Protocol: lvs.TCP, Address: benchVIP(i), Port: 80})
	}
}

func checkBound(b *testing.B, ns string, want int) {
	b.Helper()
	out, err := exec.Command("ip", "-n", ns, "route", "show", "table", "local", "dev", "lo", "proto", fmt.Sprint(RouteProtocol)).Output()
	if err != nil {
		b.Fatal(err)
	}
	if n := strings.Count(string(out), "local "); n != want {
		b.Fatalf("%d VIP routes through lo, want %d", n, want)
	}
}

func BenchmarkDataplane(b *testing.B) {
	b.Run("from-empty-10000/kubelvs", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			fd, done := benchNode(b, "bench")
			d := New(Config{NetNS: fd, Interface: "lo", Filter: true, Masquerade: MasqueradeAll})
			setBench(d, 0, benchVIPs)
			b.StartTimer()
			if err := d.Program(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			checkBound(b, "bench", benchVIPs)
			d.Close()
			done()
		}
	})
	b.Run("from-empty-10000/ip-batch+nft-f", func(b *testing.B) {
		ipFile, nftFile := scriptFiles(b, 0, benchVIPs)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			_, done := benchNode(b, "bench")
			b.StartTimer()
			benchRun(b, "ip", "-n", "bench", "-batch", ipFile)
			benchRun(b, "ip", "netns", "exec", "bench", "nft", "-f", nftFile)
			b.StopTimer()
			checkBound(b, "bench", benchVIPs)
			done()
		}
	})
	b.Run("add-one-to-10000/kubelvs", func(b *testing.B) {
		fd, done := benchNode(b, "bench")
		defer done()
		d := New(Config{NetNS: fd, Interface: "lo", Filter: true, Masquerade: MasqueradeAll})
		defer d.Close()
		setBench(d, 0, benchVIPs)
		if err := d.Program(b.Context()); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			setBench(d, benchVIPs+i, benchVIPs+i+1)
			if err := d.Program(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		checkBound(b, "bench", benchVIPs+b.N)
	})
	b.Run("add-one-to-10000/ip+nft", func(b *testing.B) {
		fd, done := benchNode(b, "bench")
		defer done()
		d := New(Config{NetNS: fd, Interface: "lo", Filter: true, Masquerade: MasqueradeAll})
		setBench(d, 0, benchVIPs)
		if err := d.Program(b.Context()); err != nil {
			b.Fatal(err)
		}
		d.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			v := benchVIP(benchVIPs + i)
			benchRun(b, "ip", "-n", "bench", "route", "add", "local", v.String()+"/32", "dev", "lo", "table", "local", "proto", fmt.Sprint(RouteProtocol))
			benchRun(b, "ip", "netns", "exec", "bench", "nft", fmt.Sprintf(
				"add element inet kubelvs vips4 { %s } ; add element inet kubelvs ports4 { %s . tcp . 80 }", v, v))
		}
		b.StopTimer()
		checkBound(b, "bench", benchVIPs+b.N)
	})
}
