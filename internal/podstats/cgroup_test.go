package podstats

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fixture is a testdata/cgroups/*.txtar file: a header of "key: value" lines after a free-text
// description, then "-- path --" sections, each a file of a cgroup (cgroup/…) or proc (proc/…)
// tree.
type fixture struct {
	header map[string]string
	files  map[string]string
}

func readFixture(t *testing.T, path string) fixture {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fx := fixture{header: map[string]string{}, files: map[string]string{}}
	var cur string
	for line := range strings.Lines(string(b)) {
		if name, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "-- "); ok && strings.HasSuffix(name, " --") {
			cur = strings.TrimSuffix(name, " --")
			fx.files[cur] = ""
			continue
		}
		if cur != "" {
			fx.files[cur] += line
		} else if k, v, ok := strings.Cut(strings.TrimSpace(line), ": "); ok {
			fx.header[k] = v
		}
	}
	return fx
}

func (fx fixture) materialize(t *testing.T) (cgroupRoot, procRoot string) {
	t.Helper()
	root := t.TempDir()
	for name, content := range fx.files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "cgroup"), filepath.Join(root, "proc")
}

func ints(t *testing.T, s string) []int {
	var out []int
	for f := range strings.FieldsSeq(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func TestDiscoverLayouts(t *testing.T) {
	files, err := filepath.Glob("testdata/cgroups/*.txtar")
	if err != nil || len(files) < 7 {
		t.Fatalf("fixtures: %v %v", files, err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			fx := readFixture(t, file)
			cg, proc := fx.materialize(t)
			d := &Discoverer{CgroupRoot: cg, ProcRoot: proc}
			p, err := d.Discover(fx.header["uid"])
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(cg, fx.header["dir"]); p.Dir != want {
				t.Errorf("dir %s, want %s", p.Dir, want)
			}
			slices.Sort(p.Containers)
			if d := cmp.Diff(strings.Fields(fx.header["containers"]), p.Containers); d != "" {
				t.Errorf("containers -want +got:\n%s", d)
			}
			if d := cmp.Diff(ints(t, fx.header["listed"]), p.PIDs); d != "" {
				t.Errorf("listed PIDs -want +got:\n%s", d)
			}
			var in []int
			for _, pid := range p.PIDs {
				if d.InPod(pid, p.Name) {
					in = append(in, pid)
				}
			}
			if d := cmp.Diff(ints(t, fx.header["inpod"]), in); d != "" {
				t.Errorf("PIDs re-checked in the pod -want +got:\n%s", d)
			}
		})
	}
}

func TestDiscoverErrors(t *testing.T) {
	fx := readFixture(t, "testdata/cgroups/v2-systemd-containerd.txtar")
	cg, proc := fx.materialize(t)
	d := &Discoverer{CgroupRoot: cg, ProcRoot: proc}
	if _, err := d.Discover("99999999-0000-0000-0000-000000000000"); !errors.Is(err, ErrPodCgroupNotFound) {
		t.Errorf("unknown pod: %v", err)
	}
	if _, err := d.Discover("../etc"); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("bad UID: %v", err)
	}
	// The found directory is cached; once the pod's cgroup is gone it is looked for again.
	uid := fx.header["uid"]
	if _, err := d.Discover(uid); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(cg, "kubepods.slice")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Discover(uid); !errors.Is(err, ErrPodCgroupNotFound) {
		t.Errorf("removed pod: %v", err)
	}
}

func TestInPodPIDReuse(t *testing.T) {
	proc := t.TempDir()
	write := func(pid int, content string) {
		if err := os.MkdirAll(filepath.Join(proc, strconv.Itoa(pid)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, strconv.Itoa(pid), "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := &Discoverer{ProcRoot: proc}
	pod := "kubepods-besteffort-podabc.slice"
	write(5, "0::/kubepods.slice/kubepods-besteffort.slice/"+pod+"/cri-containerd-x.scope\n")
	if !d.InPod(5, pod) {
		t.Fatal("PID 5 is in the pod")
	}
	// The pod's process exited and its PID went to a process of another pod, whose name has
	// this one's as a prefix: not a match.
	write(5, "0::/kubepods.slice/kubepods-besteffort.slice/"+strings.TrimSuffix(pod, ".slice")+"0.slice/x\n")
	if d.InPod(5, pod) {
		t.Error("reused PID 5 counted in the pod")
	}
	if d.InPod(6, pod) {
		t.Error("a PID that is gone counted in the pod")
	}
	write(7, "garbage\n1:name=systemd\n")
	if d.InPod(7, pod) {
		t.Error("malformed /proc/7/cgroup matched")
	}
}
