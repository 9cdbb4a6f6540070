package ipvs

import (
	"context"
	"net/netip"
	"testing"

	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

// BenchmarkApply measures Apply's own cost (validation, ordering, encoding, result
// bookkeeping) for 1,000 services with 10 destinations each, against an IPVS family on gnltest
// that accepts every request without looking at it, so that little besides Apply is measured.
// The real kernel's figures are in hack/bench (make bench-ipvs).
func BenchmarkApply(b *testing.B) {
	k := &gnltest.Kernel{}
	k.Register(&gnltest.Family{Name: "IPVS", Version: 1, Handle: func(gnltest.Request) ([]gnltest.Message, error) { return nil, nil }})
	conn := k.Dial(nil)
	defer conn.Close()
	c := NewWithConn(conn, nil)
	const nsvc, ndst = 1000, 10
	ops := make([]Op, 0, nsvc*(1+ndst))
	for i := range nsvc {
		s := &Service{Protocol: TCP, Address: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Port: 80, Scheduler: "rr"}
		ops = append(ops, Op{Kind: AddService, Service: s})
		for j := range ndst {
			ops = append(ops, Op{Kind: AddDestination, Service: s, Destination: &Destination{
				Address: netip.AddrFrom4([4]byte{100, 64, byte(i), byte(j)}), Port: 8080, Weight: 1, Forward: Masquerade}})
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Apply(ctx, ops)
		if err != nil || res[len(res)-1] != nil {
			b.Fatal(err, res[len(res)-1])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/write")
}
