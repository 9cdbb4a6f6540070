//go:build linux

package taskstats

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

var direntBuffers = sync.Pool{New: func() any { b := make([]byte, 8192); return &b }}

// listThreads appends to tids the thread ids of process pid, listed in <proc>/<pid>/task with
// getdents64 into a pooled buffer (this runs once per sampled process: no os.File, no strings).
// It reads until getdents returns 0: a short read does not mean the end (procfs may return only
// "." and ".." from a first call, which a shortcut here once took for an empty thread list).
func listThreads(proc string, pid int, tids []int) ([]int, error) {
	dir := proc + "/" + strconv.Itoa(pid) + "/task"
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return tids, fmt.Errorf("taskstats: process %d: %w", pid, noSuchTaskError{&os.PathError{Op: "open", Path: dir, Err: err}})
		}
		return tids, fmt.Errorf("taskstats: process %d: listing its threads in %s: %w", pid, dir, err)
	}
	defer unix.Close(fd)
	bp := direntBuffers.Get().(*[]byte)
	defer direntBuffers.Put(bp)
	buf := *bp
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return tids, fmt.Errorf("taskstats: process %d: listing its threads in %s: %w", pid, dir, err)
		}
		if n <= 0 {
			return tids, nil
		}
		// struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				return tids, fmt.Errorf("taskstats: process %d: malformed directory entry in %s", pid, dir)
			}
			tid := 0
			for _, ch := range b[19:reclen] {
				if ch < '0' || ch > '9' || tid > 1<<31 {
					break
				}
				tid = tid*10 + int(ch-'0')
			}
			if tid > 0 {
				tids = append(tids, tid)
			}
			b = b[reclen:]
		}
	}
}

func gettid() int { return unix.Gettid() }
