package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

// runKubelvs runs the command tree in-process.
func runKubelvs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), err
}

// procFields reads the /proc numbers of a single-threaded process that taskstats also reports.
func procFields(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	atoi := func(s string) uint64 {
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(s), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		return n
	}
	m := map[string]uint64{}
	stat := read("stat")
	f := strings.Fields(stat[strings.LastIndexByte(stat, ')')+2:]) // from field 3 (state) on
	m["minflt"], m["majflt"], m["utime"], m["stime"] = atoi(f[7]), atoi(f[9]), atoi(f[11]), atoi(f[12])
	for _, file := range []string{"io", "status"} {
		for _, line := range strings.Split(read(file), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (file == "io" || strings.HasPrefix(k, "Vm") || strings.HasSuffix(k, "ctxt_switches")) {
				m[k] = atoi(v)
			}
		}
	}
	ss := strings.Fields(read("schedstat"))
	m["run_delay"], m["pcount"] = atoi(ss[1]), atoi(ss[2])
	return m
}

func TestTaskstatsJSONMatchesProc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("real-kernel test: taskstats needs CAP_NET_ADMIN (run as root)")
	}
	// A quiet single-threaded process with no children: /proc and taskstats describe the same
	// thing, so every field can be compared.
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	pid := sleeper.Process.Pid
	for range 200 { // until it has gone to sleep
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") S ") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, err := runKubelvs(t, "taskstats", "-o", "json", strconv.Itoa(pid))
	if err != nil {
		t.Fatal(err)
	}
	proc := procFields(t, pid)
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, k := range strings.Fields(`pid tgid comm version cpuCount cpuDelayTotalNs cpuRunRealTotalNs
		cpuRunVirtualTotalNs blkioCount blkioDelayTotalNs swapinCount swapinDelayTotalNs freepagesCount
		freepagesDelayTotalNs thrashingCount thrashingDelayTotalNs compactCount compactDelayTotalNs
		wpcopyCount wpcopyDelayTotalNs irqCount irqDelayTotalNs utimeUs stimeUs minorFaults majorFaults
		readChar writeChar readSyscalls writeSyscalls readBytes writeBytes cancelledWriteBytes nvcsw
		nivcsw hiwaterRssKiB hiwaterVmKiB`) {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	num := func(k string) uint64 { v, _ := got[k].(float64); return uint64(v) }
	if num("pid") != uint64(pid) || num("tgid") != uint64(pid) || got["comm"] != "sleep" {
		t.Errorf("identity: pid %v tgid %v comm %v", got["pid"], got["tgid"], got["comm"])
	}
	exact := map[string][2]uint64{
		"minorFaults":     {num("minorFaults"), proc["minflt"]},
		"majorFaults":     {num("majorFaults"), proc["majflt"]},
		"cpuDelayTotalNs": {num("cpuDelayTotalNs"), proc["run_delay"]},
		"cpuCount":        {num("cpuCount"), proc["pcount"]},
		"nvcsw":           {num("nvcsw"), proc["voluntary_ctxt_switches"]},
		"nivcsw":          {num("nivcsw"), proc["nonvoluntary_ctxt_switches"]},
		"hiwaterVmKiB":    {num("hiwaterVmKiB"), proc["VmPeak"]},
	}
	for k, v := range exact {
		if v[0] != v[1] {
			t.Errorf("%s: taskstats %d, /proc %d", k, v[0], v[1])
		}
	}
	// Rounded down to multiples of 1024 by the kernel (one thread).
	for k, p := range map[string]string{"readChar": "rchar", "writeChar": "wchar", "readSyscalls": "syscr",
		"writeSyscalls": "syscw", "readBytes": "read_bytes", "writeBytes": "write_bytes", "cancelledWriteBytes": "cancelled_write_bytes"} {
		if ts := num(k); ts > proc[p] || proc[p]-ts >= 1024 || ts%1024 != 0 {
			t.Errorf("%s: taskstats %d, /proc %s %d: want /proc rounded down to a multiple of 1024", k, ts, p, proc[p])
		}
	}
	// VmHWM: the RSS counters read approximately by taskstats (see pkg/taskstats tests).
	if d := int64(num("hiwaterRssKiB")) - int64(proc["VmHWM"]); d > 3072 || d < -3072 {
		t.Errorf("hiwaterRssKiB %d, VmHWM %d", num("hiwaterRssKiB"), proc["VmHWM"])
	}
	// utime/stime: sampled µs vs /proc's ticks scaled to the run time: within 2 ticks each.
	if d := int64(num("utimeUs")+num("stimeUs")) - int64(proc["utime"]+proc["stime"])*10000; d > 20000 || d < -20000 {
		t.Errorf("utime+stime %d µs, /proc %d ticks", num("utimeUs")+num("stimeUs"), proc["utime"]+proc["stime"])
	}

	table, err := runKubelvs(t, "taskstats", strconv.Itoa(pid))
	if err != nil || !strings.Contains(table, fmt.Sprintf("PID %d", pid)) || !strings.Contains(table, "CPU") || !strings.Contains(table, "read_bytes") {
		t.Errorf("table output: %v\n%s", err, table)
	}
	if _, err := runKubelvs(t, "taskstats", "--tid", "-o", "json", strconv.Itoa(pid)); err != nil {
		t.Errorf("--tid: %v", err)
	}
	if _, err := runKubelvs(t, "taskstats", "999999999"); err == nil || !strings.Contains(err.Error(), "no such task") {
		t.Errorf("missing pid: %v, want no such task", err)
	}
	if _, err := runKubelvs(t, "taskstats", "-o", "yaml", "1"); err == nil {
		t.Error("-o yaml accepted")
	}
	probe, err := runKubelvs(t, "taskstats", "--probe", "-o", "json")
	if err != nil || !strings.Contains(probe, `"permitted":true`) || !strings.Contains(probe, `"hostPIDs":true`) {
		t.Errorf("probe: %v %s", err, probe)
	}
}

func TestTaskstatsListen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("real-kernel test: taskstats listeners need CAP_NET_ADMIN (run as root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	root := newRootCommand()
	root.SetOut(pw)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"taskstats", "--listen", "-o", "json"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx); _ = pw.Close() }()
	lines := bufio.NewScanner(pr)
	lines.Buffer(nil, 1<<20)
	// The listener registers asynchronously: start exiting children until one is seen.
	found := make(chan map[string]any, 1)
	go func() {
		for lines.Scan() {
			var rec map[string]any
			if err := json.Unmarshal(lines.Bytes(), &rec); err != nil {
				t.Errorf("not JSON: %q", lines.Text())
				continue
			}
			if rec["comm"] == "sh" && rec["exitCode"] == float64(5<<8) {
				found <- rec
				return
			}
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case rec := <-found:
			t.Logf("exit record: pid %v exitCode %v", rec["pid"], rec["exitCode"])
			waiting = false
		case <-tick.C:
			_ = exec.Command("sh", "-c", "exit 5").Run()
		case <-ctx.Done():
			t.Fatal("no exit record of sh -c 'exit 5' within a minute")
		}
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if err := <-done; err != nil {
		t.Errorf("--listen after the context ended: %v, want a clean stop", err)
	}
}

// scriptedExits is an exitSource that returns a fixed sequence of records and errors.
type scriptedExits struct {
	script []scripted
}

type scripted struct {
	exit *taskstats.Exit
	err  error
}

func (s *scriptedExits) Receive(context.Context) (*taskstats.Exit, error) {
	if len(s.script) == 0 {
		return nil, fmt.Errorf("%w: %w", taskstats.ErrStopped, net.ErrClosed)
	}
	r := s.script[0]
	s.script = s.script[1:]
	return r.exit, r.err
}

// TestListenGoesOnAfterABadRecord: a record the listener cannot decode, or drops the kernel
// reports, are reported on stderr and the records after them are printed; only the end of the
// listener ends the command. --listen used to exit on the first malformed record.
func TestListenGoesOnAfterABadRecord(t *testing.T) {
	malformed := fmt.Errorf("taskstats: exit listener: %w: exit record without the task's statistics", gnl.ErrMalformed)
	dropped := &taskstats.DroppedError{Records: 3, Err: syscall.ENOBUFS}
	src := &scriptedExits{script: []scripted{
		{exit: &taskstats.Exit{PID: 10, Task: taskstats.Stats{PID: 10, Comm: "first"}}},
		{err: malformed},
		{err: dropped},
		{exit: &taskstats.Exit{PID: 11, Task: taskstats.Stats{PID: 11, Comm: "second"}}},
	}}
	var out, errOut bytes.Buffer
	err := printExits(context.Background(), &out, &errOut, src, "json")
	if !errors.Is(err, taskstats.ErrStopped) {
		t.Errorf("printExits = %v, want the listener's end (ErrStopped)", err)
	}
	if !strings.Contains(out.String(), `"comm":"first"`) || !strings.Contains(out.String(), `"comm":"second"`) {
		t.Errorf("stdout %q: want both records, the one after the bad record too", out.String())
	}
	if !strings.Contains(errOut.String(), malformed.Error()) || !strings.Contains(errOut.String(), "3 records lost") {
		t.Errorf("stderr %q: want the malformed record and the drops reported", errOut.String())
	}
	// A context that ends is a clean stop, not an error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := printExits(ctx, &out, &errOut, &scriptedExits{}, "table"); err != nil {
		t.Errorf("printExits after the context ended = %v, want nil", err)
	}
}
