package dataplane

import (
	"errors"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Metrics are the dataplane's metrics.
type Metrics struct {
	Operations      *prometheus.CounterVec
	BoundVIPs       prometheus.Gauge
	ProgramDuration prometheus.Histogram
}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		Operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelvs_agent_dataplane_operations_total",
			Help: "Dataplane operations (route_add, route_delete, link_ensure, nftables_transaction) by result.",
		}, []string{"operation", "result"}),
		BoundVIPs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelvs_agent_vips_bound",
			Help: "VIPs the agent has bound to its VIP interface.",
		}),
		ProgramDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubelvs_agent_dataplane_program_duration_seconds",
			Help:    "Time to bring the VIP interface and the nftables table to what the services need, per change.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 18),
		}),
	}
}

// Register adds the metrics to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.Operations, m.BoundVIPs, m.ProgramDuration} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) op(name string, err error) {
	result := "success"
	var errno unix.Errno
	switch {
	case err == nil:
	case errors.As(err, &errno):
		result = unix.ErrnoName(errno)
	default:
		result = "error"
	}
	m.Operations.WithLabelValues(name, result).Inc()
}

// bigBuffers sizes the nftables socket's buffers for large transactions (10,000 elements
// at start-up): a batch larger than the send buffer fails whole, and the ACKs of its
// messages fill the receive buffer. The FORCE variants need CAP_NET_ADMIN, which the agent
// has; without it the default sizes stay.
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 32<<20)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	})
}
