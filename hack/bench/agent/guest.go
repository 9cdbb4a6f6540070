package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	mobyipvs "github.com/moby/ipvs"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/hack/bench/kubeproxy"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

const (
	agentNS     = "bench"      // the agent's "node"
	applyNS     = "benchapply" // pkg/ipvs.Apply and the kube-proxy-style resyncs
	metricsPort = 9800
	probePort   = 9801
	clkTck      = 100 // USER_HZ of /proc/PID/stat
)

func logf(format string, args ...any) {
	fmt.Printf("agent-bench: "+format+"\n", args...)
}

func sh(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

var netnsFiles []*os.File

// netns adds a network namespace with lo up and returns an IPVS client in it.
func netns(name string) (*ipvs.Client, error) {
	if err := sh("/sbin/ip", "netns", "add", name); err != nil {
		return nil, err
	}
	if err := sh("/sbin/ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		return nil, err
	}
	// The client opens its dump socket later, in the fd's namespace: keep f open (and out of the
	// garbage collector's reach) for the process's life.
	netnsFiles = append(netnsFiles, f)
	return ipvs.New(context.Background(), &ipvs.Config{NetNS: int(f.Fd())})
}

// agentProc is one `kubelvs agent` process.
type agentProc struct {
	o       *options
	cmd     *exec.Cmd
	started time.Time
	n       int
}

func (a *agentProc) start(auditPeriod time.Duration) error {
	a.n++
	logFile, err := os.Create(fmt.Sprintf("/tmp/agent-%d.log", a.n))
	if err != nil {
		return err
	}
	a.cmd = exec.Command(a.o.kubelvs, "agent", "--node-name", benchNode, "--kubeconfig", a.o.kubeconfig,
		"--netns", "/run/netns/"+agentNS, "--state-dir", "/tmp/agent-state", "--audit-period", auditPeriod.String(),
		"--drain-poll-period", "500ms", "--lease-namespace", "default",
		"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(metricsPort), "--metrics-secure=false",
		"--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(probePort))
	a.cmd.Args = append(a.cmd.Args, a.o.agentFlags...)
	if a.o.profile {
		a.cmd.Args = append(a.cmd.Args, pprofFlag())
	}
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	a.started = time.Now()
	return a.cmd.Start()
}

// waitReady returns the time from start to ready: it watches the agent's log for its ready
// line (the agent logs it just before /readyz turns ready), then confirms with one /readyz.
// Polling /readyz itself every few milliseconds cost the agent several per cent of the guest's
// one CPU (an HTTP request each), which the measured start-up then included.
func (a *agentProc) waitReady(timeout time.Duration) (time.Duration, error) {
	name := fmt.Sprintf("/tmp/agent-%d.log", a.n)
	var off int64
	var carry []byte
	hc := &http.Client{Timeout: 10 * time.Second}
	for time.Since(a.started) < timeout {
		if a.cmd.ProcessState != nil {
			return 0, errors.New("agent exited")
		}
		if fi, err := os.Stat(name); err == nil && fi.Size() > off {
			b, err := readFrom(name, off)
			if err != nil {
				return 0, err
			}
			off += int64(len(b))
			carry = append(carry, b...)
			if strings.Contains(string(carry), readyLine) {
				d := time.Since(a.started)
				// The line comes just before readiness turns: /readyz follows within moments.
				for i := 0; ; i++ {
					resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort))
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							break
						}
					}
					if i == 1000 && err != nil {
						return 0, fmt.Errorf("the agent logged ready but /readyz does not answer a second later: %w", err)
					}
					if i == 1000 {
						return 0, errors.New("the agent logged ready but /readyz is not ready a second later")
					}
					time.Sleep(time.Millisecond)
				}
				return d, nil
			}
			if i := strings.LastIndexByte(string(carry), '\n'); i >= 0 {
				carry = carry[i+1:]
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("agent not ready within %v (log %s)", timeout, name)
}

// readyLine is the message of the agent's log line when it is ready.
const readyLine = `"msg":"ready: table adopted and first sync done"`

func readFrom(name string, off int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

func (a *agentProc) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	_, _ = a.cmd.Process.Wait()
}

// rss returns VmRSS in bytes.
func (a *agentProc) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpu returns utime+stime.
func (a *agentProc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	// After the comm: state is field 3, utime 14 and stime 15 (1-based over the whole line).
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(u+s) * time.Second / clkTck, nil
}

// scrape reads the agent's own metrics (the scrape also makes the agent's IPVS collector read the
// table once: never during a measured window).
func scrape(names ...string) ([]sample, time.Duration, error) {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "name[]=" + n
	}
	start := time.Now()
	hc := &http.Client{Timeout: 5 * time.Minute}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics?%s", metricsPort, strings.Join(q, "&")))
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	ss, err := parseMetrics(resp.Body)
	return ss, time.Since(start), err
}

const (
	mRequests = "kubelvs_agent_netlink_requests_total"
	mAudit    = "kubelvs_agent_audit_duration_seconds"
	mLatency  = "kubelvs_agent_network_programming_duration_seconds"
	mSync     = "kubelvs_agent_sync_duration_seconds"
)

// informerSync times a cache of what the agent watches from start to synced.
func informerSync(o *options) (time.Duration, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	c, err := cache.New(cfg, cache.Options{Scheme: scheme()})
	if err != nil {
		return 0, err
	}
	for _, obj := range []client.Object{&v1alpha1.VirtualService{}, &corev1.Service{}, &discoveryv1.EndpointSlice{}, &v1alpha1.BackendPool{}, &corev1.Node{}} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			return 0, err
		}
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return 0, errors.New("cache did not sync")
	}
	d := time.Since(start)
	var l v1alpha1.VirtualServiceList
	if err := c.List(ctx, &l); err != nil {
		return 0, fmt.Errorf("list the cache's VirtualServices: %w", err)
	}
	if len(l.Items) < o.vs {
		return 0, fmt.Errorf("cache holds %d VirtualServices (want %d)", len(l.Items), o.vs)
	}
	return d, nil
}

// timedTable reads the whole table three times and returns it and the median time.
func timedTable(c *ipvs.Client) ([]ipvs.TableEntry, time.Duration, error) {
	var ds []time.Duration
	var t []ipvs.TableEntry
	for range 3 {
		start := time.Now()
		var err error
		if t, err = c.Table(context.Background()); err != nil {
			return nil, 0, err
		}
		ds = append(ds, time.Since(start))
	}
	return t, median(ds), nil
}

func checkTable(t []ipvs.TableEntry, o *options) error {
	dests := 0
	for _, e := range t {
		dests += len(e.Destinations)
	}
	if len(t) != o.vs || dests != o.vs*o.dests {
		return fmt.Errorf("table has %d services and %d destinations, want %d and %d", len(t), dests, o.vs, o.vs*o.dests)
	}
	return nil
}

// swap returns endpoint 0's address after change: the one it does not have now.
func swap(i int, cur netip.Addr) netip.Addr {
	if cur == epAddr(i, 0) {
		return epAddr(i, altSlot)
	}
	return epAddr(i, 0)
}

type results struct {
	changes                     []time.Duration
	acked, seen                 []time.Duration
	resyncs                     []time.Duration
	resyncCounts                kubeproxy.Counts
	histP50, histP99, histN     float64
	syncP50, syncP99, syncN     float64
	converge, informers, apply  time.Duration
	tableRead                   time.Duration
	restartReady                time.Duration
	restartWrites, restartDumps float64
	audits                      float64
	auditTime                   time.Duration
	auditWrites                 float64
	idleWindow                  time.Duration
	idleRequests                float64
	idleCPU                     time.Duration
	rssConverged, rssRestarted  int64
	rssAfterScrapesBytes        int64
	scrapeTime                  time.Duration
	auditPeriod                 time.Duration
}

func run(o *options) (err error) {
	if o.kubelvs == "" {
		return errors.New("-kubelvs is required")
	}
	a := &agentProc{o: o}
	defer func() {
		if err != nil {
			_ = writeLogTail(a.n)
		}
	}()
	ctx := context.Background()
	k8s, err := newClient(o)
	if err != nil {
		return err
	}
	var r results
	prof := &profiler{on: o.profile}
	defer prof.wait()
	logf("%d VirtualServices x %d endpoints; %d changes, %d full resyncs, idle window %v", o.vs, o.dests, o.changes, o.resyncs, o.idle)

	// 2b. The informers' initial sync, alone.
	if r.informers, err = informerSync(o); err != nil {
		return fmt.Errorf("informer sync: %w", err)
	}
	logf("informers' initial sync: %v", r.informers)

	// 2a. The agent from an empty kernel.
	kernel, err := netns(agentNS)
	if err != nil {
		return err
	}
	cpu0, err := readGuestCPU()
	if err != nil {
		return err
	}
	if err := a.start(time.Hour); err != nil {
		return err
	}
	prof.cpu("converge", o.profileFor)
	if r.converge, err = a.waitReady(30 * time.Minute); err != nil {
		return err
	}
	phaseCPU("convergence", cpu0, a, 0)
	logf("agent converged from empty (ready) in %v", r.converge)
	table, tr, err := timedTable(kernel)
	if err != nil {
		return err
	}
	if err := checkTable(table, o); err != nil {
		return fmt.Errorf("after the agent's convergence: %w", err)
	}
	r.tableRead = tr
	logf("one Table read (median of 3): %v", tr)

	// 2c. pkg/ipvs.Apply of the same table into an empty namespace.
	applyK, err := netns(applyNS)
	if err != nil {
		return err
	}
	var ops []ipvs.Op
	want := make([]kubeproxy.Service, 0, len(table))
	keys := map[netip.Addr]lvs.ServiceKey{}
	for i := range table {
		e := &table[i]
		ops = append(ops, ipvs.Op{Kind: ipvs.AddService, Service: &e.Service.Service})
		ks := kubeproxy.Service{Addr: e.Address, Port: e.Port, Scheduler: e.Scheduler}
		for j := range e.Destinations {
			d := &e.Destinations[j].Destination
			ops = append(ops, ipvs.Op{Kind: ipvs.AddDestination, Service: &e.Service.Service, Destination: d})
			ks.Dests = append(ks.Dests, kubeproxy.Dest{Addr: d.Address, Port: d.Port, Weight: int(d.Weight)})
		}
		want = append(want, ks)
		keys[e.Address] = e.ServiceKey
	}
	start := time.Now()
	if _, err := applyK.Apply(ctx, ops); err != nil {
		return fmt.Errorf("pkg/ipvs.Apply: %w", err)
	}
	r.apply = time.Since(start)
	logf("pkg/ipvs.Apply of the same table (%d operations): %v", len(ops), r.apply)

	// 1b. kube-proxy-style full resyncs on the same table, one service changed before each.
	h, err := mobyipvs.New("/run/netns/" + applyNS)
	if err != nil {
		return fmt.Errorf("moby/ipvs: %w", err)
	}
	for k := range o.resyncs {
		i := changeTarget(k, len(want))
		s := &want[i]
		for j := range s.Dests {
			if vi := vsIndex(s.Addr); s.Dests[j].Addr == epAddr(vi, 0) || s.Dests[j].Addr == epAddr(vi, altSlot) {
				s.Dests[j].Addr = swap(vi, s.Dests[j].Addr)
				break
			}
		}
		start := time.Now()
		n, err := kubeproxy.Resync(h, want)
		if err != nil {
			return fmt.Errorf("full resync: %w", err)
		}
		d := time.Since(start)
		r.resyncs = append(r.resyncs, d)
		r.resyncCounts = n
		logf("full resync %d/%d: %v (%d gets, %d dumps, %d writes)", k+1, o.resyncs, d, n.Gets, n.Dumps, n.Writes)
	}
	h.Close()

	// 1a. EndpointSlice changes: one at a time (each after the previous one is in the kernel),
	// or with -change-interval, one every interval whatever the agent has done (open loop).
	prof.wait()
	if o.changeInterval > 0 {
		prof.cpu("changes", time.Duration(o.changes)*o.changeInterval)
		if o.trace {
			prof.trace("changes", time.Duration(o.changes)*o.changeInterval)
		}
	}
	ct, err := runChanges(ctx, o, k8s, kernel, keys)
	if err != nil {
		return err
	}
	r.changes, r.acked, r.seen = ct.kernel, ct.acked, ct.seen
	prof.wait()
	prof.heap("heap-changes")
	changed := map[int]bool{}
	for k := range o.changes {
		changed[changeTarget(k, o.vs)] = true
	}
	var lastRSS int64
	// Wait for the removed endpoints' drains to end (the restart must find nothing to do).
	deadline := time.Now().Add(2 * time.Minute)
	for i := range changed {
		for {
			ds, err := kernel.Destinations(ctx, keys[vsAddr(i)])
			if err != nil {
				return err
			}
			if len(ds) == o.dests || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if lastRSS, err = a.rss(); err != nil {
		return err
	}
	r.rssConverged = lastRSS
	// The agent's own histogram (one scrape, after the changes).
	ss, _, err := scrape(mLatency, mSync)
	if err != nil {
		return fmt.Errorf("scrape: %w", err)
	}
	r.histP50, r.histN = histQuantile(ss, mLatency, 0.5)
	r.histP99, _ = histQuantile(ss, mLatency, 0.99)
	r.syncP50, r.syncN = histQuantile(ss, mSync, 0.5)
	r.syncP99, _ = histQuantile(ss, mSync, 0.99)
	a.stop()

	// 3. Restart with the table programmed.
	r.auditPeriod = o.idle + 2*time.Minute
	if o.auditPeriod > 0 {
		r.auditPeriod = o.auditPeriod
	}
	if cpu0, err = readGuestCPU(); err != nil {
		return err
	}
	if err := a.start(r.auditPeriod); err != nil {
		return err
	}
	prof.cpu("restart", o.profileFor)
	if r.restartReady, err = a.waitReady(30 * time.Minute); err != nil {
		return err
	}
	phaseCPU("restart", cpu0, a, 0)
	if r.rssRestarted, err = a.rss(); err != nil {
		return err
	}
	prof.wait()
	ss, st, err := scrape(mRequests, mAudit)
	if err != nil {
		return err
	}
	r.scrapeTime = st
	r.restartWrites, r.restartDumps = sum(ss, mRequests, `kind="write"`), sum(ss, mRequests, `kind="dump"`)
	logf("restart: ready in %v, %v writes, %v dumps (scrape took %v)", r.restartReady, r.restartWrites, r.restartDumps, st)

	// 5, 6. Idle window.
	before := sum(ss, mRequests)
	c0, err := a.cpu()
	if err != nil {
		return err
	}
	w0 := time.Now()
	time.Sleep(o.idle)
	c1, err := a.cpu()
	if err != nil {
		return err
	}
	r.idleWindow, r.idleCPU = time.Since(w0), c1-c0
	ss, _, err = scrape(mRequests, mAudit)
	if err != nil {
		return err
	}
	r.idleRequests = sum(ss, mRequests) - before
	if sum(ss, mAudit+"_count") != 0 {
		return errors.New("an audit ran in the idle window: lengthen the audit period")
	}
	logf("idle %v: %v netlink requests, %v CPU", r.idleWindow, r.idleRequests, r.idleCPU)

	// 4. The first audit (no drift).
	writesBefore := sum(ss, mRequests, `kind="write"`)
	time.Sleep(time.Until(a.started.Add(r.restartReady + r.auditPeriod*11/10 + 5*time.Second)))
	for range 30 {
		if ss, _, err = scrape(mRequests, mAudit); err != nil {
			return err
		}
		if sum(ss, mAudit+"_count") > 0 {
			break
		}
		time.Sleep(10 * time.Second)
	}
	r.audits = sum(ss, mAudit+"_count")
	if r.audits == 0 {
		return errors.New("no audit ran")
	}
	r.auditTime = time.Duration(sum(ss, mAudit+"_sum") / r.audits * float64(time.Second))
	r.auditWrites = sum(ss, mRequests, `kind="write"`) - writesBefore
	if r.rssAfterScrapesBytes, err = a.rss(); err != nil {
		return err
	}
	logf("audit: %v audits, %v each, %v writes", r.audits, r.auditTime, r.auditWrites)
	a.stop()
	if err := writeLogTail(a.n); err != nil {
		logf("agent log: %v", err)
	}
	fmt.Print(report(o, &r))
	return nil
}

func vsIndex(a netip.Addr) int {
	b := a.As4()
	return int(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])) - vsBase
}

func hasDest(ds []ipvs.Destination, a netip.Addr) bool {
	for _, d := range ds {
		if d.Address == a && d.Weight > 0 {
			return true
		}
	}
	return false
}

// writeLogTail prints the agents' error lines, if any, their start-up phases and their slow
// syncs (with where the time went).
func writeLogTail(n int) error {
	for i := 1; i <= n; i++ {
		b, err := os.ReadFile(filepath.Join("/tmp", fmt.Sprintf("agent-%d.log", i)))
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "ERROR") || strings.Contains(l, "ready: table adopted") || strings.Contains(l, "adopted the kernel") ||
				strings.Contains(l, `"msg":"starting"`) || strings.Contains(l, `"msg":"slow sync"`) {
				logf("agent %d log: %s", i, l)
			}
		}
	}
	return nil
}

// pending is one change not yet seen in the kernel.
type pending struct {
	k     int
	key   lvs.ServiceKey
	slice string
	next  netip.Addr
	t0    time.Time
}

// changeTimes are the parts of the changes' latencies the guest can see besides the agent's.
type changeTimes struct {
	kernel []time.Duration // just before the API update to the destination in the kernel
	acked  []time.Duration // to the API update's response
	seen   []time.Duration // to a bare watch in the guest seeing it (watchFloor)
}

// runChanges makes o.changes EndpointSlice changes and returns each one's time from just before
// its API update to its new destination being in the kernel (polled every 2 ms).
func runChanges(ctx context.Context, o *options, k8s client.Client, kernel *ipvs.Client, keys map[netip.Addr]lvs.ServiceKey) (*changeTimes, error) {
	lat := make([]time.Duration, o.changes)
	ct := &changeTimes{kernel: lat, acked: make([]time.Duration, o.changes), seen: make([]time.Duration, o.changes)}
	floor, err := startWatchFloor(ctx, o)
	if err != nil {
		return nil, err
	}
	defer floor.stop()
	all := make([]*pending, o.changes)
	// seen reads when the bare watch saw each change (it runs beside the agent: it may see a
	// change after the agent has programmed it).
	seen := func() (*changeTimes, error) {
		deadline := time.Now().Add(time.Minute)
		for _, p := range all {
			for {
				if at, ok := floor.at(p.slice, p.next.String()); ok {
					ct.seen[p.k] = at.Sub(p.t0)
					break
				}
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("the bare watch did not see change %d", p.k)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		return ct, nil
	}
	issue := func(k int) (*pending, error) {
		i := changeTarget(k, o.vs)
		var es discoveryv1.EndpointSlice
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: benchNS, Name: sliceName(i)}, &es); err != nil {
			return nil, err
		}
		cur, err := netip.ParseAddr(es.Endpoints[0].Addresses[0])
		if err != nil {
			return nil, err
		}
		p := &pending{k: k, key: keys[vsAddr(i)], slice: es.Name, next: swap(i, cur)}
		if _, ok := keys[vsAddr(i)]; !ok {
			return nil, fmt.Errorf("no service %v in the table", vsAddr(i))
		}
		es.Endpoints[0].Addresses[0] = p.next.String()
		if es.Annotations == nil {
			es.Annotations = map[string]string{}
		}
		p.t0 = time.Now()
		es.Annotations["endpoints.kubernetes.io/last-change-trigger-time"] = p.t0.UTC().Format(time.RFC3339Nano)
		floor.forget(p.slice, p.next.String())
		if err := k8s.Update(ctx, &es); err != nil {
			return nil, fmt.Errorf("update %s: %w", es.Name, err)
		}
		ct.acked[k] = time.Since(p.t0)
		all[k] = p
		return p, nil
	}
	// check reports whether p's change is in the kernel, recording its latency.
	check := func(p *pending) (bool, error) {
		ds, err := kernel.Destinations(ctx, p.key)
		if err != nil {
			return false, err
		}
		if hasDest(ds, p.next) {
			lat[p.k] = time.Since(p.t0)
			return true, nil
		}
		if time.Since(p.t0) > 10*time.Minute {
			return false, fmt.Errorf("change %d not in the kernel after 10 min", p.k)
		}
		return false, nil
	}
	progress := func(done int) {
		if done%20 == 0 {
			got := slices.DeleteFunc(slices.Clone(lat), func(d time.Duration) bool { return d == 0 })
			logf("changes: %d/%d in the kernel, p50 %v p99 %v so far", done, o.changes, percentile(got, 50), percentile(got, 99))
		}
	}
	if o.changeInterval <= 0 {
		for k := range o.changes {
			p, err := issue(k)
			if err != nil {
				return nil, err
			}
			for {
				ok, err := check(p)
				if err != nil {
					return nil, err
				}
				if ok {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			progress(k + 1)
			time.Sleep(20 * time.Millisecond)
		}
		return seen()
	}
	// Open loop: a goroutine issues a change every interval; this one polls the outstanding ones.
	issued := make(chan *pending, o.changes)
	errc := make(chan error, 1)
	go func() {
		tick := time.NewTicker(o.changeInterval)
		defer tick.Stop()
		for k := range o.changes {
			p, err := issue(k)
			if err != nil {
				errc <- err
				close(issued)
				return
			}
			issued <- p
			<-tick.C
		}
		close(issued)
	}()
	var out []*pending
	done, open := 0, true
	for open || len(out) > 0 {
	drain:
		for {
			select {
			case p, ok := <-issued:
				if !ok {
					open = false
					break drain
				}
				out = append(out, p)
			default:
				break drain
			}
		}
		keep := out[:0]
		for _, p := range out {
			ok, err := check(p)
			if err != nil {
				return nil, err
			}
			if ok {
				done++
				progress(done)
			} else {
				keep = append(keep, p)
			}
		}
		out = keep
		time.Sleep(2 * time.Millisecond)
	}
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	return seen()
}
