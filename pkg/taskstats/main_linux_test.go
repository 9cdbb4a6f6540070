package taskstats

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubelvs/kubelvs/pkg/taskstats/internal/workload"
)

// kernelSkip is set when the real-kernel tests were asked not to run (go test -short): they
// need root (CAP_NET_ADMIN for taskstats, writing kernel.task_delayacct) and a kernel with
// TASKSTATS.
var kernelSkip string

// permissionChildEnv makes the test binary run TestPermission's child check instead of tests.
const permissionChildEnv = "KUBELVS_TASKSTATS_PERMISSION_CHILD"

func TestMain(m *testing.M) {
	workload.Main() // when this binary was started as a test workload, it never returns
	if os.Getenv(permissionChildEnv) != "" {
		if err := permissionChild(); err != nil {
			fmt.Fprintln(os.Stderr, "permission child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse() // testing.Short needs the flags parsed, which m.Run would do only later
	if testing.Short() {
		kernelSkip = "-short: the real-kernel tests do not run"
		return m.Run()
	}
	// A run that cannot reach the kernel fails, saying why, rather than skip every real-kernel
	// test and pass: a passing package would claim what was never checked.
	if err := kernelAvailable(); err != nil {
		fmt.Fprintf(os.Stderr, "taskstats tests: the real-kernel tests cannot run: %v\n"+
			"run them as root (make test does), or go test -short for the tests that need no kernel\n", err)
		return 1
	}
	// Delay accounting on for the workloads the tests start (off by default since Linux 5.14),
	// restored afterwards.
	was, err := SetDelayAccounting(true)
	if err != nil {
		fmt.Fprintln(os.Stderr, "taskstats tests:", err)
		return 1
	}
	defer func() {
		if _, err := SetDelayAccounting(was); err != nil {
			fmt.Fprintln(os.Stderr, "taskstats tests: restoring kernel.task_delayacct:", err)
		}
	}()
	return m.Run()
}

func kernelAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("not root: taskstats needs CAP_NET_ADMIN and the tests set kernel.task_delayacct")
	}
	c, err := Dial(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Thread(ctx, os.Getpid()); err != nil {
		return fmt.Errorf("the kernel cannot be asked for taskstats: %w", err)
	}
	return nil
}

// kernelClient returns a client of the real kernel; under -short it skips the test.
func kernelClient(t testing.TB) *Client {
	t.Helper()
	if kernelSkip != "" {
		t.Skip("real-kernel test: " + kernelSkip)
	}
	c, err := Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startWorkload starts a workload process that finishes when the test ends.
func startWorkload(t testing.TB, s workload.Spec) *workload.Process {
	t.Helper()
	if s.Dir == "" {
		s.Dir = diskDir(t)
	}
	p, err := workload.Start(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Finish() })
	return p
}

// diskDir is a directory on a block device (not tmpfs), so that read_bytes and write_bytes count.
func diskDir(t testing.TB) string {
	d, err := os.MkdirTemp("/var/tmp", "taskstats-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// TestNonRootRunFails runs this test binary as nobody: TestMain must fail and say why, where
// it used to skip every real-kernel test and pass. Under -short the same run passes.
func TestNonRootRunFails(t *testing.T) {
	kernelClient(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux, essential on Debian) is not installed: cannot run a child as nobody")
	}
	// A copy nobody can execute: go test's build directory is private to root.
	dir, err := os.MkdirTemp("", "taskstats-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "taskstats.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (string, int) {
		cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin, "-test.run=^$"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("running the test binary as nobody: %v\n%s", err, out)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := asNobody()
	if code != 1 || !strings.Contains(out, "the real-kernel tests cannot run: not root") {
		t.Errorf("as nobody: exit %d, output %q; want exit 1 saying the real-kernel tests cannot run", code, out)
	}
	if out, code := asNobody("-test.short"); code != 0 {
		t.Errorf("as nobody with -short: exit %d, output %q; want a pass", code, out)
	}
}
