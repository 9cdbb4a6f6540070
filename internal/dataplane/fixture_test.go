package dataplane

import (
	"net/netip"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// fixture is what `nft -j list table inet kubelvs` printed in the VM (hack/vm: Debian's
// 6.1.0-57 kernel, nftables 1.0.6; the guest has no /etc/protocols, so protocols are numbers)
// for the table fixtureServices makes. TestKernelTableAndAddresses (ipvsvm) prints the
// listing between @@nft-json-begin and @@nft-json-end when the file is missing or differs; it
// was captured with
//
//	hack/vm/run-tests.sh -v -run TestKernelTableAndAddresses ./internal/dataplane | tee log
//	awk '/@@nft-json-begin/{n++;f=n==1;next}/@@nft-json-end/{f=0}f' log | sed 's/^        //' | grep -v '^$' >testdata/nft-list-table.json
//
// TestTableEncoding checks the library's netlink messages against it on any host.
const fixture = "testdata/nft-list-table.json"

// fixtureServices is the table of testdata/nft-list-table.json: two IPv4 services on one VIP,
// an IPv4 UDP one and an IPv6 one, on a node whose pod CIDR is 10.244.1.0/24 (MasqueradeRemote).
func fixtureServices(d *Dataplane) {
	d.SetLocalPrefixes([]netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")})
	v4, v4b, v6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8::10")
	d.Set(key(v4, lvs.TCP, 80))
	d.Set(key(v4, lvs.TCP, 443))
	d.Set(key(v4b, lvs.UDP, 53))
	d.Set(key(v6, lvs.TCP, 443))
}
