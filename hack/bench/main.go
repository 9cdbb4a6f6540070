// Command ipvs-bench programs an IPVS table of -services x -dests from empty and reads it back with each
// contender (Go IPVS libraries, ipvsadm, a hand-written raw netlink floor, and kubelvs's pkg/ipvs once
// it lands), each in a process of its own in a fresh network namespace, and prints a table of times and
// ratios. It must run as root on a kernel with IPVS: `make bench-ipvs` runs it inside hack/vm.
//
// A fresh namespace per contender matters: the kernel keeps deleted destinations on a per-namespace
// trash list for about a minute and scans it on every destination add, so a contender running after
// another's table was deleted would be measured on a poisoned kernel. Between contenders the benchmark
// waits for the CPU to go idle, so the kernel's teardown of the previous namespace is not billed to
// the next one.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

type options struct {
	services, dests int
	window, repeat  int
	rbuf, svcRbuf   int
	timeout         time.Duration
	only            string
	child           string
	profile         string
}

// result is what a child reports on stdout, as one "RESULT {json}" line.
type result struct {
	Name     string  `json:"name"`
	Program  float64 `json:"programSeconds"`
	Read     float64 `json:"readSeconds"`
	Services int     `json:"services"`
	Dests    int     `json:"dests"`
	Err      string  `json:"error,omitempty"`
}

func main() {
	var o options
	flag.IntVar(&o.services, "services", 10000, "number of virtual services")
	flag.IntVar(&o.dests, "dests", 10, "destinations per service")
	flag.IntVar(&o.repeat, "repeat", 1, "rounds over all contenders; the table shows medians")
	flag.IntVar(&o.window, "window", 4096, "requests per sendmsg of the raw writers and pkg/ipvs (pkg/ipvs's default)")
	flag.IntVar(&o.rbuf, "rbuf", 4096, "receive buffer in bytes of the raw floor's destination dumps (the kernel sizes dump messages to it)")
	flag.IntVar(&o.svcRbuf, "svc-rbuf", 65536, "receive buffer in bytes of the raw floor's service dump")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "time limit for each contender")
	flag.StringVar(&o.only, "only", "", "comma-separated substrings: run only contenders whose name contains one")
	flag.StringVar(&o.child, "child", "", "internal: run this contender in the current process")
	cpuReport := flag.String("cpu-report", "", "on the host: print the table by qemu CPU time from this console log of a hack/vm run")
	flag.StringVar(&o.profile, "cpuprofile", "", "print CPU profiles (base64, between PROFILE lines on stderr) of the program and read phases of contenders whose name contains this")
	flag.Parse()
	if *cpuReport != "" {
		if err := printCPUReport(os.Stdout, *cpuReport); err != nil {
			fmt.Fprintln(os.Stderr, "ipvs-bench:", err)
			os.Exit(1)
		}
		return
	}
	if o.services < 1 || o.dests < 0 || o.window < 1 || o.repeat < 1 || o.rbuf < 4096 || o.svcRbuf < 4096 || o.services > 1<<20 || o.services*o.dests > 1<<22 {
		fmt.Fprintln(os.Stderr, "ipvs-bench: -services must be 1..1048576, -dests >= 0 (at most 4M in all), -window and -repeat >= 1, -rbuf and -svc-rbuf >= 4096")
		os.Exit(2)
	}
	if o.child != "" {
		res := runChild(o)
		b, _ := json.Marshal(res)
		fmt.Printf("RESULT %s\n", b)
		if res.Err != "" {
			os.Exit(1)
		}
		return
	}
	if err := runAll(o); err != nil {
		fmt.Fprintln(os.Stderr, "ipvs-bench:", err)
		os.Exit(1)
	}
}

// runChild runs one contender in this process, which the parent started in a fresh network namespace.
func runChild(o options) result {
	res := result{Name: o.child}
	fail := func(err error) result { res.Err = err.Error(); return res }
	var e *entry
	for i := range contenders {
		if contenders[i].name == o.child {
			e = &contenders[i]
		}
	}
	if e == nil {
		return fail(fmt.Errorf("no contender %q", o.child))
	}
	// A fresh namespace has lo down, and the kernel then rejects IPv4 destinations as "not unicast".
	if err := linkUp("lo"); err != nil {
		return fail(fmt.Errorf("bringing lo up: %w", err))
	}
	t := NewTable(o.services, o.dests)
	c, err := e.new(o)
	if err != nil {
		return fail(err)
	}
	// Phase markers for hack/vm, which stamps each with the CPU time qemu has used (see cpureport.go).
	fmt.Fprintf(os.Stderr, "@@vmcpu program %s\n", o.child)
	profiling := o.profile != "" && strings.Contains(o.child, o.profile)
	stopProfile := startProfile(profiling)
	start := time.Now()
	if err := c.Program(t); err != nil {
		return fail(err)
	}
	res.Program = time.Since(start).Seconds()
	stopProfile("program")
	stopProfile = startProfile(profiling)
	fmt.Fprintf(os.Stderr, "@@vmcpu read %s\n", o.child)
	start = time.Now()
	res.Services, res.Dests, err = c.Read()
	if err != nil {
		return fail(err)
	}
	res.Read = time.Since(start).Seconds()
	stopProfile("read")
	if ws, wd := t.Objects(); res.Services != ws || res.Dests != wd {
		return fail(fmt.Errorf("read back %d services and %d dests, want %d and %d", res.Services, res.Dests, ws, wd))
	}
	fmt.Fprintf(os.Stderr, "@@vmcpu end %d %d %s\n", res.Services, res.Dests, o.child)
	return res
}

// runChildProcess starts this binary with -child in a new network namespace and returns its result.
func runChildProcess(o options, name string, services, dests int) result {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		return result{Name: name, Err: err.Error()}
	}
	cmd := exec.CommandContext(ctx, self, "-child", name, "-services", fmt.Sprint(services),
		"-dests", fmt.Sprint(dests), "-window", fmt.Sprint(o.window), "-rbuf", fmt.Sprint(o.rbuf), "-svc-rbuf", fmt.Sprint(o.svcRbuf),
		"-cpuprofile", o.profile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	runErr := cmd.Run()
	var res *result
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			res = new(result)
			if err := json.Unmarshal([]byte(line), res); err != nil {
				return result{Name: name, Err: fmt.Sprintf("bad result %q: %v", line, err)}
			}
		}
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return result{Name: name, Err: fmt.Sprintf("timed out after %v", o.timeout)}
	case res == nil && runErr != nil:
		return result{Name: name, Err: fmt.Sprintf("child failed: %v", runErr)}
	case res == nil:
		return result{Name: name, Err: "child reported no result"}
	}
	return *res
}

func runAll(o options) error {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	fmt.Printf("ipvs-bench: %d services x %d dests = %d writes, kernel %s, raw window %d, each contender in a fresh netns\n",
		o.services, o.dests, o.services*(1+o.dests), unix.ByteSliceToString(uts.Release[:]), o.window)
	// Warm-up (not measured): the first service with the rr scheduler makes the kernel load ip_vs_rr,
	// and a full-size table makes the guest touch the memory the contenders' tables will use: under
	// emulation the first touch of guest memory costs host page faults, which otherwise fall on
	// whichever contender runs first (measured: the first contender of a run took 2-3x its time when
	// run later). The warm-up's namespace is gone before the first contender starts.
	if r := runChildProcess(o, floorName, o.services, o.dests); r.Err != "" {
		return fmt.Errorf("warm-up: %s", r.Err)
	}
	// Rounds interleave the contenders (A B C A B C ...) so that a burst of load on a shared host
	// spreads over all of them; each column is the median of the rounds.
	var runs []result
	for round := 1; round <= o.repeat; round++ {
		for _, e := range contenders {
			if !selected(o.only, e.name) {
				continue
			}
			waited := settle(2 * time.Minute)
			fmt.Fprintf(os.Stderr, "ipvs-bench: round %d/%d: %s (after %.1fs waiting for an idle CPU)\n",
				round, o.repeat, e.name, waited.Seconds())
			r := runChildProcess(o, e.name, o.services, o.dests)
			if r.Err != "" {
				fmt.Fprintf(os.Stderr, "ipvs-bench: %s: %s\n", e.name, r.Err)
			} else {
				fmt.Fprintf(os.Stderr, "ipvs-bench: %s: program %.2fs, read %.2fs\n", e.name, r.Program, r.Read)
			}
			runs = append(runs, r)
		}
	}
	results := medians(runs)
	fmt.Printf("Guest wall-clock seconds, median of %d (inflated by host load; hack/bench/run.sh also prints qemu CPU seconds):\n", o.repeat)
	printTable(os.Stdout, results)
	for _, r := range results {
		if r.Err != "" {
			return errors.New("some contenders failed")
		}
	}
	return nil
}

// medians folds the runs of each contender (in first-run order) into one result whose program and
// read times are the medians of its runs; a contender with any failed run reports that failure.
func medians(runs []result) []result {
	var order []string
	byName := map[string][]result{}
	for _, r := range runs {
		if _, ok := byName[r.Name]; !ok {
			order = append(order, r.Name)
		}
		byName[r.Name] = append(byName[r.Name], r)
	}
	median := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2
		}
		return v[len(v)/2]
	}
	var out []result
	for _, name := range order {
		rs := byName[name]
		failed := slices.IndexFunc(rs, func(r result) bool { return r.Err != "" })
		if failed >= 0 {
			out = append(out, rs[failed])
			continue
		}
		m := rs[0]
		m.Program = median(rs, func(r result) float64 { return r.Program })
		m.Read = median(rs, func(r result) float64 { return r.Read })
		out = append(out, m)
	}
	return out
}

func selected(only, name string) bool {
	if only == "" {
		return true
	}
	for _, s := range strings.Split(only, ",") {
		if s != "" && strings.Contains(name, s) {
			return true
		}
	}
	return false
}

func printTable(out io.Writer, results []result) {
	ref := func(name string) *result {
		for i := range results {
			if results[i].Name == name && results[i].Err == "" {
				return &results[i]
			}
		}
		return nil
	}
	floor, pkg := ref(floorName), ref(pkgIPVSName)
	ratio := func(v float64, r *result, f func(*result) float64) string {
		if r == nil || f(r) == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", v/f(r))
	}
	prog := func(r *result) float64 { return r.Program }
	read := func(r *result) float64 { return r.Read }
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "contender\tprogram s\tread s\tprogram/floor\tread/floor\tprogram/pkg-ipvs\tread/pkg-ipvs\twrites/s\t")
	for _, r := range results {
		if r.Err != "" {
			fmt.Fprintf(w, "%s\tFAILED: %s\t\t\t\t\t\t\t\n", r.Name, r.Err)
			continue
		}
		fmt.Fprintf(w, "%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%.0f\t\n", r.Name, r.Program, r.Read,
			ratio(r.Program, floor, prog), ratio(r.Read, floor, read),
			ratio(r.Program, pkg, prog), ratio(r.Read, pkg, read),
			float64(r.Services+r.Dests)/r.Program)
	}
	w.Flush()
	if pkg == nil {
		fmt.Fprintln(out, "(pkg/ipvs: not yet a contender, see TODO(pkg/ipvs) in hack/bench/contenders.go)")
	}
}

// startProfile starts a CPU profile when on; the function it returns stops it and prints it to
// stderr, base64, between "PROFILE-BEGIN name" and "PROFILE-END" lines (the VM's only way out is
// its console).
func startProfile(on bool) func(name string) {
	if !on {
		return func(string) {}
	}
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		fmt.Fprintln(os.Stderr, "ipvs-bench: cpu profile:", err)
		return func(string) {}
	}
	return func(name string) {
		pprof.StopCPUProfile()
		enc := base64.StdEncoding.EncodeToString(buf.Bytes())
		fmt.Fprintf(os.Stderr, "PROFILE-BEGIN %s\n", name)
		for len(enc) > 0 {
			n := min(len(enc), 76)
			fmt.Fprintln(os.Stderr, enc[:n])
			enc = enc[n:]
		}
		fmt.Fprintln(os.Stderr, "PROFILE-END")
	}
}
