package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// staticTable is a kernel's table; it counts what the collector reads.
type staticTable struct {
	entries          []ipvs.TableEntry
	tables, services int
}

func (t *staticTable) Table(context.Context) ([]ipvs.TableEntry, error) {
	t.tables++
	return t.entries, nil
}

// Services is the services without destinations, as the kernel's service dump has them.
func (t *staticTable) Services(context.Context) ([]ipvs.Service, error) {
	t.services++
	out := make([]ipvs.Service, len(t.entries))
	for i := range t.entries {
		out[i] = t.entries[i].Service
	}
	return out, nil
}

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
	table := &staticTable{entries: []ipvs.TableEntry{entry(mine, 3), entry(theirs, 2)}}
	table.entries[0].Stats = ipvs.Stats{Conns: 7, InBytes: 1 << 40} // past 32 bits
	owners := staticOwners{mine: web}
	c := NewStatsCollector(table, owners)
	if n := testutil.CollectAndCount(c); n != 1+5+3*8 {
		t.Errorf("%d series, want %d (scrape error, 5 for the service, 8 for each of its 3 real servers)", n, 1+5+3*8)
	}
	c.NoRealServers = true
	if n := testutil.CollectAndCount(c); n != 1+5 {
		t.Errorf("without real servers: %d series, want %d", n, 1+5)
	}
	// The services' dump carries their counters.
	want := fmt.Sprintf(`
# HELP kubelvs_ipvs_service_bytes_in_total Bytes in.
# TYPE kubelvs_ipvs_service_bytes_in_total counter
kubelvs_ipvs_service_bytes_in_total{name=%q,namespace=%q,service="TCP 192.0.2.10:80"} 1.099511627776e+12
# HELP kubelvs_ipvs_service_connections_total Connections scheduled.
# TYPE kubelvs_ipvs_service_connections_total counter
kubelvs_ipvs_service_connections_total{name=%q,namespace=%q,service="TCP 192.0.2.10:80"} 7
`, web.Name, web.Namespace, web.Name, web.Namespace)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "kubelvs_ipvs_service_connections_total", "kubelvs_ipvs_service_bytes_in_total"); err != nil {
		t.Error(err)
	}
	if c.Reads != 3 || table.tables != 1 || table.services != 2 {
		t.Errorf("%d reads for 3 scrapes: %d of the table, %d of the services only; want 3, 1 and 2", c.Reads, table.tables, table.services)
	}
}
