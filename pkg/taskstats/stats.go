package taskstats

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// MaxVersion is the newest version of struct taskstats this package knows field by field.
const MaxVersion = 17

// MinVersion is the oldest version decoded (Linux 2.6.28); older layouts are refused.
const MinVersion = 8

// Errors of the struct taskstats decoder, for errors.Is. The gnl layer also wraps them in
// gnl.ErrMalformed when they come from a netlink reply.
var (
	// ErrTruncated: the payload is shorter than its version field says it must be.
	ErrTruncated = errors.New("taskstats: struct taskstats payload truncated")
	// ErrUnsupportedVersion: the version is older than MinVersion, whose layout is not decoded.
	ErrUnsupportedVersion = errors.New("taskstats: unsupported struct taskstats version")
)

// Delay is one delay-accounting category: how many delays were recorded and their total, and from
// version 15 on the longest and shortest single delay, and from version 17 when the longest
// happened. The kernel counts only while delay accounting is on (CPU delay always).
type Delay struct {
	Count uint64
	Total time.Duration
	// Max and Min are zero before version 15.
	Max time.Duration
	Min time.Duration
	// MaxAt is when the longest delay ended (wall clock), zero before version 17 or when none was
	// recorded.
	MaxAt time.Time
}

// Stats is one struct taskstats record, every field of versions 8 through 17. Times the kernel
// reports in microseconds or nanoseconds are time.Duration values; fields a version does not
// have are zero.
type Stats struct {
	// Version is the struct version the kernel sent (see MaxVersion).
	Version uint16

	// Delay accounting.
	CPU       Delay // waiting for a CPU while runnable (equals /proc/<pid>/schedstat field 2)
	BlkIO     Delay // synchronous block I/O
	SwapIn    Delay // swapping a page in
	FreePages Delay // memory reclaim
	Thrashing Delay // thrashing pages (v9)
	Compact   Delay // memory compaction (v11)
	WPCopy    Delay // write-protect copy (v13)
	IRQ       Delay // IRQ/softirq (v14)
	// CPURunRealTotal and CPURunVirtualTotal are the time spent running, wall-clock (adjusted
	// for steal on some architectures) and as the scheduler saw it; CPUScaledRunRealTotal is
	// the former scaled by CPU frequency.
	CPURunRealTotal       time.Duration
	CPURunVirtualTotal    time.Duration
	CPUScaledRunRealTotal time.Duration

	// Basic accounting (as BSD process accounting).
	Comm      string    // command name (at most 31 bytes)
	ExitCode  uint32    // exit status, for records of exiting tasks
	Flag      uint8     // accounting flags (AFORK 0x01, ASU 0x02, ACORE 0x08, AXSIG 0x10)
	Nice      int8      // task_nice()
	Sched     uint8     // scheduling policy
	UID       uint32    // real user id, in the caller's user namespace
	GID       uint32    // real group id
	PID       uint32    // thread id (ac_pid), in the caller's PID namespace
	PPID      uint32    // parent's thread group id
	TGID      uint32    // thread group id (v12)
	BeginTime time.Time // start time, whole seconds (ac_btime64 from v10, ac_btime before)
	Elapsed   time.Duration
	// ThreadGroupElapsed is the elapsed time of the whole thread group (v12).
	ThreadGroupElapsed time.Duration
	UserTime           time.Duration
	SystemTime         time.Duration
	UserTimeScaled     time.Duration
	SystemTimeScaled   time.Duration
	MinorFaults        uint64
	MajorFaults        uint64
	// ExeDev and ExeInode identify the program binary (v12).
	ExeDev   uint64
	ExeInode uint64

	// Extended accounting: memory.
	CoreMem       uint64 // accumulated RSS usage, MB·µs
	VirtMem       uint64 // accumulated virtual memory usage, MB·µs
	HiwaterRSSKiB uint64 // high-water RSS (VmHWM), KiB
	HiwaterVMKiB  uint64 // high-water virtual memory (VmPeak), KiB

	// Extended accounting: I/O (as /proc/<pid>/io). The kernel rounds all seven down to
	// multiples of 1024 (KB_MASK), syscall counts included.
	ReadChar            uint64
	WriteChar           uint64
	ReadSyscalls        uint64
	WriteSyscalls       uint64
	ReadBytes           uint64
	WriteBytes          uint64
	CancelledWriteBytes uint64

	// Context switches.
	Nvcsw  uint64 // voluntary
	Nivcsw uint64 // involuntary

	// Raw keeps a copy of the whole payload when Version is newer than MaxVersion, so that a
	// caller can read fields this package does not know yet. It is nil otherwise.
	Raw []byte
}

// versionSize is the size of struct taskstats on 64-bit architectures, by version.
var versionSize = [MaxVersion + 1]int{8: 328, 9: 344, 10: 352, 11: 368, 12: 400, 13: 416, 14: 432, 15: 560, 16: 560, 17: 688}

// SizeOf is the payload size a version needs (for versions above MaxVersion, the size of the
// prefix this package decodes), or 0 for versions below MinVersion.
func SizeOf(version uint16) int {
	switch {
	case version < MinVersion:
		return 0
	case version > MaxVersion:
		return versionSize[MaxVersion]
	}
	return versionSize[version]
}

// delayOffsets locates one delay category in the struct; -1 when absent from a layout.
type delayOffsets struct{ count, total, max, min, maxTS int }

// layout holds the offset of every field of struct taskstats that moves between layouts. Fields
// that never move (version 0, exitcode 4, flag 8, nice 9) are decoded directly.
type layout struct {
	cpu, blkio, swapin, freepages, thrashing, compact, wpcopy, irq delayOffsets

	runReal, runVirtual, comm, sched, uid, gid, pid, ppid, btime, etime, utime, stime int
	minflt, majflt, coremem, virtmem, hiwaterRSS, hiwaterVM                           int
	rchar, wchar, syscr, syscw, readBytes, writeBytes, cancelledWriteBytes            int
	nvcsw, nivcsw, utimeScaled, stimeScaled, scaledRunReal                            int
	btime64, tgid, tgetime, exeDev, exeInode                                          int
}

// stable is the layout of versions 8–14, 16 and 17 (fields a version lacks lie beyond its size
// and are not read): new fields were only ever appended.
var stable = layout{
	cpu:       delayOffsets{16, 24, 432, 440, 560},
	blkio:     delayOffsets{32, 40, 448, 456, 576},
	swapin:    delayOffsets{48, 56, 464, 472, 592},
	freepages: delayOffsets{312, 320, 480, 488, 608},
	thrashing: delayOffsets{328, 336, 496, 504, 624},
	compact:   delayOffsets{352, 360, 512, 520, 640},
	wpcopy:    delayOffsets{400, 408, 528, 536, 656},
	irq:       delayOffsets{416, 424, 544, 552, 672},

	runReal: 64, runVirtual: 72, comm: 80, sched: 112, uid: 120, gid: 124, pid: 128, ppid: 132,
	btime: 136, etime: 144, utime: 152, stime: 160, minflt: 168, majflt: 176, coremem: 184,
	virtmem: 192, hiwaterRSS: 200, hiwaterVM: 208, rchar: 216, wchar: 224, syscr: 232, syscw: 240,
	readBytes: 248, writeBytes: 256, cancelledWriteBytes: 264, nvcsw: 272, nivcsw: 280,
	utimeScaled: 288, stimeScaled: 296, scaledRunReal: 304, btime64: 344, tgid: 368, tgetime: 376,
	exeDev: 384, exeInode: 392,
}

// v15 is the layout of version 15 (Linux 6.14 before the fix): each category's max and min follow
// its total in the middle of the struct, shifting everything after the CPU delay total.
var v15 = layout{
	cpu:       delayOffsets{16, 24, 32, 40, -1},
	blkio:     delayOffsets{48, 56, 64, 72, -1},
	swapin:    delayOffsets{80, 88, 96, 104, -1},
	freepages: delayOffsets{360, 368, 376, 384, -1},
	thrashing: delayOffsets{392, 400, 408, 416, -1},
	compact:   delayOffsets{432, 440, 448, 456, -1},
	wpcopy:    delayOffsets{496, 504, 512, 520, -1},
	irq:       delayOffsets{528, 536, 544, 552, -1},

	runReal: 112, runVirtual: 120, comm: 128, sched: 160, uid: 168, gid: 172, pid: 176, ppid: 180,
	btime: 184, etime: 192, utime: 200, stime: 208, minflt: 216, majflt: 224, coremem: 232,
	virtmem: 240, hiwaterRSS: 248, hiwaterVM: 256, rchar: 264, wchar: 272, syscr: 280, syscw: 288,
	readBytes: 296, writeBytes: 304, cancelledWriteBytes: 312, nvcsw: 320, nivcsw: 328,
	utimeScaled: 336, stimeScaled: 344, scaledRunReal: 352, btime64: 424, tgid: 464, tgetime: 472,
	exeDev: 480, exeInode: 488,
}

// UnmarshalBinary decodes a struct taskstats payload (the TASKSTATS_TYPE_STATS attribute) by
// explicit offsets chosen by its version field: see the package documentation. It never reads
// past b and never panics.
func (s *Stats) UnmarshalBinary(b []byte) error {
	*s = Stats{}
	if len(b) < 2 {
		return fmt.Errorf("%w: %d bytes, the version field needs 2", ErrTruncated, len(b))
	}
	v := binary.NativeEndian.Uint16(b)
	s.Version = v
	if v < MinVersion {
		return fmt.Errorf("%w: version %d (this package decodes %d to %d)", ErrUnsupportedVersion, v, MinVersion, MaxVersion)
	}
	need := SizeOf(v)
	if len(b) < need {
		return fmt.Errorf("%w: version %d needs %d bytes, got %d", ErrTruncated, v, need, len(b))
	}
	l := &stable
	if v == 15 {
		l = &v15
	}
	r := statsReader{b: b, v: v}
	s.ExitCode = r.u32(4)
	s.Flag = b[8]
	s.Nice = int8(b[9])
	r.delays(s, l)
	r.accounting(s, l)
	if v > MaxVersion {
		s.Raw = append([]byte(nil), b...)
	}
	return nil
}

// statsReader reads the fields of one struct taskstats payload of version v, whose length
// UnmarshalBinary checked against SizeOf(v): every offset of the version's layout is in b.
type statsReader struct {
	b []byte
	v uint16
}

func (r statsReader) u64(off int) uint64 { return binary.NativeEndian.Uint64(r.b[off:]) }
func (r statsReader) u32(off int) uint32 { return binary.NativeEndian.Uint32(r.b[off:]) }
func (r statsReader) us(off int) time.Duration {
	return durationOf(r.u64(off), time.Microsecond)
}
func (r statsReader) ns(off int) time.Duration { return durationOf(r.u64(off), 1) }

// delays decodes the delay categories and the CPU run times.
func (r statsReader) delays(s *Stats, l *layout) {
	r.delay(&s.CPU, l.cpu, 8)
	r.delay(&s.BlkIO, l.blkio, 8)
	r.delay(&s.SwapIn, l.swapin, 8)
	r.delay(&s.FreePages, l.freepages, 8)
	r.delay(&s.Thrashing, l.thrashing, 9)
	r.delay(&s.Compact, l.compact, 11)
	r.delay(&s.WPCopy, l.wpcopy, 13)
	r.delay(&s.IRQ, l.irq, 14)
	s.CPURunRealTotal = r.ns(l.runReal)
	s.CPURunVirtualTotal = r.ns(l.runVirtual)
	s.CPUScaledRunRealTotal = r.ns(l.scaledRunReal)
}

// delay decodes one category, which the struct has from version since on.
func (r statsReader) delay(d *Delay, o delayOffsets, since uint16) {
	if r.v < since {
		return
	}
	d.Count, d.Total = r.u64(o.count), r.ns(o.total)
	if r.v >= 15 {
		d.Max, d.Min = r.ns(o.max), r.ns(o.min)
	}
	if r.v >= 17 && o.maxTS >= 0 {
		sec, nsec := int64(r.u64(o.maxTS)), int64(r.u64(o.maxTS+8))
		if sec != 0 || nsec != 0 {
			d.MaxAt = time.Unix(sec, nsec)
		}
	}
}

// accounting decodes the identity, times, memory, I/O and context switch fields.
func (r statsReader) accounting(s *Stats, l *layout) {
	b, v := r.b, r.v
	s.Comm = commString(b[l.comm : l.comm+32])
	s.Sched = b[l.sched]
	s.UID, s.GID, s.PID, s.PPID = r.u32(l.uid), r.u32(l.gid), r.u32(l.pid), r.u32(l.ppid)
	if v >= 10 {
		s.BeginTime = time.Unix(int64(r.u64(l.btime64)), 0)
	} else {
		s.BeginTime = time.Unix(int64(r.u32(l.btime)), 0)
	}
	s.Elapsed = r.us(l.etime)
	s.UserTime, s.SystemTime = r.us(l.utime), r.us(l.stime)
	s.UserTimeScaled, s.SystemTimeScaled = r.us(l.utimeScaled), r.us(l.stimeScaled)
	s.MinorFaults, s.MajorFaults = r.u64(l.minflt), r.u64(l.majflt)
	s.CoreMem, s.VirtMem = r.u64(l.coremem), r.u64(l.virtmem)
	s.HiwaterRSSKiB, s.HiwaterVMKiB = r.u64(l.hiwaterRSS), r.u64(l.hiwaterVM)
	s.ReadChar, s.WriteChar = r.u64(l.rchar), r.u64(l.wchar)
	s.ReadSyscalls, s.WriteSyscalls = r.u64(l.syscr), r.u64(l.syscw)
	s.ReadBytes, s.WriteBytes, s.CancelledWriteBytes = r.u64(l.readBytes), r.u64(l.writeBytes), r.u64(l.cancelledWriteBytes)
	s.Nvcsw, s.Nivcsw = r.u64(l.nvcsw), r.u64(l.nivcsw)
	if v >= 12 {
		s.TGID = r.u32(l.tgid)
		s.ThreadGroupElapsed = r.us(l.tgetime)
		s.ExeDev, s.ExeInode = r.u64(l.exeDev), r.u64(l.exeInode)
	}
}

// durationOf converts a kernel counter in unit to a Duration, saturating instead of wrapping.
func durationOf(n uint64, unit time.Duration) time.Duration {
	const maxDuration = time.Duration(1<<63 - 1)
	if n > uint64(maxDuration/unit) {
		return maxDuration
	}
	return time.Duration(n) * unit
}

// commString returns the NUL-terminated command name in b.
func commString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
