package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// linkUp sets IFF_UP on the named interface of the current network namespace.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS %s: %w", name, err)
	}
	return nil
}

// cpuTimes returns the busy and total jiffies of all CPUs from /proc/stat.
func cpuTimes() (busy, total uint64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, fmt.Errorf("empty /proc/stat")
	}
	fields := strings.Fields(sc.Text())
	for i, s := range fields[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// settle waits until the CPU has been at least 95% idle for twelve 250 ms samples in a row (the
// kernel tearing down the previous contender's namespace and table, which pauses for RCU grace
// periods in between: two samples were not always enough), at most max; it returns the time waited.
func settle(max time.Duration) time.Duration {
	start := time.Now()
	quiet := 0
	b0, t0, err := cpuTimes()
	if err != nil {
		return 0
	}
	for quiet < 12 && time.Since(start) < max {
		time.Sleep(250 * time.Millisecond)
		b1, t1, err := cpuTimes()
		if err != nil {
			return time.Since(start)
		}
		if t1 > t0 && float64(b1-b0) <= 0.05*float64(t1-t0) {
			quiet++
		} else {
			quiet = 0
		}
		b0, t0 = b1, t1
	}
	return time.Since(start)
}
