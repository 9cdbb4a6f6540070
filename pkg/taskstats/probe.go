package taskstats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// initPIDNamespaceInode is the inode number of the initial PID namespace (PROC_PID_INIT_INO),
// fixed by the kernel.
const initPIDNamespaceInode = 0xEFFFFFFC

// Environment is what a node agent needs to know before it relies on taskstats.
type Environment struct {
	// DelayAccounting is whether the kernel records delays other than CPU delay for tasks that
	// start from now on (kernel.task_delayacct; off by default since Linux 5.14). A task that
	// started while it was off keeps zero delays other than CPU. DelayAccountingKnown is false
	// when the sysctl does not exist (kernels before 5.14 account delays unless booted with
	// nodelayacct).
	DelayAccounting      bool
	DelayAccountingKnown bool
	// Permitted is whether taskstats requests succeed; when not, PermissionError says why
	// (matching [ErrPermission] for a missing CAP_NET_ADMIN, [ErrUnavailable] when the family
	// is missing).
	Permitted       bool
	PermissionError error
	// HostPIDs is whether the caller is in the initial PID namespace, so that the PIDs it asks
	// about and sees in /proc are the host's (a pod needs hostPID), and exit listeners work.
	HostPIDs bool
	// Version is the struct taskstats version the kernel speaks (0 when not Permitted).
	Version uint16
}

// Probe inspects the environment: the delay accounting sysctl, whether a request for the
// caller's own thread succeeds, and the caller's PID namespace. It fails only on a context error;
// everything else is reported in the Environment.
func (c *Client) Probe(ctx context.Context) (*Environment, error) {
	var env Environment
	b, err := os.ReadFile(c.proc + "/sys/kernel/task_delayacct")
	if err == nil {
		env.DelayAccountingKnown = true
		env.DelayAccounting = strings.TrimSpace(string(b)) == "1"
	}
	var s Stats
	err = c.ThreadInto(ctx, gettid(), &s)
	switch {
	case err == nil:
		env.Permitted, env.Version = true, s.Version
	case ctx.Err() != nil:
		return nil, err
	default:
		env.PermissionError = err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(c.proc+"/self/ns/pid", &st); err == nil {
		env.HostPIDs = st.Ino == initPIDNamespaceInode
	}
	return &env, nil
}

// SetDelayAccounting turns kernel.task_delayacct on or off (root only) and returns the previous
// setting. Tasks that start while it is on record their delays.
func SetDelayAccounting(on bool) (was bool, err error) {
	const path = "/proc/sys/kernel/task_delayacct"
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("taskstats: delay accounting: %w", err)
	}
	was = strings.TrimSpace(string(b)) == "1"
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return was, fmt.Errorf("taskstats: setting kernel.task_delayacct needs root: %w", err)
		}
		return was, fmt.Errorf("taskstats: delay accounting: %w", err)
	}
	return was, nil
}
