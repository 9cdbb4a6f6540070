package podstats

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
)

// Metrics are the per-pod gauges of the last window and the reconciler's counters. A nil
// *Metrics records nothing.
type Metrics struct {
	Delay  *prometheus.GaugeVec
	CPU    *prometheus.GaugeVec
	IO     *prometheus.GaugeVec
	Procs  *prometheus.GaugeVec
	Writes prometheus.Counter
	Exits  *prometheus.CounterVec
}

// NewMetrics makes the collectors.
func NewMetrics() *Metrics {
	return &Metrics{
		Delay: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubelvs_pod_task_delay_ratio",
			Help: "Task-seconds a pod's tasks waited per second of wall time over the last window, by delay (cpu, io, swapin, reclaim, thrashing, compact, wpcopy, irq, memory)."},
			[]string{"namespace", "pod", "delay"}),
		CPU: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubelvs_pod_cpu_seconds_per_second",
			Help: "CPU time (user + system) a pod's tasks used per second over the last window."}, []string{"namespace", "pod"}),
		IO: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubelvs_pod_io_bytes_per_second",
			Help: "Block I/O bytes a pod's tasks read or wrote per second over the last window."}, []string{"namespace", "pod", "direction"}),
		Procs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubelvs_pod_processes",
			Help: "Processes of a pod at the last sample."}, []string{"namespace", "pod"}),
		Writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubelvs_pod_status_writes_total",
			Help: "Patches of pods' kubelvs.io/TaskDelays condition."}),
		Exits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelvs_pod_exit_records_total",
			Help: "Exit records received, by whether they were counted in a pod (counted) or not (ignored); implausible counts counted single-threaded records with a delay longer than the task lived, dropped."}, []string{"result"}),
	}
}

// Register registers the collectors.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.Delay, m.CPU, m.IO, m.Procs, m.Writes, m.Exits} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

func (m *Metrics) set(k types.NamespacedName, r Rates) {
	if m == nil {
		return
	}
	for _, d := range []struct {
		name string
		v    float64
	}{{"cpu", r.CPU}, {"io", r.IO}, {"swapin", r.SwapIn}, {"reclaim", r.Reclaim}, {"thrashing", r.Thrashing},
		{"compact", r.Compact}, {"wpcopy", r.WPCopy}, {"irq", r.IRQ}, {"memory", r.Memory}} {
		if d.name != "cpu" && !r.DelayAccounting {
			m.Delay.DeleteLabelValues(k.Namespace, k.Name, d.name)
			continue
		}
		m.Delay.WithLabelValues(k.Namespace, k.Name, d.name).Set(d.v)
	}
	m.CPU.WithLabelValues(k.Namespace, k.Name).Set(r.CPUTime)
	m.IO.WithLabelValues(k.Namespace, k.Name, "read").Set(r.ReadBps)
	m.IO.WithLabelValues(k.Namespace, k.Name, "write").Set(r.WriteBps)
	m.Procs.WithLabelValues(k.Namespace, k.Name).Set(float64(r.Procs))
}

func (m *Metrics) forget(k types.NamespacedName) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"namespace": k.Namespace, "pod": k.Name}
	m.Delay.DeletePartialMatch(l)
	m.CPU.DeletePartialMatch(l)
	m.IO.DeletePartialMatch(l)
	m.Procs.DeletePartialMatch(l)
}

func (m *Metrics) wrote() {
	if m != nil {
		m.Writes.Inc()
	}
}

func (m *Metrics) exit(result string) {
	if m != nil {
		m.Exits.WithLabelValues(result).Inc()
	}
}
