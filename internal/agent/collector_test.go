package agent

import (
	"context"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

type staticTable []ipvs.TableEntry

func (t staticTable) Table(context.Context) ([]ipvs.TableEntry, error) { return t, nil }

type staticOwners map[lvs.ServiceKey]types.NamespacedName

func (o staticOwners) OwnersSnapshot() map[lvs.ServiceKey]types.NamespacedName { return o }

// Per service 5 series, per real server 8; services the agent does not own are left out, and
// with NoRealServers only the per-service series remain.
func TestStatsCollectorSeries(t *testing.T) {
	mine, theirs := key(lvs.TCP, "192.0.2.10", 80), key(lvs.TCP, "192.0.2.99", 80)
	entry := func(k lvs.ServiceKey, dests int) ipvs.TableEntry {
		e := ipvs.TableEntry{Service: ipvs.Service{Service: lvs.Service{ServiceKey: k, Scheduler: "wrr"}}}
		for i := range dests {
			e.Destinations = append(e.Destinations, ipvs.Destination{Destination: lvs.Destination{
				Address: netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}), Port: 8080, Weight: 1}})
		}
		return e
	}
	table := staticTable{entry(mine, 3), entry(theirs, 2)}
	owners := staticOwners{mine: web}
	c := NewStatsCollector(table, owners)
	if n := testutil.CollectAndCount(c); n != 1+5+3*8 {
		t.Errorf("%d series, want %d (scrape error, 5 for the service, 8 for each of its 3 real servers)", n, 1+5+3*8)
	}
	c.NoRealServers = true
	if n := testutil.CollectAndCount(c); n != 1+5 {
		t.Errorf("without real servers: %d series, want %d", n, 1+5)
	}
	if c.Reads != 2 {
		t.Errorf("%d table reads for 2 scrapes", c.Reads)
	}
}
