package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
)

func init() { subcommands = append(subcommands, newControllerCommand) }

type controllerOptions struct {
	kubeconfig        string
	metricsAddr       string
	secureMetrics     bool
	probeAddr         string
	leaderElect       bool
	leaderElectionNS  string
	enableHTTP2       bool
	zapOpts           zap.Options
	leaderElectionID  string
	eventReporterName string
	agentLeaseNS      string
}

func newControllerCommand() *cobra.Command {
	o := controllerOptions{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the cluster controller (VirtualService and BackendPool status)",
		Long: `Run the kubelvs cluster controller: a leader-elected controller-runtime manager that
reconciles VirtualServices (acceptance, conflicts, resolved references, backend counts,
programming aggregated from IPVSNode objects) and BackendPools, writing status with
server-side apply.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runController(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (in-cluster config or $KUBECONFIG when empty)")
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "address of the metrics endpoint; 0 disables it")
	f.BoolVar(&o.secureMetrics, "metrics-secure", true, "serve metrics over HTTPS with authentication and authorization")
	f.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	f.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader so that only one replica reconciles")
	f.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election Lease (the pod's namespace when empty)")
	f.StringVar(&o.leaderElectionID, "leader-election-id", "kubelvs-controller.kubelvs.io", "name of the leader election Lease")
	f.BoolVar(&o.enableHTTP2, "enable-http2", false, "serve metrics over HTTP/2 (off: HTTP/2 rapid-reset mitigations)")
	f.StringVar(&o.agentLeaseNS, "agent-lease-namespace", controllers.DefaultAgentLeaseNamespace, "namespace of the agents' Leases (a node whose Lease expired counts as not programmed)")
	f.StringVar(&o.eventReporterName, "event-reporter", "kubelvs-controller", "reportingController of the events the controller records")
	gofs := flag.NewFlagSet("zap", flag.ContinueOnError)
	o.zapOpts.BindFlags(gofs)
	f.AddGoFlagSet(gofs)
	return cmd
}

func runController(cmd *cobra.Command, o *controllerOptions) error {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zapOpts)))
	logger := ctrl.Log.WithName("controller")
	if o.kubeconfig != "" {
		if err := os.Setenv("KUBECONFIG", o.kubeconfig); err != nil {
			return fmt.Errorf("setting KUBECONFIG: %w", err)
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the Kubernetes client configuration: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building the scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building the scheme: %w", err)
	}
	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.secureMetrics, TLSOpts: tlsOpts}
	if o.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              o.leaderElectionID,
		LeaderElectionNamespace:       o.leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		// Only the agents' Leases: a cluster-wide Lease watch would also see every kubelet's.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{o.agentLeaseNS: {}}},
		}},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	ctx := cmd.Context()
	if err := controllers.Setup(ctx, mgr, controllers.Options{Recorder: mgr.GetEventRecorder(o.eventReporterName), AgentLeaseNamespace: o.agentLeaseNS}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	logger.Info("starting", "leaderElection", o.leaderElect, "metrics", o.metricsAddr, "probes", o.probeAddr)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	return nil
}
