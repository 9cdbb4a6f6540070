package taskstats

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrDropped is wrapped by the error [Listener.Receive] returns when the kernel dropped exit
// records because the listener's receive buffer was full (ENOBUFS). The listener keeps working;
// see [DroppedError] for how many were lost.
var ErrDropped = errors.New("taskstats: exit records dropped (receive buffer overflow)")

// DroppedError reports exit records the kernel could not deliver to a [Listener].
type DroppedError struct {
	// Records is how many records were dropped since the previous report, as the kernel counted
	// them for the socket (the Drops column of /proc/net/netlink), or 0 when the count could not
	// be read.
	Records uint64
	// Err is the socket error (ENOBUFS).
	Err error
}

func (e *DroppedError) Error() string {
	if e.Records == 0 {
		return fmt.Sprintf("%v: %v", ErrDropped, e.Err)
	}
	return fmt.Sprintf("%v: %d records lost: %v", ErrDropped, e.Records, e.Err)
}

// Unwrap returns ErrDropped and the socket error.
func (e *DroppedError) Unwrap() []error { return []error{ErrDropped, e.Err} }

// Exit is the final record of an exiting task, as the kernel sends it to exit listeners.
type Exit struct {
	// PID is the exiting thread's id and Task its final statistics.
	PID  uint32
	Task Stats
	// When the task was the last thread of a thread group that had more than one thread, TGID
	// and Group hold the group's final totals (its live and exited threads); Group is nil
	// otherwise (a single-threaded process's Task is its whole record).
	TGID  uint32
	Group *Stats
}

// ListenConfig configures [Client.Listen]. The zero value (or nil) is usable.
type ListenConfig struct {
	// CPUs is the CPU list to receive the exits of, in the kernel's list format ("0-3,8");
	// empty means every possible CPU (/sys/devices/system/cpu/possible).
	CPUs string
	// ReceiveBuffer sizes the socket's receive buffer in bytes (default 4 MiB; beyond
	// net.core.rmem_max when the caller has CAP_NET_ADMIN). Each queued record takes about 1.5 KiB
	// of it; a full buffer drops records (reported as [ErrDropped]).
	ReceiveBuffer int
}

// PossibleCPUs returns the kernel's list of possible CPUs, the widest mask a listener may use.
func PossibleCPUs() (string, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return "", fmt.Errorf("taskstats: possible CPUs: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// netlinkDrops reads how many messages the kernel dropped for the generic netlink socket with
// port id portid, from the Drops column of /proc/net/netlink.
func netlinkDrops(portid uint32) (uint64, bool) {
	b, err := os.ReadFile("/proc/net/netlink")
	if err != nil {
		return 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 2 {
		return 0, false
	}
	head := strings.Fields(lines[0])
	col := func(name string) int {
		for i, h := range head {
			if h == name {
				return i
			}
		}
		return -1
	}
	eth, pid, drops := col("Eth"), col("Pid"), col("Drops")
	if eth < 0 || pid < 0 || drops < 0 {
		return 0, false
	}
	want := strconv.FormatUint(uint64(portid), 10)
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != len(head) || f[eth] != "16" || f[pid] != want { // 16: NETLINK_GENERIC
			continue
		}
		n, err := strconv.ParseUint(f[drops], 10, 64)
		return n, err == nil
	}
	return 0, false
}
