package desired

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// benchCluster has n VirtualServices, each with its own Service of e ready endpoints.
func benchCluster(n, e int) *Cluster {
	c := &Cluster{}
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		c.VirtualServices = append(c.VirtualServices, vs(name, i, addrs(ip4(i)), refs(v1alpha1.BackendRef{Name: name})))
		c.Services = append(c.Services, svc(name))
		var eps []ep
		for j := range e {
			eps = append(eps, readyEP(ip4(1<<20+i*e+j), fmt.Sprintf("node-%d", j)))
		}
		c.EndpointSlices = append(c.EndpointSlices, slice(name+"-1", name, discoveryv1.AddressTypeIPv4, "", 8080, eps...))
	}
	return c
}

// BenchmarkForNode10kx10 computes one node's table from 10,000 VirtualServices with 10
// endpoints each (10,000 IPVS services, 100,000 destinations), indexing included.
func BenchmarkForNode10kx10(b *testing.B) {
	c := benchCluster(10000, 10)
	b.ReportAllocs()
	var tab *Table
	for b.Loop() {
		tab = ForNode(c, node1)
	}
	dests := 0
	for _, s := range tab.Services {
		dests += len(s.Destinations)
	}
	if len(tab.Services) != 10000 || dests != 100000 {
		b.Fatalf("got %d services, %d destinations; want 10000, 100000", len(tab.Services), dests)
	}
	b.ReportMetric(float64(dests), "dests")
}

// BenchmarkEvaluations10kx10 computes the controller's verdicts on the same cluster.
func BenchmarkEvaluations10kx10(b *testing.B) {
	c := benchCluster(10000, 10)
	b.ReportAllocs()
	for b.Loop() {
		evs := NewModel(c).Evaluations()
		if len(evs) != 10000 || evs[0].Backends.Ready != 10 {
			b.Fatalf("unexpected evaluations: %d, %+v", len(evs), evs[0].Backends)
		}
	}
}
