package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

func testTable() []ipvs.TableEntry {
	return []ipvs.TableEntry{
		{Service: ipvs.Service{Service: lvs.Service{ServiceKey: lvs.ServiceKey{Family: lvs.IPv6, FirewallMark: 7}, Scheduler: "mh",
			Flags: lvs.FlagHashed | lvs.FlagMHPort, PersistencePrefixLength: 128}}},
		{
			Service: ipvs.Service{Service: lvs.Service{ServiceKey: lvs.ServiceKey{Family: lvs.IPv4, Protocol: lvs.TCP, Address: netip.MustParseAddr("10.0.0.1"), Port: 80},
				Scheduler: "rr", Flags: lvs.FlagHashed | lvs.FlagPersistent, TimeoutSeconds: 300, PersistencePrefixLength: 24},
				Stats: ipvs.Stats{Conns: 5, InPackets: 50, OutPackets: 40, InBytes: 1 << 33, OutBytes: 2000, CPS: 1}},
			Destinations: []ipvs.Destination{
				{Destination: lvs.Destination{Family: lvs.IPv4, Address: netip.MustParseAddr("10.1.0.2"), Port: 8080, Forwarding: lvs.Tunnel, TunnelType: lvs.TunnelGUE, TunnelPort: 6080, Weight: 2},
					ActiveConns: 3, InactiveConns: 1, Stats: ipvs.Stats{Conns: 5, InBytes: 1 << 33}},
				{Destination: lvs.Destination{Family: lvs.IPv4, Address: netip.MustParseAddr("10.1.0.1"), Port: 8080, Forwarding: lvs.Masquerade, Weight: 1, UpperThreshold: 100}},
			},
		},
	}
}

func TestIPVSListTable(t *testing.T) {
	var b bytes.Buffer
	info := ipvs.Info{Version: 0x010201, ConnTableSize: 4096}
	if err := printIPVS(&b, listOptions{format: "table"}, info, testTable()); err != nil {
		t.Fatal(err)
	}
	want := `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:80 rr persistent 300 mask /24
  -> 10.1.0.1:8080                Masq    1      0          0
  -> 10.1.0.2:8080                Tunnel  2      3          1
FWM  7 IPv6 mh (mh-port)
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	b.Reset()
	if err := printIPVS(&b, listOptions{format: "table", stats: true}, info, testTable()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "8589934592") || !strings.Contains(b.String(), "Conns") {
		t.Errorf("--stats does not show exact 64-bit counters:\n%s", b.String())
	}
}

func TestIPVSListJSON(t *testing.T) {
	var b bytes.Buffer
	if err := printIPVS(&b, listOptions{format: "json"}, ipvs.Info{}, testTable()); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got) != 2 {
		t.Fatalf("%d services", len(got))
	}
	svc := got[0]
	for _, k := range []string{"address", "port", "protocol", "fwmark", "scheduler", "flags", "timeoutSeconds", "netmask", "destinations", "stats"} {
		if _, ok := svc[k]; !ok {
			t.Errorf("service has no %q: %v", k, svc)
		}
	}
	if svc["address"] != "10.0.0.1" || svc["protocol"] != "tcp" || svc["timeoutSeconds"] != 300.0 {
		t.Errorf("service %v", svc)
	}
	dests := svc["destinations"].([]any)
	d := dests[1].(map[string]any)
	want := map[string]any{"address": "10.1.0.2", "port": 8080.0, "forward": "tunnel", "weight": 2.0, "upperThreshold": 0.0,
		"lowerThreshold": 0.0, "activeConns": 3.0, "inactiveConns": 1.0, "persistentConns": 0.0, "tunnelType": "gue", "tunnelPort": 6080.0}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("destination (-want +got):\n%s", diff)
	}
	if fw := got[1]; fw["fwmark"] != 7.0 || len(fw["destinations"].([]any)) != 0 || fmt.Sprint(fw["flags"]) != "[hashed mh-port]" {
		t.Errorf("firewall-mark service %v", fw)
	}
}
