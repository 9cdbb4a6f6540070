package ipvs

import (
	"context"
	"net/netip"
	"testing"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
	"github.com/kubelvs/kubelvs/pkg/lvs"
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
		s := &lvs.Service{ServiceKey: lvs.ServiceKey{Protocol: lvs.TCP, Address: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Port: 80}, Scheduler: "rr"}
		ops = append(ops, Op{Kind: AddService, Service: s})
		for j := range ndst {
			ops = append(ops, Op{Kind: AddDestination, Service: s, Destination: &lvs.Destination{
				Address: netip.AddrFrom4([4]byte{100, 64, byte(i), byte(j)}), Port: 8080, Weight: 1, Forwarding: lvs.Masquerade}})
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

// BenchmarkDecodeDest measures the destination decoder Table and Destinations share, on one
// IPVS_CMD_NEW_DEST reply with both counter nests (the attribute walk of the whole message
// included, as in a dump).
func BenchmarkDecodeDest(b *testing.B) {
	msg := seedDest()
	var d Destination
	b.ReportAllocs()
	for b.Loop() {
		var m destRawReply
		if err := gnl.Unmarshal(msg, &m); err != nil {
			b.Fatal(err)
		}
		if err := decodeDestNest(m.Dest, lvs.IPv4, &d); err != nil {
			b.Fatal(err)
		}
	}
}
