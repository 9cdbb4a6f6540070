package agent

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
)

// Netlink request kinds counted by kubelvs_agent_netlink_requests_total.
const (
	requestWrite = "write" // one IPVS write (an operation of a batch)
	requestDump  = "dump"  // one dump (a table read is one service dump plus one per service)
)

// Metrics are the agent's own metrics (the kernel's IPVS counters are exported by
// StatsCollector at scrape time).
type Metrics struct {
	NetlinkRequests      *prometheus.CounterVec
	Operations           *prometheus.CounterVec
	AuditRepairs         *prometheus.CounterVec
	Conflicts            prometheus.Gauge
	DrainingDestinations prometheus.Gauge
	CheckpointWrites     prometheus.Counter
	SyncDuration         prometheus.Histogram
	AuditDuration        prometheus.Histogram
	ProgrammingLatency   prometheus.Histogram
}

// NewMetrics returns unregistered metrics; Register adds them to a registry.
func NewMetrics() *Metrics {
	return &Metrics{
		NetlinkRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelvs_agent_netlink_requests_total",
			Help: "IPVS netlink requests the agent sent, by kind (write: one operation; dump: one dump request).",
		}, []string{"kind"}),
		Operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelvs_agent_ipvs_operations_total",
			Help: "IPVS operations the agent applied, by kind and result (success or the error's sentinel).",
		}, []string{"operation", "result"}),
		AuditRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelvs_agent_audit_repairs_total",
			Help: "Differences between the kernel's table and what the agent programmed that audits repaired, by kind.",
		}, []string{"kind"}),
		Conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelvs_agent_conflicts",
			Help: "Desired IPVS services the agent does not program because a service it did not create has their key.",
		}),
		DrainingDestinations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelvs_agent_draining_destinations",
			Help: "Destinations at weight 0 waiting for their connections to end.",
		}),
		CheckpointWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelvs_agent_checkpoint_writes_total",
			Help: "Checkpoint files written.",
		}),
		SyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubelvs_agent_sync_duration_seconds",
			Help:    "Time to plan and apply one batch of VirtualService changes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		AuditDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubelvs_agent_audit_duration_seconds",
			Help:    "Time of one audit: reading the whole IPVS table, planning and applying the repairs.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		ProgrammingLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kubelvs_agent_network_programming_duration_seconds",
			Help: "Time from an EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time to its change " +
				"being in the kernel (as kube-proxy's network_programming_duration_seconds).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
	}
}

// Register adds the metrics to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.NetlinkRequests, m.Operations, m.AuditRepairs, m.Conflicts,
		m.DrainingDestinations, m.CheckpointWrites, m.SyncDuration, m.AuditDuration, m.ProgrammingLatency} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) requests(kind string, n int) {
	if n > 0 {
		m.NetlinkRequests.WithLabelValues(kind).Add(float64(n))
	}
}

// opCounts counts a batch's operations by kind and result, added to the metric once per label
// pair (a first sync is 110,000 operations at 10,000 services).
type opCounts map[opCount]int

type opCount struct {
	kind   ipvs.OpKind
	result string
}

func (c opCounts) add(kind ipvs.OpKind, err error) { c[opCount{kind, resultOf(err)}]++ }

func (c opCounts) flush(m *Metrics) {
	for k, n := range c {
		m.Operations.WithLabelValues(k.kind.String(), k.result).Add(float64(n))
	}
}

// resultOf names an operation's result by the sentinel it matches, so the label set stays
// small.
func resultOf(err error) string {
	if err == nil {
		return "success"
	}
	for _, s := range []struct {
		err  error
		name string
	}{
		{ipvs.ErrServiceExists, "service_exists"}, {ipvs.ErrServiceNotFound, "service_not_found"},
		{ipvs.ErrDestExists, "destination_exists"}, {ipvs.ErrDestNotFound, "destination_not_found"},
		{ipvs.ErrSchedulerNotFound, "scheduler_not_found"}, {ipvs.ErrInvalid, "invalid"},
		{ipvs.ErrNotAvailable, "not_available"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "error"
}
