package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeQEMU writes a qemu stand-in that records each call in calls and, under -accel kvm, either
// prints a kernel banner (a KVM that runs guests) or prints nothing and hangs (one that opens but
// never runs a guest, as on our CI machines).
func fakeQEMU(t *testing.T, dir string, kvmRuns bool) (bin, calls string) {
	t.Helper()
	bin, calls = filepath.Join(dir, "qemu"), filepath.Join(dir, "calls")
	body := "echo \"$*\" >>" + calls + "\n"
	if kvmRuns {
		body += "echo 'Linux version 6.1.0-99-amd64 (fake)'\n"
	} else {
		body += "exec sleep 60\n"
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, calls
}

// chooseAccel runs accel.sh as run.sh does and returns its choice, its stderr and whether it failed.
func chooseAccel(t *testing.T, env ...string) (choice, stderr string, err error) {
	t.Helper()
	cmd := exec.Command("bash", "accel.sh", "/nonexistent/vmlinuz")
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return strings.TrimSpace(out.String()), errb.String(), err
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func TestChooseAccel(t *testing.T) {
	tests := []struct {
		name       string
		dev        string // VM_KVM_DEV: /dev/null is a character device that opens
		kvmRuns    bool
		force      string
		want       string
		wantProbes int // qemu probe boots on the first call; the second call never probes
		wantErr    bool
	}{
		{name: "no device", dev: "/nonexistent/kvm", want: "tcg"},
		{name: "not a character device", dev: "/etc/hostname", want: "tcg"},
		{name: "opens and runs guests", dev: "/dev/null", kvmRuns: true, want: "kvm", wantProbes: 1},
		{name: "opens but does not run", dev: "/dev/null", kvmRuns: false, want: "tcg", wantProbes: 1},
		{name: "forced tcg", dev: "/dev/null", kvmRuns: true, force: "tcg", want: "tcg"},
		{name: "forced kvm", dev: "/nonexistent/kvm", force: "kvm", want: "kvm"},
		{name: "bad force", dev: "/dev/null", force: "hvf", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bin, calls := fakeQEMU(t, dir, tt.kvmRuns)
			env := []string{"VM_KVM_DEV=" + tt.dev, "VM_QEMU=" + bin, "VM_CACHE=" + dir,
				"VM_KVM_PROBE_SECONDS=2", "VM_ACCEL=" + tt.force}
			for round := 1; round <= 2; round++ {
				got, stderr, err := chooseAccel(t, env...)
				if tt.wantErr {
					if err == nil || !strings.Contains(stderr, "VM_ACCEL must be kvm or tcg") {
						t.Fatalf("round %d: err %v, stderr %q; want a failure naming VM_ACCEL", round, err, stderr)
					}
					return
				}
				if err != nil {
					t.Fatalf("round %d: %v: %s", round, err, stderr)
				}
				if got != tt.want {
					t.Errorf("round %d: chose %q, want %q (stderr %q)", round, got, tt.want, stderr)
				}
				if n := countLines(t, calls); n != tt.wantProbes {
					t.Errorf("round %d: %d probe boots, want %d (the verdict is cached)", round, n, tt.wantProbes)
				}
			}
			if tt.wantProbes > 0 {
				b, err := os.ReadFile(calls)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), "-accel kvm") {
					t.Errorf("probe ran %q, want it under -accel kvm", b)
				}
			}
		})
	}
}

// A verdict cached in another boot of the machine is not trusted: the probe runs again.
func TestChooseAccelCacheFromAnotherBoot(t *testing.T) {
	dir := t.TempDir()
	bin, calls := fakeQEMU(t, dir, false)
	if err := os.WriteFile(filepath.Join(dir, "accel"), []byte("other-kernel other-boot\nkvm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, stderr, err := chooseAccel(t, "VM_KVM_DEV=/dev/null", "VM_QEMU="+bin, "VM_CACHE="+dir, "VM_KVM_PROBE_SECONDS=2", "VM_ACCEL=")
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	if got != "tcg" || countLines(t, calls) != 1 {
		t.Errorf("chose %q after %d probes, want tcg after 1", got, countLines(t, calls))
	}
}
