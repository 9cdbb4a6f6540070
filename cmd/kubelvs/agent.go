package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
	"github.com/kubelvs/kubelvs/internal/agent"
	"github.com/kubelvs/kubelvs/internal/dataplane"
	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
)

func init() { subcommands = append(subcommands, newAgentCommand) }

type agentOptions struct {
	node            string
	kubeconfig      string
	netns           string
	stateDir        string
	auditPeriod     time.Duration
	drainPoll       time.Duration
	retryPeriod     time.Duration
	checkpointEvery time.Duration
	managedCIDRs    []string
	metricsAddr     string
	secureMetrics   bool
	probeAddr       string
	pprofAddr       string
	apiCompression  bool
	// realServerMetrics: the collector exports per-real-server series.
	realServerMetrics bool
	leaseNamespace    string
	leaseDuration     time.Duration
	expireNodest      bool
	expireQuiescent   bool
	sysctlRoot        string
	podName           string
	podstats          podStatsOptions
	vipInterface      string
	masquerade        string
	strictARP         bool
	nftables          bool
	uninstall         bool
	zapOpts           zap.Options
}

func newAgentCommand() *cobra.Command {
	o := agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent (programs this node's IPVS table from VirtualServices)",
		Long: `Run the kubelvs node agent: it watches VirtualServices, Services, EndpointSlices,
BackendPools and its own Node, and keeps the node's IPVS table equal to what they want,
incrementally, owning only the services it created (recorded in a checkpoint under
--state-dir), draining removed backends, auditing the table for drift, and reporting in the
node's IPVSNode.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd.Context(), &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.node, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME, from the downward API)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (in-cluster config or $KUBECONFIG when empty)")
	f.StringVar(&o.netns, "netns", "", "program IPVS in this network namespace (a file such as /run/netns/NAME) instead of the agent's own")
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/kubelvs", "directory of the checkpoint (what the agent owns, drain start times)")
	f.DurationVar(&o.auditPeriod, "audit-period", 60*time.Second, "mean time between full reads of the IPVS table that repair drift (jittered ±10%)")
	f.DurationVar(&o.drainPoll, "drain-poll-period", 2*time.Second, "how often services with draining destinations are polled (one destination dump each)")
	f.DurationVar(&o.retryPeriod, "retry-period", 5*time.Second, "how long a VirtualService whose IPVS operations failed waits before a retry")
	f.DurationVar(&o.checkpointEvery, "checkpoint-interval", time.Second, "least time between two checkpoint writes that only record drains, generations or removals, longer for a large checkpoint (a second per 256 KiB); ownership of a new service is written at once; 0: every change at once")
	f.StringSliceVar(&o.managedCIDRs, "managed-cidrs", nil, "only program services whose addresses are in these prefixes (default: no restriction)")
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":9753", "address of the metrics endpoint; 0 disables it")
	f.BoolVar(&o.secureMetrics, "metrics-secure", true, "serve metrics over HTTPS with authentication and authorization")
	f.StringVar(&o.probeAddr, "health-probe-bind-address", ":9754", "address of the /healthz and /readyz endpoints; 0 disables them")
	f.BoolVar(&o.realServerMetrics, "metrics-real-servers", true, "export per-real-server IPVS series (8 per real server at each scrape; false: per service only, for nodes with tens of thousands of real servers)")
	f.BoolVar(&o.apiCompression, "api-compression", false, "ask the API server to gzip large responses (off: inside a cluster gzip costs the API server and every node CPU and latency for little gain, as Kubernetes' own control-plane components find)")
	f.StringVar(&o.pprofAddr, "pprof-bind-address", "", "address of the Go profiler's /debug/pprof endpoints, for diagnosing the agent (empty: off; they are unauthenticated, bind a loopback address)")
	f.StringVar(&o.leaseNamespace, "lease-namespace", "kubelvs-system", "namespace of the node's Lease kubelvs-agent-<node> (empty: no Lease)")
	f.DurationVar(&o.leaseDuration, "lease-duration", 40*time.Second, "duration of the node's Lease, renewed every quarter of it")
	f.BoolVar(&o.expireNodest, "expire-nodest-conn", true, "set net.ipv4.vs.expire_nodest_conn=1: drop connections to deleted destinations on their next packet")
	f.BoolVar(&o.expireQuiescent, "expire-quiescent-template", true, "set net.ipv4.vs.expire_quiescent_template=1: persistence templates of weight-0 destinations expire")
	f.StringVar(&o.sysctlRoot, "sysctl-root", "/proc/sys", "where the host's /proc/sys (or its net/ipv4/vs part) is mounted")
	f.StringVar(&o.podName, "pod-name", os.Getenv("POD_NAME"), "the agent's pod name, shown in IPVSNode (default $POD_NAME)")
	addPodStatsFlags(f, &o.podstats)
	f.StringVar(&o.vipInterface, "vip-interface", "lo", "interface the VIPs' local routes go through: a loopback, or a dummy the agent creates (empty: route no VIP)")
	f.StringVar(&o.masquerade, "masquerade", string(dataplane.MasqueradeRemote), "source NAT of Masquerade-mode destinations: all, remote (destinations outside the node's pod CIDRs) or none")
	f.BoolVar(&o.strictARP, "strict-arp", true, "set net.ipv4.conf.all.arp_ignore=1 and arp_announce=2: the node answers no ARP for its VIPs")
	f.BoolVar(&o.nftables, "nftables", true, "keep the nftables table inet kubelvs (drops traffic to VIPs on unserved ports, masquerades)")
	f.BoolVar(&o.uninstall, "uninstall", false, "remove what the agent made on the node (its IPVS services from the checkpoint, the VIP interface, the nftables table) and exit")
	gofs := flag.NewFlagSet("zap", flag.ContinueOnError)
	o.zapOpts.BindFlags(gofs)
	f.AddGoFlagSet(gofs)
	return cmd
}

// validate refuses bad values before anything starts, naming the flag.
func (o *agentOptions) validate() error {
	var errs []error
	if _, err := dataplane.ParseMasquerade(o.masquerade); err != nil {
		errs = append(errs, fmt.Errorf("--masquerade: %w", err))
	}
	if len(o.vipInterface) > 15 {
		errs = append(errs, fmt.Errorf("--vip-interface: %q is longer than 15 bytes", o.vipInterface))
	}
	if o.node == "" && !o.uninstall {
		errs = append(errs, errors.New("--node-name is required (or set $NODE_NAME)"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"--audit-period", o.auditPeriod, time.Second}, {"--drain-poll-period", o.drainPoll, 100 * time.Millisecond},
		{"--retry-period", o.retryPeriod, 100 * time.Millisecond}, {"--lease-duration", o.leaseDuration, 4 * time.Second},
	} {
		if d.v < d.min {
			errs = append(errs, fmt.Errorf("%s must be at least %s, got %s", d.name, d.min, d.v))
		}
	}
	if o.checkpointEvery < 0 || o.checkpointEvery > time.Minute {
		errs = append(errs, fmt.Errorf("--checkpoint-interval must be between 0 and 1m, got %s", o.checkpointEvery))
	}
	if o.stateDir == "" {
		errs = append(errs, errors.New("--state-dir must not be empty"))
	}
	if _, err := agent.ManagedCIDRs(o.managedCIDRs); err != nil {
		errs = append(errs, err)
	}
	if err := o.podstats.validate(); err != nil {
		errs = append(errs, err)
	}
	if o.netns != "" {
		if _, err := os.Stat(o.netns); err != nil {
			errs = append(errs, fmt.Errorf("--netns: %w", err))
		}
	}
	return errors.Join(errs...)
}

func runAgent(ctx context.Context, o *agentOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	began := time.Now()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zapOpts)))
	log := ctrl.Log.WithName("agent").WithValues("node", o.node)
	if o.uninstall {
		return uninstallAgent(ctx, o, log)
	}
	allow, _ := agent.ManagedCIDRs(o.managedCIDRs)
	dp, closeDP, err := newDataplane(o, log)
	if err != nil {
		return err
	}
	defer closeDP()

	status := &agent.StatusWriter{Node: o.node, Log: log,
		Agent:          v1alpha1.AgentInfo{Version: version(), PodName: o.podName},
		Kernel:         v1alpha1.KernelInfo{Release: kernelRelease()},
		LeaseNamespace: o.leaseNamespace, LeaseDuration: o.leaseDuration,
	}
	kernel, err := openKernel(o, func(ctx context.Context, c *ipvs.Client) {
		status.SetKernel(kernelInfo(ctx, o, c, log))
	})
	if err != nil {
		return err
	}
	defer kernel.Close()
	// Open now if IPVS is there (the kernel info and sysctls are then in the first status).
	if _, err := kernel.Info(ctx); err != nil {
		log.Error(err, "IPVS is not available yet; the agent reports it and retries")
	}

	mgr, err := newAgentManager(o)
	if err != nil {
		return err
	}
	m := agent.NewMetrics()
	if err := m.Register(metrics.Registry); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if err := dp.wire(mgr, o.node); err != nil {
		return err
	}
	rec := agent.NewReconciler(agent.Config{
		Node: o.node, Kernel: kernel, Allow: allow, Log: log, Metrics: m, CheckpointInterval: o.checkpointEvery, Dataplane: dp,
		Checkpoint: &agent.CheckpointFile{Path: filepath.Join(o.stateDir, "agent-checkpoint.json")},
	})
	status.Client = mgr.GetClient()
	runner := agent.NewRunner(agent.RunnerConfig{
		Node: o.node, Reconciler: rec, Cache: mgr.GetCache(), Status: status,
		AuditPeriod: o.auditPeriod, DrainPoll: o.drainPoll, RetryPeriod: o.retryPeriod, Log: log, Began: began,
	})
	if err := mgr.Add(runner); err != nil {
		return err
	}
	// The kernel's table is read while the manager starts and its caches fill.
	runner.Adopt(ctx)
	if err := setupPodStats(ctx, &o.podstats, o.node, mgr, status, log); err != nil {
		return err
	}
	stats := agent.NewStatsCollector(kernel, runner)
	stats.NoRealServers = !o.realServerMetrics
	if err := metrics.Registry.Register(stats); err != nil {
		return fmt.Errorf("register the IPVS collector: %w", err)
	}
	if err := addProbes(mgr, runner); err != nil {
		return err
	}
	log.Info("starting", "netns", o.netns, "stateDir", o.stateDir, "auditPeriod", o.auditPeriod, "managedCIDRs", o.managedCIDRs)
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	return nil
}

// addProbes adds /healthz and /readyz (ready once the table is adopted and first synced).
func addProbes(mgr ctrl.Manager, runner *agent.Runner) error {
	var ready atomic.Bool
	runner.OnReady(func() { ready.Store(true) })
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("readyz", func(*http.Request) error {
		if !ready.Load() {
			return errors.New("the IPVS table is not adopted and synced yet")
		}
		return nil
	})
}

type sysctl struct{ name, value string }

func sysctls(o *agentOptions) []sysctl {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	return []sysctl{
		{"net/ipv4/vs/expire_nodest_conn", b(o.expireNodest)},
		{"net/ipv4/vs/expire_quiescent_template", b(o.expireQuiescent)},
		// IPVS connections get conntrack entries: the masquerade rules match them.
		{"net/ipv4/vs/conntrack", "1"},
	}
}

// openKernel returns the agent's IPVS kernel (in --netns when given; the namespace file stays
// open for the agent's life, so that the client can be opened again). IPVS missing at start is
// not fatal: the agent reports it and retries; opened runs after each successful open.
func openKernel(o *agentOptions, opened func(context.Context, *ipvs.Client)) (*agent.IPVSKernel, error) {
	cfg := ipvs.Config{}
	var nsFile *os.File
	if o.netns != "" {
		var err error
		if nsFile, err = os.Open(o.netns); err != nil {
			return nil, fmt.Errorf("--netns: %w", err)
		}
		cfg.NetNS = int(nsFile.Fd())
	}
	return &agent.IPVSKernel{
		Open: func(ctx context.Context) (*ipvs.Client, error) {
			// The closure keeps nsFile (and so the descriptor in cfg) open for the agent's life.
			defer runtime.KeepAlive(nsFile)
			return ipvs.New(ctx, &cfg)
		},
		Opened: opened,
	}, nil
}

// kernelInfo sets the IPVS sysctls (they exist once IPVS is loaded) and returns what IPVSNode
// reports about the kernel.
func kernelInfo(ctx context.Context, o *agentOptions, c *ipvs.Client, log logr.Logger) v1alpha1.KernelInfo {
	info := v1alpha1.KernelInfo{Release: kernelRelease()}
	if i, err := c.Info(ctx); err == nil {
		info.IPVSVersion = i.VersionString()
		info.ConnectionTableSize = int32(i.ConnTableSize)
	}
	for _, s := range sysctls(o) {
		got, err := agent.Sysctl(o.sysctlRoot, o.netns, s.name, s.value)
		if err != nil {
			log.Error(err, "cannot set sysctl", "sysctl", s.name)
		} else {
			log.Info("sysctl set", "sysctl", got.Name, "value", got.Value)
		}
		info.Sysctls = append(info.Sysctls, got)
	}
	return info
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return strings.TrimSpace(string(b))
}

func newAgentManager(o *agentOptions) (ctrl.Manager, error) {
	if o.kubeconfig != "" {
		if err := os.Setenv("KUBECONFIG", o.kubeconfig); err != nil {
			return nil, fmt.Errorf("setting KUBECONFIG: %w", err)
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the Kubernetes client configuration: %w", err)
	}
	cfg.DisableCompression = !o.apiCompression
	cfg.Wrap(agent.LargeReads) // fewer HTTP/2 flow-control writes while the watches stream
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	metricsOpts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.secureMetrics,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}}
	if o.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	probe := o.probeAddr
	if probe == "0" {
		probe = ""
	}
	cacheOpts, clientOpts, err := agent.ClusterOptions(cfg, scheme, o.node)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsOpts,
		HealthProbeBindAddress: probe,
		PprofBindAddress:       o.pprofAddr,
		Cache:                  cacheOpts,
		Client:                 clientOpts,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	idx := agent.Indexer(mgr.GetCache())
	if err := controllers.SetupIndexes(context.Background(), idx); err != nil {
		return nil, err
	}
	if err := podstats.SetupIndexes(context.Background(), idx); err != nil {
		return nil, err
	}
	return mgr, nil
}

// version is the module version, or the VCS revision of a development build.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
