package taskstats

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
)

// CgroupStats counts the tasks of a cgroup by state (struct cgroupstats).
type CgroupStats struct {
	Sleeping        uint64
	Running         uint64
	Stopped         uint64
	Uninterruptible uint64
	IOWait          uint64
}

// cgroupStatsSize is sizeof(struct cgroupstats): five u64 counters.
const cgroupStatsSize = 40

// UnmarshalBinary decodes struct cgroupstats; a longer payload (a future kernel's) is accepted.
func (c *CgroupStats) UnmarshalBinary(b []byte) error {
	if len(b) < cgroupStatsSize {
		return fmt.Errorf("%w: struct cgroupstats needs %d bytes, got %d", ErrTruncated, cgroupStatsSize, len(b))
	}
	u := func(i int) uint64 { return binary.NativeEndian.Uint64(b[8*i:]) }
	*c = CgroupStats{Sleeping: u(0), Running: u(1), Stopped: u(2), Uninterruptible: u(3), IOWait: u(4)}
	return nil
}

// AppendBinary encodes struct cgroupstats (for fakes and tests).
func (c *CgroupStats) AppendBinary(b []byte) ([]byte, error) {
	for _, v := range []uint64{c.Sleeping, c.Running, c.Stopped, c.Uninterruptible, c.IOWait} {
		b = binary.NativeEndian.AppendUint64(b, v)
	}
	return b, nil
}

// CgroupStats counts the tasks of a cgroup by state. dir is a cgroup directory of a cgroup v1
// hierarchy (for example /sys/fs/cgroup/cpu/kubepods/...): the kernel answers CGROUPSTATS only
// for cgroup v1 and refuses a cgroup v2 directory with EINVAL (use cgroup v2's cgroup.stat and
// pressure files there).
func (c *Client) CgroupStats(ctx context.Context, dir string) (*CgroupStats, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("taskstats: cgroupstats: %w", err)
	}
	defer f.Close()
	var rep cgroupstatsReply
	if err := cgroupstatsGet.Do(ctx, c.conn, &cgroupstatsRequest{FD: uint32(f.Fd())}, &rep); err != nil {
		return nil, c.wrap(fmt.Sprintf("cgroupstats of %s", dir), err)
	}
	if !rep.Seen.Has(1) {
		return nil, fmt.Errorf("taskstats: cgroupstats of %s: reply without CGROUPSTATS_TYPE_CGROUP_STATS", dir)
	}
	return &rep.Stats, nil
}
