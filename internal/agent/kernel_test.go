package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
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
