package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/agent"
	"github.com/kubelvs/kubelvs/internal/dataplane"
)

// dataplaneConfig returns the dataplane's configuration, with the --netns file opened (the
// caller closes it).
func dataplaneConfig(o *agentOptions, log logr.Logger) (dataplane.Config, *os.File, error) {
	mode, err := dataplane.ParseMasquerade(o.masquerade)
	if err != nil {
		return dataplane.Config{}, nil, err
	}
	cfg := dataplane.Config{Interface: o.vipInterface, Filter: o.nftables, Masquerade: mode, Log: log.WithName("dataplane")}
	var ns *os.File
	if o.netns != "" {
		if ns, err = os.Open(o.netns); err != nil {
			return cfg, nil, fmt.Errorf("--netns: %w", err)
		}
		cfg.NetNS = int(ns.Fd())
	}
	return cfg, ns, nil
}

// arpSysctls sets strict ARP (when asked) and returns what IPVSNode reports.
func arpSysctls(o *agentOptions, log logr.Logger) []v1alpha1.Sysctl {
	if !o.strictARP {
		return nil
	}
	var out []v1alpha1.Sysctl
	// arp_ignore=1: answer ARP only for addresses of the interface it came in on (never for
	// the VIPs, which are local routes and no interface's addresses); arp_announce=2: ARP
	// requests the node sends use the best local address of the outgoing interface, never a
	// VIP. The "all" values apply to every interface (the kernel takes the larger of all and
	// the interface's own).
	for _, s := range []sysctl{{"net/ipv4/conf/all/arp_ignore", "1"}, {"net/ipv4/conf/all/arp_announce", "2"}} {
		got, err := agent.Sysctl(o.sysctlRoot, o.netns, s.name, s.value)
		if err != nil {
			log.Error(err, "cannot set sysctl", "sysctl", s.name)
		}
		out = append(out, got)
	}
	return out
}

// dataplaneHandle is the agent's dataplane with what it needs at run time.
type dataplaneHandle struct {
	*dataplane.Dataplane
	metrics *dataplane.Metrics
}

// wire registers the dataplane's metrics and records its errors and recoveries as events on
// the node's IPVSNode.
func (h dataplaneHandle) wire(mgr ctrl.Manager, node string) error {
	recorder := mgr.GetEventRecorder("kubelvs-agent")
	h.SetEvents(func(warning bool, reason, message string) {
		typ := corev1.EventTypeNormal
		if warning {
			typ = corev1.EventTypeWarning
		}
		recorder.Eventf(&v1alpha1.IPVSNode{ObjectMeta: metav1.ObjectMeta{Name: node}}, nil, typ, reason, "Program", "%s", message)
	})
	if err := h.metrics.Register(metrics.Registry); err != nil {
		return fmt.Errorf("register dataplane metrics: %w", err)
	}
	return nil
}

func newDataplane(o *agentOptions, log logr.Logger) (dataplaneHandle, func(), error) {
	cfg, ns, err := dataplaneConfig(o, log)
	if err != nil {
		return dataplaneHandle{}, nil, err
	}
	cfg.Sysctls = arpSysctls(o, log)
	cfg.Metrics = dataplane.NewMetrics()
	dp := dataplane.New(cfg)
	return dataplaneHandle{Dataplane: dp, metrics: cfg.Metrics}, func() {
		_ = dp.Close()
		if ns != nil {
			_ = ns.Close()
		}
	}, nil
}

// uninstallAgent removes the agent's IPVS services (those its checkpoint names), its nftables
// table and its VIP interface, and nothing else. ARP sysctls are left as they are: the agent
// does not know what they were before.
func uninstallAgent(ctx context.Context, o *agentOptions, log logr.Logger) error {
	kernel, err := openKernel(o, nil)
	if err != nil {
		return err
	}
	defer kernel.Close()
	var errs []error
	n, err := agent.UninstallIPVS(ctx, kernel, &agent.CheckpointFile{Path: filepath.Join(o.stateDir, "agent-checkpoint.json")})
	log.Info("uninstall: deleted the agent's IPVS services", "services", n)
	errs = append(errs, err)
	cfg, ns, err := dataplaneConfig(o, log)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if ns != nil {
		defer ns.Close()
	}
	cfg.Filter = true
	removed, err := dataplane.Uninstall(cfg)
	log.Info("uninstall: removed", "objects", removed)
	errs = append(errs, err)
	return errors.Join(errs...)
}
