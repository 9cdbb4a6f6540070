package kubeletcg_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/internal/kubeletcg"
	"github.com/kubelvs/kubelvs/internal/podstats"
)

// A tree made in the host's real cgroup2 filesystem is what pod taskstats' discovery finds on a
// node: the pod's cgroup, its two containers and the process moved into one of them; Close
// removes it all.
func TestTreeIsWhatDiscoveryFinds(t *testing.T) {
	tree, err := kubeletcg.New("kubelvs-kubeletcg-test")
	if err != nil {
		t.Fatalf("New (the test needs a writable cgroup2 filesystem, or to be root to mount one): %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = tree.Close()
		}
	})
	const uid = "0e2b7d6c-4f1a-4b8e-9d3c-2a1b0c9d8e7f"
	app, err := tree.Container(uid, "app")
	if err != nil {
		t.Fatal(err)
	}
	sidecar, err := tree.Container(uid, "sidecar")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := tree.Container(uid, "app"); err != nil || again != app {
		t.Errorf("Container again = %q, %v; want %q (the same cgroup)", again, err, app)
	}
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	if err := kubeletcg.Join(app, sleep.Process.Pid); err != nil {
		t.Fatal(err)
	}

	d := &podstats.Discoverer{CgroupRoot: tree.Root}
	pod, err := d.Discover(uid)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if want := filepath.Join(tree.Root, kubeletcg.PodDir(uid)); pod.Dir != want || filepath.Dir(app) != want || filepath.Dir(sidecar) != want {
		t.Errorf("pod cgroup %s, containers in %s and %s; want all %s", pod.Dir, filepath.Dir(app), filepath.Dir(sidecar), want)
	}
	wantIDs := []string{kubeletcg.ContainerID(uid, "app"), kubeletcg.ContainerID(uid, "sidecar")}
	slices.Sort(wantIDs)
	gotIDs := slices.Sorted(slices.Values(pod.Containers))
	if diff := cmp.Diff(wantIDs, gotIDs); diff != "" {
		t.Errorf("containers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{sleep.Process.Pid}, pod.PIDs); diff != "" {
		t.Errorf("PIDs (-want +got):\n%s", diff)
	}

	_ = sleep.Process.Kill()
	_ = sleep.Wait()
	closed = true
	if err := tree.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(tree.Root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Close: %v, want it gone", tree.Root, err)
	}
}

// A UID that is not one (a path) makes no cgroup.
func TestContainerRejectsPathUID(t *testing.T) {
	tree := &kubeletcg.Tree{Root: t.TempDir()}
	for _, uid := range []string{"", "../x", "a/b"} {
		if dir, err := tree.Container(uid, "c"); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("Container(%q) = %q, %v; want os.ErrInvalid", uid, dir, err)
		}
	}
}
