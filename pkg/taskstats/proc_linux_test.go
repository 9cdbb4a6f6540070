package taskstats

import (
	"bytes"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// procSample is what /proc says about a process: the numbers taskstats also reports. It is the
// peer the tests compare with and the benchmark races against.
type procSample struct {
	// /proc/<pid>/stat (clock ticks for the times, whole process)
	UtimeTicks, StimeTicks, MinFlt, MajFlt uint64
	// /proc/<pid>/io (whole process, reaped children and exited threads included)
	RChar, WChar, SyscR, SyscW, ReadBytes, WriteBytes, CancelledWriteBytes uint64
	// /proc/<pid>/schedstat (the thread group leader only): run time, run delay, timeslices
	RunNs, RunDelayNs, Pcount uint64
	// /proc/<pid>/status: VmHWM and VmPeak (the shared address space), context switches (the
	// leader only)
	VmHWMKiB, VmPeakKiB, Nvcsw, Nivcsw uint64
}

// procReader reads /proc files into one reused buffer, with raw syscalls: the fastest fair way
// to read them from Go.
type procReader struct {
	buf    []byte
	path   []byte
	fields [16][]byte
}

func newProcReader() *procReader {
	return &procReader{buf: make([]byte, 8192), path: make([]byte, 0, 64)}
}

func (r *procReader) read(pid int, file string) ([]byte, error) {
	r.path = append(r.path[:0], "/proc/"...)
	r.path = strconv.AppendInt(r.path, int64(pid), 10)
	r.path = append(r.path, '/')
	r.path = append(r.path, file...)
	p := string(r.path)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	n := 0
	for {
		k, err := unix.Read(fd, r.buf[n:])
		if err != nil {
			_ = unix.Close(fd)
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		n += k
		// These files are single seq_file records: a read that leaves room in the buffer has
		// returned all of it, so no second read for the end of file.
		if k == 0 || n < len(r.buf) {
			break
		}
		r.buf = append(r.buf, make([]byte, len(r.buf))...)
	}
	_ = unix.Close(fd)
	return r.buf[:n], nil
}

// sample reads stat, io, schedstat and status of pid.
func (r *procReader) sample(pid int, s *procSample) error {
	b, err := r.read(pid, "stat")
	if err != nil {
		return err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	// Fields after the comm start at field 3 (state); minflt is 10, majflt 12, utime 14, stime 15.
	f := fieldsN(r.fields[:0], b[i+1:], 13)
	if len(f) < 13 {
		return fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	s.MinFlt, s.MajFlt, s.UtimeTicks, s.StimeTicks = atou(f[7]), atou(f[9]), atou(f[11]), atou(f[12])

	if b, err = r.read(pid, "io"); err != nil {
		return err
	}
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		n := atou(bytes.TrimSpace(v))
		switch string(k) {
		case "rchar":
			s.RChar = n
		case "wchar":
			s.WChar = n
		case "syscr":
			s.SyscR = n
		case "syscw":
			s.SyscW = n
		case "read_bytes":
			s.ReadBytes = n
		case "write_bytes":
			s.WriteBytes = n
		case "cancelled_write_bytes":
			s.CancelledWriteBytes = n
		}
	}

	if b, err = r.read(pid, "schedstat"); err != nil {
		return err
	}
	if f = fieldsN(r.fields[:0], b, 3); len(f) == 3 {
		s.RunNs, s.RunDelayNs, s.Pcount = atou(f[0]), atou(f[1]), atou(f[2])
	}

	if b, err = r.read(pid, "status"); err != nil {
		return err
	}
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(k) {
		case "VmPeak":
			s.VmPeakKiB = atou(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB")))
		case "VmHWM":
			s.VmHWMKiB = atou(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB")))
		case "voluntary_ctxt_switches":
			s.Nvcsw = atou(bytes.TrimSpace(v))
		case "nonvoluntary_ctxt_switches":
			s.Nivcsw = atou(bytes.TrimSpace(v))
		}
	}
	return nil
}

// fieldsN appends to out the first n space-separated fields of b.
func fieldsN(out [][]byte, b []byte, n int) [][]byte {
	for len(out) < n {
		b = bytes.TrimLeft(b, " \n")
		if len(b) == 0 {
			break
		}
		j := bytes.IndexAny(b, " \n")
		if j < 0 {
			j = len(b)
		}
		out = append(out, b[:j])
		b = b[j:]
	}
	return out
}

func atou(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}
