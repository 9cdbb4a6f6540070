package ipvs

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// newHookedClient is newTestClient with hook called before the fake kernel handles each
// request: the hook may change the fake's table, between two dumps of one Table for example.
func newHookedClient(t *testing.T, hook func(f *fakeIPVS, req gnltest.Request)) (*fakeIPVS, *Client) {
	t.Helper()
	f, _ := newFake()
	k := &gnltest.Kernel{DatagramsPerRead: 4}
	k.Register(&gnltest.Family{Name: "IPVS", Version: 1, MaxAttr: 6, Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
		hook(f, req)
		return f.handle(req)
	}})
	conn := k.Dial(&gnl.Config{Timeout: 5 * time.Second})
	t.Cleanup(func() { _ = conn.Close() })
	return f, NewWithConn(conn, nil)
}

// deleteFakeService removes an IPv4 TCP service from the fake's table as another process
// would.
func deleteFakeService(t *testing.T, f *fakeIPVS, s lvs.Service) {
	t.Helper()
	var p parsedSvc
	p.af, p.proto, p.port = 2, 6, s.Port // AF_INET, IPPROTO_TCP
	a4 := s.Address.As4()
	copy(p.addr[:], a4[:])
	f.mu.Lock()
	defer f.mu.Unlock()
	i, _ := f.find(&p)
	if i < 0 {
		t.Fatalf("service %s is not in the fake", s.Key())
	}
	f.svcs = slices.Delete(f.svcs, i, i+1)
}

// TestTableDropsServicesDeletedDuringTheRead: a service deleted after the service dump and
// before its destination dump is left out of the table (it used to come back with no
// destinations and no error); a service that really has no destinations stays.
func TestTableDropsServicesDeletedDuringTheRead(t *testing.T) {
	svc := func(i byte) *lvs.Service {
		return &lvs.Service{ServiceKey: lvs.ServiceKey{Protocol: lvs.TCP, Address: netip.AddrFrom4([4]byte{10, 0, 0, i}), Port: 80}, Scheduler: "rr"}
	}
	dest := &lvs.Destination{Address: netip.MustParseAddr("10.1.0.1"), Port: 8080, Weight: 1, Forwarding: lvs.Masquerade}
	armed := false
	_, c := newHookedClient(t, func(f *fakeIPVS, req gnltest.Request) {
		if armed && req.Cmd == cmdGetDest {
			armed = false // at the first destination dump, the service dump is over
			deleteFakeService(t, f, *svc(2))
		}
	})
	for i := byte(1); i <= 3; i++ {
		if err := c.AddService(ctx(t), svc(i)); err != nil {
			t.Fatal(err)
		}
		if i != 3 { // service 3 has no destinations, and stays
			if err := c.AddDestination(ctx(t), svc(i), dest); err != nil {
				t.Fatal(err)
			}
		}
	}
	armed = true
	table, err := c.Table(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if armed {
		t.Fatal("the hook never ran: no destination dump")
	}
	var got []string
	for _, e := range table {
		got = append(got, e.Address.String())
		if e.Address == svc(1).Address && len(e.Destinations) != 1 {
			t.Errorf("service 1: %d destinations, want 1", len(e.Destinations))
		}
	}
	if want := []string{"10.0.0.1", "10.0.0.3"}; !slices.Equal(got, want) {
		t.Errorf("table has services %v, want %v (10.0.0.2 was deleted before its destinations were read)", got, want)
	}
}
