package podstats

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The files discovery reads are the kernel's, but a container can make its cgroup tree hold
// anything the kernel lets it; the decoders must never panic and must keep their invariants.
func FuzzParseProcs(f *testing.F) {
	for _, s := range []string{"1\n2\n", "", "\n\n", "12 \n", "-1\n", "x\n", "99999999999999999999\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pids, err := parseProcs(nil, b)
		if err != nil {
			return
		}
		for _, p := range pids {
			if p <= 0 {
				t.Fatalf("PID %d accepted from %q", p, b)
			}
		}
	})
}

func FuzzCgroupElements(f *testing.F) {
	for _, s := range []string{"0::/kubepods.slice/kubepods-podx.slice/cri-containerd-y.scope\n", "5:pids:/a/b\n1:name=systemd:/\n", "garbage", "::", "0::/../../x\n"} {
		f.Add([]byte(s), "kubepods-podx.slice")
	}
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		found := cgroupElements(b, func(el string) bool {
			if el == "" || strings.Contains(el, "/") {
				t.Fatalf("element %q from %q", el, b)
			}
			return el == name
		})
		if found && (name == "" || !strings.Contains(string(b), name)) {
			t.Fatalf("%q found in %q", name, b)
		}
	})
}

// The condition's message comes from the API server, where anyone with pods/status access can
// put anything: LevelOf and writtenOf must stay in bounds.
func FuzzLevelOf(f *testing.F) {
	for _, s := range []string{"cpu=3.0% io=0.0% mem=0.0% procs=1 window=30s weight=70%", "weight=", "cpu=%% weight=10%", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		p := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: ConditionType, Message: msg}}}}
		if l := LevelOf(p); l < 0 || l > 9 {
			t.Fatalf("level %d from %q", l, msg)
		}
		_ = writtenOf(p)
	})
}
