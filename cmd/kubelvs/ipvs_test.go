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

func entry(k lvs.ServiceKey, sched string, flags lvs.ServiceFlags, dests ...ipvs.Destination) ipvs.TableEntry {
	k = k.Canonical()
	return ipvs.TableEntry{Service: ipvs.Service{Service: lvs.Service{ServiceKey: k, Scheduler: sched, Flags: flags | lvs.FlagHashed,
		PersistencePrefixLength: uint8(k.Family.Bits())}}, Destinations: dests}
}

func skey(p lvs.Protocol, addr string, port uint16) lvs.ServiceKey {
	return lvs.ServiceKey{Protocol: p, Address: netip.MustParseAddr(addr), Port: port}
}

func testTable() []ipvs.TableEntry {
	persistent := entry(skey(lvs.TCP, "10.0.0.1", 80), "rr", lvs.FlagPersistent,
		ipvs.Destination{Destination: lvs.Destination{Family: lvs.IPv4, Address: netip.MustParseAddr("10.1.0.2"), Port: 8080, Forwarding: lvs.Tunnel,
			TunnelType: lvs.TunnelGUE, TunnelPort: 6080, TunnelFlags: lvs.TunnelChecksum, Weight: 2},
			ActiveConns: 3, InactiveConns: 1, Stats: ipvs.Stats{Conns: 5, InBytes: 1 << 33}},
		ipvs.Destination{Destination: lvs.Destination{Family: lvs.IPv4, Address: netip.MustParseAddr("10.1.0.1"), Port: 8080, Forwarding: lvs.Masquerade, Weight: 1, UpperThreshold: 100}},
		ipvs.Destination{Destination: lvs.Destination{Family: lvs.IPv6, Address: netip.MustParseAddr("2001:db8::9"), Port: 8080, Forwarding: lvs.Tunnel,
			TunnelType: lvs.TunnelGRE, TunnelFlags: lvs.TunnelRemoteChecksum, Weight: 1}},
	)
	persistent.TimeoutSeconds, persistent.PersistencePrefixLength = 300, 24
	persistent.Stats = ipvs.Stats{Conns: 5, InPackets: 50, OutPackets: 40, InBytes: 1 << 33, OutBytes: 2000, CPS: 1}
	v6 := entry(skey(lvs.TCP, "2001:db8::1", 443), "mh", lvs.FlagPersistent|lvs.FlagMHFallback)
	v6.TimeoutSeconds, v6.PersistencePrefixLength, v6.PersistenceEngine = 600, 64, "sip"
	// In no particular order, as the kernel lists them (its hash order).
	return []ipvs.TableEntry{
		entry(lvs.ServiceKey{Family: lvs.IPv6, FirewallMark: 7}, "mh", lvs.FlagMHPort),
		v6,
		entry(skey(lvs.UDP, "10.0.0.1", 53), "wrr", lvs.FlagOnePacket),
		entry(lvs.ServiceKey{FirewallMark: 7}, "wlc", 0),
		persistent,
		entry(skey(lvs.TCP, "10.0.0.1", 22), "sh", lvs.FlagSHPort),
		entry(lvs.ServiceKey{FirewallMark: 3}, "rr", 0),
	}
}

// TestIPVSListTable: services in ipvsadm -Ln's order (addresses before firewall marks, then
// family, protocol, address, port), ipvsadm's netmasks (dotted for IPv4, a length for IPv6), no
// "hashed", and tunnels with their type, port and checksum flags.
func TestIPVSListTable(t *testing.T) {
	var b bytes.Buffer
	info := ipvs.Info{Version: 0x010201, ConnTableSize: 4096}
	if err := printIPVS(&b, listOptions{format: "table"}, info, testTable()); err != nil {
		t.Fatal(err)
	}
	want := `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:22 sh (sh-port)
TCP  10.0.0.1:80 rr persistent 300 mask 255.255.255.0
  -> 10.1.0.1:8080                Masq    1      0          0
  -> 10.1.0.2:8080                Tunnel  2      3          1 gue 6080 csum
  -> [2001:db8::9]:8080           Tunnel  1      0          0 gre remcsum
UDP  10.0.0.1:53 wrr ops
TCP  [2001:db8::1]:443 mh persistent 600 mask 64 pe sip (mh-fallback)
FWM  3 rr
FWM  7 wlc
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
	if len(got) != 7 {
		t.Fatalf("%d services", len(got))
	}
	svc := got[1]
	for _, k := range []string{"family", "address", "port", "protocol", "fwmark", "scheduler", "flags", "timeoutSeconds", "netmask", "destinations", "stats"} {
		if _, ok := svc[k]; !ok {
			t.Errorf("service has no %q: %v", k, svc)
		}
	}
	if svc["family"] != "ipv4" || svc["address"] != "10.0.0.1" || svc["protocol"] != "tcp" || svc["timeoutSeconds"] != 300.0 || svc["netmask"] != 24.0 ||
		fmt.Sprint(svc["flags"]) != "[persistent]" {
		t.Errorf("service %v", svc)
	}
	dests := svc["destinations"].([]any)
	want := []any{
		map[string]any{"address": "10.1.0.1", "port": 8080.0, "forward": "masq", "weight": 1.0, "upperThreshold": 100.0,
			"lowerThreshold": 0.0, "activeConns": 0.0, "inactiveConns": 0.0, "persistentConns": 0.0},
		map[string]any{"address": "10.1.0.2", "port": 8080.0, "forward": "tunnel", "weight": 2.0, "upperThreshold": 0.0,
			"lowerThreshold": 0.0, "activeConns": 3.0, "inactiveConns": 1.0, "persistentConns": 0.0, "tunnelType": "gue", "tunnelPort": 6080.0,
			"tunnelFlags": "csum"},
		map[string]any{"address": "2001:db8::9", "port": 8080.0, "forward": "tunnel", "weight": 1.0, "upperThreshold": 0.0,
			"lowerThreshold": 0.0, "activeConns": 0.0, "inactiveConns": 0.0, "persistentConns": 0.0, "tunnelType": "gre", "tunnelFlags": "remcsum"},
	}
	if diff := cmp.Diff(want, dests); diff != "" {
		t.Errorf("destinations (-want +got):\n%s", diff)
	}
	if fw := got[6]; fw["fwmark"] != 7.0 || fw["family"] != "ipv6" || len(fw["destinations"].([]any)) != 0 || fmt.Sprint(fw["flags"]) != "[mh-port]" {
		t.Errorf("firewall-mark service %v", fw)
	}
}

func TestIPVSInfo(t *testing.T) {
	info := ipvs.Info{Version: 0x010201, ConnTableSize: 4096}
	to := ipvs.Timeouts{TCPSeconds: 900, TCPFinSeconds: 120, UDPSeconds: 300}
	var b bytes.Buffer
	if err := printInfo(&b, "json", info, to); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	want := map[string]any{"version": "1.2.1", "connectionTableSize": 4096.0, "tcpTimeoutSeconds": 900.0,
		"tcpFinTimeoutSeconds": 120.0, "udpTimeoutSeconds": 300.0}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("info -o json (-want +got):\n%s", d)
	}
	b.Reset()
	if err := printInfo(&b, "table", info, to); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff("IP Virtual Server version 1.2.1 (size=4096)\nTimeout (tcp tcpfin udp): 900 120 300\n", b.String()); d != "" {
		t.Errorf("info (-want +got):\n%s", d)
	}
}

func TestIPVSCommands(t *testing.T) {
	cmd := newIPVSCommand()
	for _, name := range []string{"list", "info"} {
		sub, _, err := cmd.Find([]string{name})
		if err != nil || sub.Name() != name || sub.Flags().Lookup("output") == nil || sub.InheritedFlags().Lookup("netns") == nil {
			t.Errorf("kubelvs ipvs %s: %v, %v", name, sub, err)
		}
	}
	if err := checkFormat("yaml"); err == nil {
		t.Errorf("-o yaml accepted")
	}
}
