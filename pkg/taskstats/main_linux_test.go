package taskstats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kubelvs/kubelvs/pkg/taskstats/internal/workload"
)

// kernelSkip is why the real-kernel tests cannot run here ("" when they can): they need root
// (CAP_NET_ADMIN for taskstats, writing kernel.task_delayacct) and a kernel with TASKSTATS.
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
	if err := kernelAvailable(); err != nil {
		kernelSkip = err.Error()
		return m.Run()
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

// kernelClient returns a client of the real kernel, or skips the test saying why it cannot run.
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
