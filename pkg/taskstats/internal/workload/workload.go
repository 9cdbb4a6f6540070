// Package workload is a child-process workload for the taskstats tests: it burns CPU, reads and
// writes files and touches memory on a chosen number of OS threads, reports that it is done, and
// then sits still (so that its counters do not move while a test compares them) until its standard
// input closes, when it exits with the requested code.
//
// A test binary runs it by re-executing itself with the environment variable [Env] set to the
// workload's arguments (see [Command]).
package workload

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Env is the environment variable that makes a test binary run the workload instead of its tests.
const Env = "KUBELVS_TASKSTATS_WORKLOAD"

// Spec is what one workload process does.
type Spec struct {
	Threads     int           // OS threads doing the work (each locked to its goroutine), at least 1
	ExitThreads int           // extra OS threads that do the same work and then exit
	Burn        time.Duration // CPU time to burn per thread
	WriteBytes  int           // bytes each thread writes to its own file in Dir and fsyncs
	ReadBytes   int           // bytes each thread reads back from storage (page cache dropped first)
	CancelBytes int           // bytes each thread dirties and then truncates away
	TouchMiB    int           // MiB of anonymous memory each thread touches
	Dir         string        // where the files go (not tmpfs, so that block I/O is counted)
	ExitCode    int
}

func (s Spec) args() string {
	return fmt.Sprintf("-threads=%d -exitthreads=%d -burn=%s -write=%d -read=%d -cancel=%d -touch=%d -dir=%s -exit=%d",
		s.Threads, s.ExitThreads, s.Burn, s.WriteBytes, s.ReadBytes, s.CancelBytes, s.TouchMiB, s.Dir, s.ExitCode)
}

// Command returns a command that runs the workload in the current (test) binary. Its stdin is a
// pipe the caller keeps open while it wants the process to live.
func Command(s Spec) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), Env+"="+s.args(), "GOGC=off", "GOMAXPROCS=2")
	cmd.Stderr = os.Stderr
	return cmd
}

// Process is a running workload.
type Process struct {
	Cmd   *exec.Cmd
	PID   int
	TIDs  []int // the threads that did the work and are still alive
	stdin io.WriteCloser
}

// Start starts the workload and waits until it has done its work.
func Start(s Spec) (*Process, error) {
	cmd := Command(s)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, PID: cmd.Process.Pid, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("workload %d: %w", p.PID, err)
	}
	f := strings.Fields(line)
	if len(f) < 1 || f[0] != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("workload %d said %q", p.PID, line)
	}
	for _, t := range f[1:] {
		tid, err := strconv.Atoi(t)
		if err != nil {
			return nil, fmt.Errorf("workload %d said %q", p.PID, line)
		}
		p.TIDs = append(p.TIDs, tid)
	}
	return p, nil
}

// Finish closes the workload's stdin, which makes it exit, and waits for it.
func (p *Process) Finish() error {
	_ = p.stdin.Close()
	return p.Cmd.Wait()
}

func init() {
	if _, ok := os.LookupEnv(Env); ok {
		// Keep the main goroutine on the main thread (package init runs there), so that worker
		// goroutines lock threads of their own: a locked goroutine that exits on the main
		// thread would leave it wedged instead of ending it.
		runtime.LockOSThread()
	}
}

// Main runs the workload when Env is set (call it first thing in TestMain) and never returns
// then; otherwise it returns at once.
func Main() {
	args, ok := os.LookupEnv(Env)
	if !ok {
		return
	}
	var s Spec
	fs := flag.NewFlagSet("workload", flag.ExitOnError)
	fs.IntVar(&s.Threads, "threads", 1, "")
	fs.IntVar(&s.ExitThreads, "exitthreads", 0, "")
	fs.DurationVar(&s.Burn, "burn", 0, "")
	fs.IntVar(&s.WriteBytes, "write", 0, "")
	fs.IntVar(&s.ReadBytes, "read", 0, "")
	fs.IntVar(&s.CancelBytes, "cancel", 0, "")
	fs.IntVar(&s.TouchMiB, "touch", 0, "")
	fs.StringVar(&s.Dir, "dir", os.TempDir(), "")
	fs.IntVar(&s.ExitCode, "exit", 0, "")
	_ = fs.Parse(strings.Fields(args))
	os.Exit(run(s))
}

var sink atomic.Uint64 // keeps the burn loop's result alive; threads store to it concurrently

func run(s Spec) int {
	var (
		mu   sync.Mutex
		tids []int
		wg   sync.WaitGroup
		errs = make(chan error, s.Threads+s.ExitThreads)
	)
	park := make(chan struct{})
	for i := range s.Threads + s.ExitThreads {
		wg.Add(1)
		go func() {
			runtime.LockOSThread() // never unlocked: an exiting goroutine takes its thread along
			err := work(s, i)
			if i >= s.Threads {
				wg.Done()
				errs <- err
				return // the thread exits
			}
			mu.Lock()
			tids = append(tids, unix.Gettid())
			mu.Unlock()
			wg.Done()
			errs <- err
			<-park
		}()
	}
	wg.Wait()
	for range s.Threads + s.ExitThreads {
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, "workload:", err)
			return 99
		}
	}
	time.Sleep(50 * time.Millisecond) // let exiting threads finish exiting
	out := "ready"
	for _, t := range tids {
		out += " " + strconv.Itoa(t)
	}
	fmt.Println(out)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return s.ExitCode
}

// work does what s asks of one thread (i numbers the thread): burn CPU, touch memory, write
// and read a file on disk, leave cancelled writes.
func work(s Spec, i int) error {
	if s.Burn > 0 {
		burn(s.Burn, i)
	}
	if s.TouchMiB > 0 {
		if err := touch(s.TouchMiB); err != nil {
			return err
		}
	}
	if s.WriteBytes > 0 || s.ReadBytes > 0 {
		if err := writeAndRead(s, i); err != nil {
			return err
		}
	}
	if s.CancelBytes > 0 {
		if err := cancelWrites(s, i); err != nil {
			return err
		}
	}
	return nil
}

// burn spins until the thread has used d of CPU time.
func burn(d time.Duration, i int) {
	var ru unix.Rusage
	start := threadCPU(&ru)
	x := uint64(i)
	for threadCPU(&ru)-start < d {
		for range 100000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	sink.Store(x)
}

// touch faults in mib MiB of anonymous memory, kept mapped: the high-water marks stay up
// either way.
func touch(mib int) error {
	m, err := unix.Mmap(-1, 0, mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	for j := 0; j < len(m); j += 4096 {
		m[j] = 1
	}
	return nil
}

// writeAndRead writes s.WriteBytes (or s.ReadBytes) to a file on disk, syncs it, and reads
// s.ReadBytes of it back past the page cache.
func writeAndRead(s Spec, i int) error {
	name := filepath.Join(s.Dir, fmt.Sprintf("workload-%d-%d", os.Getpid(), i))
	defer os.Remove(name)
	size := max(s.WriteBytes, s.ReadBytes)
	buf := make([]byte, 64<<10)
	for j := range buf {
		buf[j] = byte(j)
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	for n := 0; n < size; n += len(buf) {
		if _, err := f.Write(buf[:min(len(buf), size-n)]); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if s.ReadBytes > 0 {
		if err := readBack(f, buf, s.ReadBytes); err != nil {
			return err
		}
	}
	return f.Close()
}

// readBack drops f's pages from the cache and reads n bytes of it from the disk.
func readBack(f *os.File, buf []byte, n int) error {
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	for read := 0; read < n; {
		k, err := f.Read(buf[:min(len(buf), n-read)])
		if err != nil {
			return err
		}
		read += k
	}
	return nil
}

// cancelWrites dirties s.CancelBytes of page cache and truncates it before writeback: the
// kernel counts them as cancelled_write_bytes.
func cancelWrites(s Spec, i int) error {
	name := filepath.Join(s.Dir, fmt.Sprintf("workload-cancel-%d-%d", os.Getpid(), i))
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer os.Remove(name)
	defer f.Close()
	if _, err := f.Write(make([]byte, s.CancelBytes)); err != nil {
		return err
	}
	return f.Truncate(0)
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU(ru *unix.Rusage) time.Duration {
	_ = unix.Getrusage(unix.RUSAGE_THREAD, ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
