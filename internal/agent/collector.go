package agent

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// tableReader reads the kernel's table, or only its services (one dump, with their counters).
type tableReader interface {
	Table(ctx context.Context) ([]ipvs.TableEntry, error)
	Services(ctx context.Context) ([]ipvs.Service, error)
}

// ownersSource tells which VirtualService owns which service.
type ownersSource interface {
	OwnersSnapshot() map[lvs.ServiceKey]types.NamespacedName
}

// StatsCollector exports the kernel's 64-bit IPVS counters of the services the agent owns, per
// service and real server, labelled with their VirtualService, read at scrape time: one table
// read per scrape, shared by scrapes that arrive while it runs; without the real servers' series,
// one dump of the services (their counters come with them) instead of one more per service.
type StatsCollector struct {
	kernel  tableReader
	owners  ownersSource
	timeout time.Duration
	// NoRealServers leaves out the per-real-server series (--metrics-real-servers=false): at
	// 10,000 services of 10 real servers they are 800,000 series a scrape.
	NoRealServers bool

	mu       sync.Mutex
	inflight *tableRead
	// Reads counts table reads (for tests: concurrent scrapes share one).
	Reads int
}

type tableRead struct {
	done  chan struct{}
	table []ipvs.TableEntry
	err   error
}

// NewStatsCollector returns a collector reading kernel for the services owners names.
func NewStatsCollector(kernel tableReader, owners ownersSource) *StatsCollector {
	return &StatsCollector{kernel: kernel, owners: owners, timeout: 10 * time.Second}
}

var (
	svcLabels  = []string{"namespace", "name", "service"}
	destLabels = []string{"namespace", "name", "service", "real_server"}
	counters   = []struct {
		name, help string
		value      func(*ipvs.Stats) uint64
	}{
		{"connections_total", "Connections scheduled.", func(s *ipvs.Stats) uint64 { return s.Conns }},
		{"packets_in_total", "Packets in.", func(s *ipvs.Stats) uint64 { return s.InPackets }},
		{"packets_out_total", "Packets out.", func(s *ipvs.Stats) uint64 { return s.OutPackets }},
		{"bytes_in_total", "Bytes in.", func(s *ipvs.Stats) uint64 { return s.InBytes }},
		{"bytes_out_total", "Bytes out.", func(s *ipvs.Stats) uint64 { return s.OutBytes }},
	}
	svcDescs, destDescs = descs("kubelvs_ipvs_service_", svcLabels), descs("kubelvs_ipvs_real_server_", destLabels)
	activeDesc          = prometheus.NewDesc("kubelvs_ipvs_real_server_active_connections", "Active connections.", destLabels, nil)
	inactiveDesc        = prometheus.NewDesc("kubelvs_ipvs_real_server_inactive_connections", "Inactive connections.", destLabels, nil)
	weightDesc          = prometheus.NewDesc("kubelvs_ipvs_real_server_weight", "Scheduling weight (0: draining).", destLabels, nil)
	scrapeErrDesc       = prometheus.NewDesc("kubelvs_ipvs_scrape_error", "1 when the last scrape could not read the IPVS table.", nil, nil)
)

func descs(prefix string, labels []string) []*prometheus.Desc {
	out := make([]*prometheus.Desc, len(counters))
	for i, c := range counters {
		out[i] = prometheus.NewDesc(prefix+c.name, c.help, labels, nil)
	}
	return out
}

// Describe implements prometheus.Collector.
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range append(append([]*prometheus.Desc{activeDesc, inactiveDesc, weightDesc, scrapeErrDesc}, svcDescs...), destDescs...) {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	table, err := c.read()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, 0)
	owners := c.owners.OwnersSnapshot()
	for i := range table {
		e := &table[i]
		owner, ok := owners[e.Key()]
		if !ok {
			continue // not ours: other IPVS users' services are theirs to export
		}
		sv := []string{owner.Namespace, owner.Name, e.Key().String()}
		for j, cn := range counters {
			ch <- prometheus.MustNewConstMetric(svcDescs[j], prometheus.CounterValue, float64(cn.value(&e.Stats)), sv...)
		}
		if c.NoRealServers {
			continue
		}
		for k := range e.Destinations {
			d := &e.Destinations[k]
			dv := append(append([]string{}, sv...), d.Key().String())
			for j, cn := range counters {
				ch <- prometheus.MustNewConstMetric(destDescs[j], prometheus.CounterValue, float64(cn.value(&d.Stats)), dv...)
			}
			ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(d.ActiveConns), dv...)
			ch <- prometheus.MustNewConstMetric(inactiveDesc, prometheus.GaugeValue, float64(d.InactiveConns), dv...)
			ch <- prometheus.MustNewConstMetric(weightDesc, prometheus.GaugeValue, float64(d.Weight), dv...)
		}
	}
}

// read reads the table once for every scrape waiting at the same time.
func (c *StatsCollector) read() ([]ipvs.TableEntry, error) {
	c.mu.Lock()
	if r := c.inflight; r != nil {
		c.mu.Unlock()
		<-r.done
		return r.table, r.err
	}
	r := &tableRead{done: make(chan struct{})}
	c.inflight = r
	c.Reads++
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	if c.NoRealServers {
		var svcs []ipvs.Service
		svcs, r.err = c.kernel.Services(ctx)
		r.table = make([]ipvs.TableEntry, len(svcs))
		for i := range svcs {
			r.table[i].Service = svcs[i]
		}
	} else {
		r.table, r.err = c.kernel.Table(ctx)
	}
	cancel()
	c.mu.Lock()
	c.inflight = nil
	c.mu.Unlock()
	close(r.done)
	return r.table, r.err
}
