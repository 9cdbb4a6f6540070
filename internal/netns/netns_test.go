package netns

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

// Do enters the namespace (its loopback is its own: a listener there is not the host's) and
// reports a namespace that does not exist.
func TestDo(t *testing.T) {
	name := "kubelvs-netns-test"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add (needs root and iproute2): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	var inside, outside string
	must(t, Do(name, func() error { return readlink(&inside) }))
	must(t, readlink(&outside))
	if inside == outside || inside == "" {
		t.Errorf("network namespace in Do %q, outside %q: want another", inside, outside)
	}
	err := Do("kubelvs-no-such-netns", func() error { t.Error("f ran"); return nil })
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing namespace: %v, want ErrNotExist", err)
	}
}

func readlink(out *string) (err error) {
	*out, err = os.Readlink("/proc/thread-self/ns/net")
	return err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
