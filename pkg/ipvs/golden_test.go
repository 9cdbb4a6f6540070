package ipvs

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// The golden requests below are written by hand from linux/ip_vs.h: command numbers
// (IPVS_CMD_*), attribute numbers (IPVS_CMD_ATTR_*, IPVS_SVC_ATTR_*, IPVS_DEST_ATTR_*,
// IPVS_DAEMON_ATTR_*), sizes and byte orders (__be16 ports, union nf_inet_addr addresses of 16
// bytes, struct ip_vs_flags as two host-order u32, a __be32 IPv4 netmask but a host-order IPv6
// prefix length), on a little-endian host. Only the netlink framing (length, padding,
// NLA_F_NESTED) is computed, by g and gn.

// g is one attribute: a host-order u16 length (4 + payload), a u16 type, the payload, padding to
// 4 bytes.
func g(typ uint16, payload ...byte) []byte {
	b := []byte{byte(4 + len(payload)), byte((4 + len(payload)) >> 8), byte(typ), byte(typ >> 8)}
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// gn is a nested attribute (NLA_F_NESTED, 0x8000, set) of the given parts.
func gn(typ uint16, parts ...[]byte) []byte { return g(typ|0x8000, slices.Concat(parts...)...) }

// Addresses as union nf_inet_addr: IPv4 in the first 4 bytes.
var (
	a10001   = []byte{10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	a10101   = []byte{10, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	a6db81   = []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	a6db810  = []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	zeroAddr = make([]byte, 16)
)

// The service key of TCP 10.0.0.1:80 as a destination request carries it.
var keyTCP10001 = gn(1, // IPVS_CMD_ATTR_SERVICE
	g(1, 2, 0),       // IPVS_SVC_ATTR_AF: AF_INET, u16
	g(2, 6, 0),       // IPVS_SVC_ATTR_PROTOCOL: IPPROTO_TCP, u16
	g(3, a10001...),  // IPVS_SVC_ATTR_ADDR
	g(4, 0x00, 0x50)) // IPVS_SVC_ATTR_PORT: 80, __be16

type goldenReq struct {
	Cmd   uint8
	Attrs []byte
}

// capture runs do against a kernel that records every IPVS request and answers each with
// nothing (requests that wait for a reply give up after a short timeout).
func capture(t *testing.T, do func(c *Client)) []goldenReq {
	t.Helper()
	var got []goldenReq
	k := &gnltest.Kernel{}
	k.Register(&gnltest.Family{Name: "IPVS", Version: 1, Handle: func(r gnltest.Request) ([]gnltest.Message, error) {
		got = append(got, goldenReq{Cmd: r.Cmd, Attrs: slices.Clone(r.Attrs)})
		return nil, nil
	}})
	conn := k.Dial(&gnl.Config{Timeout: 20 * time.Millisecond})
	defer conn.Close()
	do(NewWithConn(conn, nil))
	return got
}

func littleEndian(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the golden requests are written for a little-endian host")
	}
}

func TestGoldenServiceRequests(t *testing.T) {
	littleEndian(t)
	tests := []struct {
		name string
		svc  lvs.Service
		want []byte // IPVS_CMD_ATTR_SERVICE of NEW_SERVICE and SET_SERVICE
		key  []byte // IPVS_CMD_ATTR_SERVICE of DEL_SERVICE
	}{
		{"TCP IPv4", svc(lvs.TCP, "10.0.0.1", 80, "rr"),
			gn(1, g(1, 2, 0), g(2, 6, 0), g(3, a10001...), g(4, 0x00, 0x50),
				g(6, 'r', 'r', 0),                        // IPVS_SVC_ATTR_SCHED_NAME, NUL-terminated
				g(7, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), // IPVS_SVC_ATTR_FLAGS: flags 0, mask all
				g(8, 0, 0, 0, 0),                         // IPVS_SVC_ATTR_TIMEOUT
				g(9, 0xff, 0xff, 0xff, 0xff)),            // IPVS_SVC_ATTR_NETMASK: /32 as __be32
			gn(1, g(1, 2, 0), g(2, 6, 0), g(3, a10001...), g(4, 0x00, 0x50))},
		{"UDP IPv6, one-packet scheduling, default scheduler",
			lvs.Service{ServiceKey: key(lvs.UDP, "2001:db8::1", 53), Flags: lvs.FlagOnePacket},
			gn(1, g(1, 10, 0), g(2, 17, 0), g(3, a6db81...), g(4, 0x00, 0x35),
				g(6, 'w', 'l', 'c', 0),
				g(7, 0x04, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), // IP_VS_SVC_F_ONEPACKET
				g(8, 0, 0, 0, 0),
				g(9, 128, 0, 0, 0)), // IPv6: the prefix length, host order
			gn(1, g(1, 10, 0), g(2, 17, 0), g(3, a6db81...), g(4, 0x00, 0x35))},
		{"SCTP, sh with both scheduler flags",
			lvs.Service{ServiceKey: key(lvs.SCTP, "10.0.0.1", 3868), Scheduler: "sh", Flags: lvs.FlagSHFallback | lvs.FlagSHPort},
			gn(1, g(1, 2, 0), g(2, 132, 0), g(3, a10001...), g(4, 0x0f, 0x1c),
				g(6, 's', 'h', 0),
				g(7, 0x18, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), // IP_VS_SVC_F_SCHED1 | SCHED2
				g(8, 0, 0, 0, 0),
				g(9, 0xff, 0xff, 0xff, 0xff)),
			gn(1, g(1, 2, 0), g(2, 132, 0), g(3, a10001...), g(4, 0x0f, 0x1c))},
		{"firewall mark IPv4", lvs.Service{ServiceKey: lvs.ServiceKey{FirewallMark: 7}, Scheduler: "wlc"},
			gn(1, g(1, 2, 0), g(3, zeroAddr...), g(4, 0, 0),
				g(5, 7, 0, 0, 0), // IPVS_SVC_ATTR_FWMARK, u32
				g(6, 'w', 'l', 'c', 0), g(7, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), g(8, 0, 0, 0, 0), g(9, 0xff, 0xff, 0xff, 0xff)),
			gn(1, g(1, 2, 0), g(2, 0, 0), g(3, zeroAddr...), g(4, 0, 0), g(5, 7, 0, 0, 0))},
		{"firewall mark IPv6, mh-port", lvs.Service{ServiceKey: lvs.ServiceKey{Family: lvs.IPv6, FirewallMark: 0x10203}, Scheduler: "mh", Flags: lvs.FlagMHPort},
			gn(1, g(1, 10, 0), g(3, zeroAddr...), g(4, 0, 0), g(5, 0x03, 0x02, 0x01, 0),
				g(6, 'm', 'h', 0), g(7, 0x10, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), g(8, 0, 0, 0, 0), g(9, 128, 0, 0, 0)),
			gn(1, g(1, 10, 0), g(2, 0, 0), g(3, zeroAddr...), g(4, 0, 0), g(5, 0x03, 0x02, 0x01, 0))},
		{"persistent, IPv4 netmask /24, hashed never sent",
			lvs.Service{ServiceKey: key(lvs.TCP, "10.0.0.1", 0), Scheduler: "lc", Flags: lvs.FlagPersistent | lvs.FlagHashed, TimeoutSeconds: 300, PersistencePrefixLength: 24},
			gn(1, g(1, 2, 0), g(2, 6, 0), g(3, a10001...), g(4, 0, 0),
				g(6, 'l', 'c', 0),
				g(7, 0x01, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), // IP_VS_SVC_F_PERSISTENT only
				g(8, 0x2c, 0x01, 0, 0),                      // 300 s
				g(9, 0xff, 0xff, 0xff, 0x00)),               // 255.255.255.0
			gn(1, g(1, 2, 0), g(2, 6, 0), g(3, a10001...), g(4, 0, 0))},
		{"persistent, IPv6 netmask /64",
			lvs.Service{ServiceKey: key(lvs.TCP, "2001:db8::1", 443), Scheduler: "rr", Flags: lvs.FlagPersistent, TimeoutSeconds: 60, PersistencePrefixLength: 64},
			gn(1, g(1, 10, 0), g(2, 6, 0), g(3, a6db81...), g(4, 0x01, 0xbb),
				g(6, 'r', 'r', 0), g(7, 0x01, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), g(8, 60, 0, 0, 0),
				g(9, 64, 0, 0, 0)),
			gn(1, g(1, 10, 0), g(2, 6, 0), g(3, a6db81...), g(4, 0x01, 0xbb))},
		{"persistence engine sip",
			lvs.Service{ServiceKey: key(lvs.UDP, "10.0.0.1", 5060), Scheduler: "rr", Flags: lvs.FlagPersistent, TimeoutSeconds: 30, PersistenceEngine: "sip"},
			gn(1, g(1, 2, 0), g(2, 17, 0), g(3, a10001...), g(4, 0x13, 0xc4),
				g(6, 'r', 'r', 0), g(7, 0x01, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), g(8, 30, 0, 0, 0), g(9, 0xff, 0xff, 0xff, 0xff),
				g(11, 's', 'i', 'p', 0)), // IPVS_SVC_ATTR_PE_NAME
			gn(1, g(1, 2, 0), g(2, 17, 0), g(3, a10001...), g(4, 0x13, 0xc4))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := capture(t, func(c *Client) {
				s := tc.svc
				_ = c.AddService(context.Background(), &s)
				_ = c.UpdateService(context.Background(), &s)
				_ = c.DeleteService(context.Background(), &s)
				_, _ = c.Service(context.Background(), s.ServiceKey)
				_ = c.ZeroService(context.Background(), s.ServiceKey)
			})
			want := []goldenReq{
				{1, tc.want}, // IPVS_CMD_NEW_SERVICE
				{2, tc.want}, // IPVS_CMD_SET_SERVICE
				{3, tc.key},  // IPVS_CMD_DEL_SERVICE
				{4, tc.key},  // IPVS_CMD_GET_SERVICE
				{16, tc.key}, // IPVS_CMD_ZERO
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("requests (-golden +sent):\n%s", d)
			}
		})
	}
}

func TestGoldenDestinationRequests(t *testing.T) {
	littleEndian(t)
	s := svc(lvs.TCP, "10.0.0.1", 80, "rr")
	tests := []struct {
		name string
		d    lvs.Destination
		want []byte // IPVS_CMD_ATTR_DEST of NEW_DEST and SET_DEST
		key  []byte // IPVS_CMD_ATTR_DEST of DEL_DEST
	}{
		{"masquerade", dst("10.1.0.1", 8080, lvs.Masquerade, 1),
			gn(2, // IPVS_CMD_ATTR_DEST
				g(1, a10101...),  // IPVS_DEST_ATTR_ADDR
				g(2, 0x1f, 0x90), // IPVS_DEST_ATTR_PORT: 8080, __be16
				g(3, 0, 0, 0, 0), // IPVS_DEST_ATTR_FWD_METHOD: IP_VS_CONN_F_MASQ
				g(4, 1, 0, 0, 0), // IPVS_DEST_ATTR_WEIGHT
				g(5, 0, 0, 0, 0), // IPVS_DEST_ATTR_U_THRESH
				g(6, 0, 0, 0, 0), // IPVS_DEST_ATTR_L_THRESH
				g(11, 2, 0)),     // IPVS_DEST_ATTR_ADDR_FAMILY: AF_INET
			gn(2, g(1, a10101...), g(2, 0x1f, 0x90), g(11, 2, 0))},
		{"local", dst("10.1.0.1", 80, lvs.Local, 0),
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(3, 1, 0, 0, 0), g(4, 0, 0, 0, 0), g(5, 0, 0, 0, 0), g(6, 0, 0, 0, 0), g(11, 2, 0)),
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(11, 2, 0))},
		{"direct routing with thresholds",
			lvs.Destination{Address: mustAddr("10.1.0.1"), Port: 80, Forwarding: lvs.DirectRouting, Weight: 0x7fffffff, UpperThreshold: 1000, LowerThreshold: 10},
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(3, 3, 0, 0, 0), g(4, 0xff, 0xff, 0xff, 0x7f),
				g(5, 0xe8, 0x03, 0, 0), g(6, 10, 0, 0, 0), g(11, 2, 0)),
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(11, 2, 0))},
		{"bypass", dst("10.1.0.1", 80, lvs.Bypass, 2),
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(3, 4, 0, 0, 0), g(4, 2, 0, 0, 0), g(5, 0, 0, 0, 0), g(6, 0, 0, 0, 0), g(11, 2, 0)),
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(11, 2, 0))},
		{"IPIP tunnel (type 0, not sent)", dst("10.1.0.1", 80, lvs.Tunnel, 1),
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(3, 2, 0, 0, 0), g(4, 1, 0, 0, 0), g(5, 0, 0, 0, 0), g(6, 0, 0, 0, 0), g(11, 2, 0)),
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(11, 2, 0))},
		{"GUE tunnel with port and checksum",
			lvs.Destination{Address: mustAddr("10.1.0.1"), Port: 80, Forwarding: lvs.Tunnel, Weight: 1, TunnelType: lvs.TunnelGUE, TunnelPort: 6080, TunnelFlags: lvs.TunnelChecksum},
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(3, 2, 0, 0, 0), g(4, 1, 0, 0, 0), g(5, 0, 0, 0, 0), g(6, 0, 0, 0, 0), g(11, 2, 0),
				g(13, 1),          // IPVS_DEST_ATTR_TUN_TYPE: IP_VS_CONN_F_TUNNEL_TYPE_GUE, u8
				g(14, 0x17, 0xc0), // IPVS_DEST_ATTR_TUN_PORT: 6080, __be16
				g(15, 1, 0)),      // IPVS_DEST_ATTR_TUN_FLAGS: IP_VS_TUNNEL_ENCAP_FLAG_CSUM, u16
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(11, 2, 0))},
		{"GRE tunnel with remote checksum",
			lvs.Destination{Address: mustAddr("10.1.0.1"), Port: 80, Forwarding: lvs.Tunnel, Weight: 1, TunnelType: lvs.TunnelGRE, TunnelFlags: lvs.TunnelRemoteChecksum},
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(3, 2, 0, 0, 0), g(4, 1, 0, 0, 0), g(5, 0, 0, 0, 0), g(6, 0, 0, 0, 0), g(11, 2, 0),
				g(13, 2),     // IP_VS_CONN_F_TUNNEL_TYPE_GRE
				g(15, 2, 0)), // IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM
			gn(2, g(1, a10101...), g(2, 0, 0x50), g(11, 2, 0))},
		{"mixed family: IPv6 tunnel destination of an IPv4 service",
			lvs.Destination{Address: mustAddr("2001:db8::10"), Port: 80, Forwarding: lvs.Tunnel, Weight: 1, TunnelType: lvs.TunnelGUE, TunnelPort: 1, TunnelFlags: lvs.TunnelChecksum | lvs.TunnelRemoteChecksum},
			gn(2, g(1, a6db810...), g(2, 0, 0x50), g(3, 2, 0, 0, 0), g(4, 1, 0, 0, 0), g(5, 0, 0, 0, 0), g(6, 0, 0, 0, 0),
				g(11, 10, 0), // AF_INET6
				g(13, 1), g(14, 0, 1), g(15, 3, 0)),
			gn(2, g(1, a6db810...), g(2, 0, 0x50), g(11, 10, 0))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := capture(t, func(c *Client) {
				d := tc.d
				_ = c.AddDestination(context.Background(), &s, &d)
				_ = c.UpdateDestination(context.Background(), &s, &d)
				_ = c.DeleteDestination(context.Background(), &s, &d)
			})
			want := []goldenReq{
				{5, slices.Concat(keyTCP10001, tc.want)}, // IPVS_CMD_NEW_DEST
				{6, slices.Concat(keyTCP10001, tc.want)}, // IPVS_CMD_SET_DEST
				{7, slices.Concat(keyTCP10001, tc.key)},  // IPVS_CMD_DEL_DEST
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("requests (-golden +sent):\n%s", d)
			}
		})
	}
	// Apply sends the same bytes as the single-operation methods, its key cache included.
	d1, d2 := dst("10.1.0.1", 8080, lvs.Masquerade, 1), dst("10.1.0.1", 80, lvs.Local, 0)
	got := capture(t, func(c *Client) {
		_, _ = c.Apply(context.Background(), []Op{{Kind: AddDestination, Service: &s, Destination: &d1}, {Kind: AddDestination, Service: &s, Destination: &d2}})
	})
	want := []goldenReq{
		{5, slices.Concat(keyTCP10001, tests[0].want)},
		{5, slices.Concat(keyTCP10001, tests[1].want)},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Apply's requests (-golden +sent):\n%s", d)
	}
}

func TestGoldenGlobalRequests(t *testing.T) {
	littleEndian(t)
	got := capture(t, func(c *Client) {
		bg := context.Background()
		_ = c.StartDaemon(bg, Daemon{State: DaemonMaster, Interface: "eth0", SyncID: 9, MaxLen: 1400,
			Group: netip.MustParseAddr("239.1.2.3"), Port: 8848, TTL: 2})
		_ = c.StartDaemon(bg, Daemon{State: DaemonBackup, Interface: "eth1", SyncID: 0x0102, Group: netip.MustParseAddr("ff02::1")})
		_ = c.StopDaemon(bg, DaemonBackup)
		_, _ = c.Daemons(bg)
		_ = c.SetTimeouts(bg, Timeouts{TCPSeconds: 900, TCPFinSeconds: 120, UDPSeconds: 300})
		_ = c.SetTimeouts(bg, Timeouts{UDPSeconds: 5})
		_, _ = c.Timeouts(bg)
		_, _ = c.Info(bg)
		_ = c.Zero(bg)
		_ = c.Flush(bg)
		_, _ = c.Services(bg)
		_, _ = c.Destinations(bg, key(lvs.TCP, "10.0.0.1", 80))
	})
	ff02 := []byte{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	want := []goldenReq{
		{9, gn(3, // IPVS_CMD_NEW_DAEMON, IPVS_CMD_ATTR_DAEMON
			g(1, 1, 0, 0, 0),            // IPVS_DAEMON_ATTR_STATE: IP_VS_STATE_MASTER, u32
			g(2, 'e', 't', 'h', '0', 0), // IPVS_DAEMON_ATTR_MCAST_IFN
			g(3, 9, 0, 0, 0),            // IPVS_DAEMON_ATTR_SYNC_ID, u32
			g(4, 0x78, 0x05),            // IPVS_DAEMON_ATTR_SYNC_MAXLEN: 1400, u16
			g(5, 239, 1, 2, 3),          // IPVS_DAEMON_ATTR_MCAST_GROUP: struct in_addr
			g(7, 0x90, 0x22),            // IPVS_DAEMON_ATTR_MCAST_PORT: 8848, u16 host order
			g(8, 2))},                   // IPVS_DAEMON_ATTR_MCAST_TTL, u8
		{9, gn(3, g(1, 2, 0, 0, 0), g(2, 'e', 't', 'h', '1', 0), g(3, 0x02, 0x01, 0, 0),
			g(6, ff02...))}, // IPVS_DAEMON_ATTR_MCAST_GROUP6: struct in6_addr
		{10, gn(3, g(1, 2, 0, 0, 0))}, // IPVS_CMD_DEL_DAEMON: the state only
		{11, nil},                     // IPVS_CMD_GET_DAEMON
		{12, slices.Concat( // IPVS_CMD_SET_CONFIG, top-level u32 attributes
			g(4, 0x84, 0x03, 0, 0),   // IPVS_CMD_ATTR_TIMEOUT_TCP: 900
			g(5, 120, 0, 0, 0),       // IPVS_CMD_ATTR_TIMEOUT_TCP_FIN
			g(6, 0x2c, 0x01, 0, 0))}, // IPVS_CMD_ATTR_TIMEOUT_UDP: 300
		{12, g(6, 5, 0, 0, 0)}, // zero timeouts are not sent: the kernel leaves them
		{13, nil},              // IPVS_CMD_GET_CONFIG
		{15, nil},              // IPVS_CMD_GET_INFO
		{16, nil},              // IPVS_CMD_ZERO without a service: every counter
		{17, nil},              // IPVS_CMD_FLUSH
		{4, nil},               // IPVS_CMD_GET_SERVICE dump
		{8, keyTCP10001},       // IPVS_CMD_GET_DEST dump of one service
		{4, keyTCP10001},       // ... which was empty: GET_SERVICE tells whether the service exists
	}
	if d := cmp.Diff(want, got, cmp.Comparer(slices.Equal[[]byte])); d != "" {
		t.Errorf("requests (-golden +sent):\n%s", d)
	}
}
