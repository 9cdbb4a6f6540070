package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

func TestSysctl(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "net", "ipv4", "vs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "expire_nodest_conn"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Sysctl(root, "", "net/ipv4/vs/expire_nodest_conn", "1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v1alpha1.Sysctl{Name: "net.ipv4.vs.expire_nodest_conn", Value: "1"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A sysctl the kernel lacks (no IPVS, or a read-only /proc/sys): reported, with the reason.
	got, err = Sysctl(root, "", "net/ipv4/vs/conntrack", "1")
	if err == nil || !strings.HasPrefix(got.Value, "unset: agent: sysctl "+root) {
		t.Errorf("got %+v, %v; want the failure in the value", got, err)
	}
}

// The IPVS client opens on first use, again after each failed open, and only once after it
// succeeded; while it cannot open, every operation fails with the reason.
func TestIPVSKernelOpensLazily(t *testing.T) {
	fail := errors.New("no IPVS family")
	opens, opened := 0, 0
	k := &IPVSKernel{
		Open: func(context.Context) (*ipvs.Client, error) {
			opens++
			if opens < 3 {
				return nil, fail
			}
			conn := (&gnltest.Kernel{}).Dial(&gnl.Config{})
			t.Cleanup(func() { _ = conn.Close() })
			return ipvs.NewWithConn(conn, nil), nil
		},
		Opened: func(context.Context, *ipvs.Client) { opened++ },
	}
	svc := &lvs.Service{ServiceKey: key(lvs.TCP, "192.0.2.1", 80)}
	res, err := k.Apply(t.Context(), []ipvs.Op{{Kind: ipvs.AddService, Service: svc}, {Kind: ipvs.DeleteService, Service: svc}})
	if !errors.Is(err, fail) || len(res) != 2 || !errors.Is(res[0], fail) || !errors.Is(res[1], fail) {
		t.Fatalf("Apply while IPVS cannot open: %v %v", res, err)
	}
	if _, err := k.Table(t.Context()); !errors.Is(err, fail) {
		t.Fatalf("Table: %v", err)
	}
	// The third open succeeds (the fake has no IPVS family: the read itself then fails).
	_, _ = k.Table(t.Context())
	_, _ = k.Destinations(t.Context(), svc)
	if opens != 3 || opened != 1 {
		t.Errorf("%d opens and %d Opened calls, want 3 and 1", opens, opened)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
}
