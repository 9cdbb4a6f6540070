package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

func init() { subcommands = append(subcommands, newTaskstatsCommand) }

// taskstatsOptions are the flags of kubelvs taskstats.
type taskstatsOptions struct {
	output       string
	tid, tgid    bool
	listen       bool
	cpus         string
	probe        bool
	enableDelays bool
}

func newTaskstatsCommand() *cobra.Command {
	var o taskstatsOptions
	cmd := &cobra.Command{
		Use:   "taskstats [-o table|json] [--tid | --tgid] PID...",
		Short: "Per-task accounting from the kernel's TASKSTATS family: delays, CPU, memory, I/O",
		Long: `Print the kernel's per-task accounting (delays, CPU and memory use, I/O, context switches)
of processes, as the kernel's getdelays tool does.

By default each PID is a process, and the record is composed to match /proc/PID: the kernel's
thread-group reply (delays, CPU times and context switches of live and exited threads) plus the
replies of its live threads (faults, I/O counters, memory high-water marks). --tid prints one
thread's record, --tgid the kernel's thread-group reply as it is.

-o json prints one JSON object per line, per PID (or per exit with --listen); durations are in
ns (…Ns) or µs (…Us) as the kernel reports them.

--listen prints the final record of every task that exits (on --cpus, default all) until
interrupted; --probe reports what the environment allows (delay accounting, CAP_NET_ADMIN, host
PIDs). Needs CAP_NET_ADMIN; delays other than CPU need kernel.task_delayacct=1
(--enable-delayacct sets it) when the task started.`,
		Args: cobra.ArbitraryArgs, // PIDs, checked one by one
		RunE: o.run,
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	f.BoolVar(&o.tid, "tid", false, "the PIDs are thread ids: print each thread's own record")
	f.BoolVar(&o.tgid, "tgid", false, "print the kernel's thread-group reply as it is (no I/O counters or high-water marks on recent kernels)")
	f.BoolVar(&o.listen, "listen", false, "print the final record of every exiting task until interrupted")
	f.StringVar(&o.cpus, "cpus", "", "with --listen: the CPUs to listen on, as a list such as 0-3,8 (default all)")
	f.BoolVar(&o.probe, "probe", false, "report delay accounting, permission and PID namespace")
	f.BoolVar(&o.enableDelays, "enable-delayacct", false, "set kernel.task_delayacct=1 first (root)")
	return cmd
}

func (o *taskstatsOptions) run(cmd *cobra.Command, args []string) error {
	if o.output != "table" && o.output != "json" {
		return fmt.Errorf("unknown output format %q (table or json)", o.output)
	}
	if o.tid && o.tgid {
		return errors.New("--tid and --tgid exclude each other")
	}
	if o.enableDelays {
		if _, err := taskstats.SetDelayAccounting(true); err != nil {
			return err
		}
	}
	c, err := taskstats.Dial(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cmd.Context()
	switch {
	case o.probe:
		return printProbe(ctx, cmd.OutOrStdout(), c, o.output)
	case o.listen:
		return listenExits(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), c, o.cpus, o.output)
	case len(args) == 0:
		return errors.New("give at least one PID (or --listen, --probe)")
	}
	return o.printPIDs(cmd, c, args)
}

// printPIDs prints the record of each PID. With several PIDs, one that fails is reported and
// the others are printed; the command fails at the end.
func (o *taskstatsOptions) printPIDs(cmd *cobra.Command, c *taskstats.Client, args []string) error {
	var failed []error
	for _, a := range args {
		id, err := strconv.Atoi(a)
		if err != nil || id <= 0 {
			return fmt.Errorf("%q is not a PID", a)
		}
		s, err := o.record(cmd.Context(), c, id)
		if err != nil {
			if len(args) == 1 {
				return err
			}
			failed = append(failed, err)
			fmt.Fprintln(cmd.ErrOrStderr(), "kubelvs taskstats:", err)
			continue
		}
		if err := printStats(cmd.OutOrStdout(), o.output, id, s); err != nil {
			return err
		}
	}
	if o.output == "table" {
		if b, err := os.ReadFile("/proc/sys/kernel/task_delayacct"); err == nil && strings.TrimSpace(string(b)) == "0" {
			fmt.Fprintln(cmd.ErrOrStderr(), "note: kernel.task_delayacct=0: delays other than CPU are recorded only for tasks started while it is 1 (--enable-delayacct)")
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d PIDs failed: %w", len(failed), len(args), errors.Join(failed...))
	}
	return nil
}

// record asks for the kind of record the flags chose.
func (o *taskstatsOptions) record(ctx context.Context, c *taskstats.Client, id int) (*taskstats.Stats, error) {
	switch {
	case o.tid:
		return c.Thread(ctx, id)
	case o.tgid:
		return c.ThreadGroup(ctx, id)
	default:
		return c.Process(ctx, id)
	}
}

// statsJSON is the JSON form of a record; the field names are a contract with scripts.
type statsJSON struct {
	PID                   uint32 `json:"pid"`
	TGID                  uint32 `json:"tgid"`
	Comm                  string `json:"comm"`
	Version               uint16 `json:"version"`
	CPUCount              uint64 `json:"cpuCount"`
	CPUDelayTotalNs       int64  `json:"cpuDelayTotalNs"`
	CPURunRealTotalNs     int64  `json:"cpuRunRealTotalNs"`
	CPURunVirtualTotalNs  int64  `json:"cpuRunVirtualTotalNs"`
	BlkioCount            uint64 `json:"blkioCount"`
	BlkioDelayTotalNs     int64  `json:"blkioDelayTotalNs"`
	SwapinCount           uint64 `json:"swapinCount"`
	SwapinDelayTotalNs    int64  `json:"swapinDelayTotalNs"`
	FreepagesCount        uint64 `json:"freepagesCount"`
	FreepagesDelayTotalNs int64  `json:"freepagesDelayTotalNs"`
	ThrashingCount        uint64 `json:"thrashingCount"`
	ThrashingDelayTotalNs int64  `json:"thrashingDelayTotalNs"`
	CompactCount          uint64 `json:"compactCount"`
	CompactDelayTotalNs   int64  `json:"compactDelayTotalNs"`
	WpcopyCount           uint64 `json:"wpcopyCount"`
	WpcopyDelayTotalNs    int64  `json:"wpcopyDelayTotalNs"`
	IrqCount              uint64 `json:"irqCount"`
	IrqDelayTotalNs       int64  `json:"irqDelayTotalNs"`
	UtimeUs               int64  `json:"utimeUs"`
	StimeUs               int64  `json:"stimeUs"`
	MinorFaults           uint64 `json:"minorFaults"`
	MajorFaults           uint64 `json:"majorFaults"`
	ReadChar              uint64 `json:"readChar"`
	WriteChar             uint64 `json:"writeChar"`
	ReadSyscalls          uint64 `json:"readSyscalls"`
	WriteSyscalls         uint64 `json:"writeSyscalls"`
	ReadBytes             uint64 `json:"readBytes"`
	WriteBytes            uint64 `json:"writeBytes"`
	CancelledWriteBytes   uint64 `json:"cancelledWriteBytes"`
	Nvcsw                 uint64 `json:"nvcsw"`
	Nivcsw                uint64 `json:"nivcsw"`
	HiwaterRssKiB         uint64 `json:"hiwaterRssKiB"`
	HiwaterVMKiB          uint64 `json:"hiwaterVmKiB"`

	PPID                    uint32           `json:"ppid"`
	UID                     uint32           `json:"uid"`
	GID                     uint32           `json:"gid"`
	ExitCode                uint32           `json:"exitCode"`
	Flag                    uint8            `json:"flag"`
	Nice                    int8             `json:"nice"`
	Sched                   uint8            `json:"sched"`
	BeginTime               string           `json:"beginTime"`
	ElapsedUs               int64            `json:"elapsedUs"`
	ThreadGroupElapsedUs    int64            `json:"threadGroupElapsedUs"`
	UtimeScaledUs           int64            `json:"utimeScaledUs"`
	StimeScaledUs           int64            `json:"stimeScaledUs"`
	CPUScaledRunRealTotalNs int64            `json:"cpuScaledRunRealTotalNs"`
	Coremem                 uint64           `json:"coremem"`
	Virtmem                 uint64           `json:"virtmem"`
	ExeDev                  uint64           `json:"exeDev"`
	ExeInode                uint64           `json:"exeInode"`
	DelayMaxMin             map[string]delay `json:"delays,omitempty"`
	Raw                     []byte           `json:"raw,omitempty"`
}

// delay is the max/min of one category (struct taskstats v15 and later).
type delay struct {
	MaxNs int64  `json:"maxNs"`
	MinNs int64  `json:"minNs"`
	MaxAt string `json:"maxAt,omitempty"`
}

func toJSON(s *taskstats.Stats) statsJSON {
	j := statsJSON{
		PID: s.PID, TGID: s.TGID, Comm: s.Comm, Version: s.Version,
		CPUCount: s.CPU.Count, CPUDelayTotalNs: int64(s.CPU.Total),
		CPURunRealTotalNs: int64(s.CPURunRealTotal), CPURunVirtualTotalNs: int64(s.CPURunVirtualTotal),
		BlkioCount: s.BlkIO.Count, BlkioDelayTotalNs: int64(s.BlkIO.Total),
		SwapinCount: s.SwapIn.Count, SwapinDelayTotalNs: int64(s.SwapIn.Total),
		FreepagesCount: s.FreePages.Count, FreepagesDelayTotalNs: int64(s.FreePages.Total),
		ThrashingCount: s.Thrashing.Count, ThrashingDelayTotalNs: int64(s.Thrashing.Total),
		CompactCount: s.Compact.Count, CompactDelayTotalNs: int64(s.Compact.Total),
		WpcopyCount: s.WPCopy.Count, WpcopyDelayTotalNs: int64(s.WPCopy.Total),
		IrqCount: s.IRQ.Count, IrqDelayTotalNs: int64(s.IRQ.Total),
		UtimeUs: s.UserTime.Microseconds(), StimeUs: s.SystemTime.Microseconds(),
		MinorFaults: s.MinorFaults, MajorFaults: s.MajorFaults,
		ReadChar: s.ReadChar, WriteChar: s.WriteChar, ReadSyscalls: s.ReadSyscalls, WriteSyscalls: s.WriteSyscalls,
		ReadBytes: s.ReadBytes, WriteBytes: s.WriteBytes, CancelledWriteBytes: s.CancelledWriteBytes,
		Nvcsw: s.Nvcsw, Nivcsw: s.Nivcsw, HiwaterRssKiB: s.HiwaterRSSKiB, HiwaterVMKiB: s.HiwaterVMKiB,
		PPID: s.PPID, UID: s.UID, GID: s.GID, ExitCode: s.ExitCode, Flag: s.Flag, Nice: s.Nice, Sched: s.Sched,
		ElapsedUs: s.Elapsed.Microseconds(), ThreadGroupElapsedUs: s.ThreadGroupElapsed.Microseconds(),
		UtimeScaledUs: s.UserTimeScaled.Microseconds(), StimeScaledUs: s.SystemTimeScaled.Microseconds(),
		CPUScaledRunRealTotalNs: int64(s.CPUScaledRunRealTotal), Coremem: s.CoreMem, Virtmem: s.VirtMem,
		ExeDev: s.ExeDev, ExeInode: s.ExeInode, Raw: s.Raw,
	}
	if !s.BeginTime.IsZero() && s.BeginTime.Unix() != 0 {
		j.BeginTime = s.BeginTime.UTC().Format(time.RFC3339)
	}
	if s.Version >= 15 {
		j.DelayMaxMin = map[string]delay{}
		for _, c := range categories(s) {
			d := delay{MaxNs: int64(c.d.Max), MinNs: int64(c.d.Min)}
			if !c.d.MaxAt.IsZero() {
				d.MaxAt = c.d.MaxAt.UTC().Format(time.RFC3339Nano)
			}
			j.DelayMaxMin[c.json] = d
		}
	}
	return j
}

type category struct {
	name, json string
	d          taskstats.Delay
}

func categories(s *taskstats.Stats) []category {
	return []category{{"CPU", "cpu", s.CPU}, {"IO", "blkio", s.BlkIO}, {"SWAP", "swapin", s.SwapIn},
		{"RECLAIM", "freepages", s.FreePages}, {"THRASHING", "thrashing", s.Thrashing},
		{"COMPACT", "compact", s.Compact}, {"WPCOPY", "wpcopy", s.WPCopy}, {"IRQ", "irq", s.IRQ}}
}

func printStats(w io.Writer, format string, id int, s *taskstats.Stats) error {
	if format == "json" {
		b, err := json.Marshal(toJSON(s))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	pid, tgid := s.PID, s.TGID
	if pid == 0 { // a bare TGID reply names nobody
		tgid = uint32(id)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PID %d\tTGID %d\tcomm %q\tstruct taskstats v%d\n", pid, tgid, s.Comm, s.Version)
	if s.PID != 0 {
		fmt.Fprintf(tw, "ppid %d\tuid %d gid %d\tnice %d policy %d flags %#x\tstarted %s, %s ago\n",
			s.PPID, s.UID, s.GID, s.Nice, s.Sched, s.Flag, s.BeginTime.UTC().Format(time.RFC3339), s.Elapsed.Round(time.Millisecond))
	}
	if s.ExitCode != 0 {
		fmt.Fprintf(tw, "exit code %#x\n", s.ExitCode)
	}
	fmt.Fprintln(tw)
	maxMin := s.Version >= 15
	head := "delay\tcount\tdelay total\tdelay average"
	if maxMin {
		head += "\tdelay max\tdelay min"
	}
	fmt.Fprintln(tw, head+"\t")
	for _, c := range categories(s) {
		avg := time.Duration(0)
		if c.d.Count > 0 {
			avg = c.d.Total / time.Duration(c.d.Count)
		}
		line := fmt.Sprintf("%s\t%d\t%v\t%v", c.name, c.d.Count, c.d.Total, avg)
		if maxMin {
			line += fmt.Sprintf("\t%v\t%v", c.d.Max, c.d.Min)
			if !c.d.MaxAt.IsZero() {
				line += "\tat " + c.d.MaxAt.Format(time.RFC3339Nano)
			}
		}
		fmt.Fprintln(tw, line+"\t")
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "cpu\trun real %v\trun virtual %v\tuser %v\tsystem %v\t\n", s.CPURunRealTotal, s.CPURunVirtualTotal, s.UserTime, s.SystemTime)
	fmt.Fprintf(tw, "faults\tminor %d\tmajor %d\t\t\t\n", s.MinorFaults, s.MajorFaults)
	fmt.Fprintf(tw, "memory\thiwater rss %d KiB\thiwater vm %d KiB\tcoremem %d MB·µs\tvirtmem %d MB·µs\t\n", s.HiwaterRSSKiB, s.HiwaterVMKiB, s.CoreMem, s.VirtMem)
	fmt.Fprintf(tw, "io\trchar %d\twchar %d\tsyscr %d\tsyscw %d\t\n", s.ReadChar, s.WriteChar, s.ReadSyscalls, s.WriteSyscalls)
	fmt.Fprintf(tw, "\tread_bytes %d\twrite_bytes %d\tcancelled %d\t\t\n", s.ReadBytes, s.WriteBytes, s.CancelledWriteBytes)
	fmt.Fprintf(tw, "switches\tvoluntary %d\tinvoluntary %d\t\t\t\n", s.Nvcsw, s.Nivcsw)
	fmt.Fprintln(tw)
	return tw.Flush()
}

func printProbe(ctx context.Context, w io.Writer, c *taskstats.Client, format string) error {
	env, err := c.Probe(ctx)
	if err != nil {
		return err
	}
	perr := ""
	if env.PermissionError != nil {
		perr = env.PermissionError.Error()
	}
	if format == "json" {
		b, err := json.Marshal(struct {
			DelayAccounting      bool   `json:"delayAccounting"`
			DelayAccountingKnown bool   `json:"delayAccountingKnown"`
			Permitted            bool   `json:"permitted"`
			PermissionError      string `json:"permissionError,omitempty"`
			HostPIDs             bool   `json:"hostPIDs"`
			Version              uint16 `json:"version"`
		}{env.DelayAccounting, env.DelayAccountingKnown, env.Permitted, perr, env.HostPIDs, env.Version})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	delay := fmt.Sprint(env.DelayAccounting)
	if !env.DelayAccountingKnown {
		delay = "unknown (no kernel.task_delayacct: on unless booted with nodelayacct)"
	}
	fmt.Fprintf(w, "delay accounting: %s\npermitted: %v %s\nhost PIDs: %v\nstruct taskstats version: %d\n",
		delay, env.Permitted, perr, env.HostPIDs, env.Version)
	return nil
}

func listenExits(ctx context.Context, w, errW io.Writer, c *taskstats.Client, cpus, format string) error {
	l, err := c.Listen(ctx, &taskstats.ListenConfig{CPUs: cpus})
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(errW, "listening for exits on CPUs %s\n", l.CPUs())
	return printExits(ctx, w, errW, l, format)
}

// exitSource is where printExits reads exit records: a *taskstats.Listener.
type exitSource interface {
	Receive(ctx context.Context) (*taskstats.Exit, error)
}

// printExits prints exit records until ctx ends (a clean stop) or the listener does. An error
// about one record (drops reported by the kernel, a record that does not decode) is reported
// and listening goes on, as the listener itself does: one bad record must not end a session
// that would go on to print good ones.
func printExits(ctx context.Context, w, errW io.Writer, src exitSource, format string) error {
	for {
		e, err := src.Receive(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, taskstats.ErrStopped):
			return err
		case err != nil:
			fmt.Fprintln(errW, "kubelvs taskstats:", err)
			continue
		}
		if err := printExit(w, format, e); err != nil {
			return err
		}
	}
}

func printExit(w io.Writer, format string, e *taskstats.Exit) error {
	if err := printStats(w, format, int(e.PID), &e.Task); err != nil {
		return err
	}
	if e.Group != nil {
		if format == "table" {
			fmt.Fprintf(w, "thread group %d totals:\n", e.TGID)
		}
		if err := printStats(w, format, int(e.TGID), e.Group); err != nil {
			return err
		}
	}
	if format == "table" {
		fmt.Fprintln(w, "---")
	}
	return nil
}
