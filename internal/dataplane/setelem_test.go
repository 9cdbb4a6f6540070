package dataplane

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// testElem is an element as a test encodes it: a nil key makes one without
// NFTA_SET_ELEM_KEY; flagBytes, when set, is NFTA_SET_ELEM_FLAGS's payload as is.
type testElem struct {
	key       []byte
	flags     uint32
	flagBytes []byte
}

// newSetElemMsg encodes a NEWSETELEM payload with mdlayher/netlink's encoder (not the code
// under test): nfgenmsg, the table and set names, then the elements, each with its key and
// flags 0.
func newSetElemMsg(t testing.TB, keys ...[]byte) []byte {
	elems := make([]testElem, len(keys))
	for i, k := range keys {
		elems[i] = testElem{key: k}
	}
	return newSetElemMsgOf(t, elems...)
}

func newSetElemMsgOf(t testing.TB, elems ...testElem) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, "kubelvs")
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, "vips4")
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
		for _, e := range elems {
			ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
				if e.key != nil {
					ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
						ae.Bytes(unix.NFTA_DATA_VALUE, e.key)
						return nil
					})
				}
				if e.flagBytes != nil {
					ae.Bytes(unix.NFTA_SET_ELEM_FLAGS, e.flagBytes)
				} else {
					ae.ByteOrder = binary.BigEndian
					ae.Uint32(unix.NFTA_SET_ELEM_FLAGS, e.flags)
				}
				return nil
			})
		}
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, b...)
}

type parsedElem struct {
	Key   []byte
	Flags uint32
}

func TestParseSetElems(t *testing.T) {
	concat := []byte{192, 0, 2, 10, 6, 0, 0, 0, 0, 80, 0, 0} // 192.0.2.10 . tcp . 80
	v6 := []byte{0x20, 0x01, 0x0d, 0xb8, 12: 0, 15: 0x10}
	good := newSetElemMsg(t, []byte{192, 0, 2, 10}, concat, v6)
	// An interval set's: 0.0.0.0 end, 10.244.1.0, 10.244.2.0 end.
	interval := newSetElemMsgOf(t, testElem{key: []byte{0, 0, 0, 0}, flags: unix.NFT_SET_ELEM_INTERVAL_END},
		testElem{key: []byte{10, 244, 1, 0}}, testElem{key: []byte{10, 244, 2, 0}, flags: unix.NFT_SET_ELEM_INTERVAL_END})
	tests := []struct {
		name    string
		b       []byte
		want    []parsedElem
		wantErr bool
	}{
		{"three keys, other attributes skipped", good, []parsedElem{{Key: []byte{192, 0, 2, 10}}, {Key: concat}, {Key: v6}}, false},
		{"interval ends", interval, []parsedElem{{Key: []byte{0, 0, 0, 0}, Flags: 1}, {Key: []byte{10, 244, 1, 0}}, {Key: []byte{10, 244, 2, 0}, Flags: 1}}, false},
		{"no elements (an empty set's dump)", newSetElemMsg(t), nil, false},
		{"only the nfgenmsg", good[:4], nil, false},
		{"shorter than nfgenmsg", good[:3], nil, true},
		{"an element without a key", newSetElemMsg(t, []byte{1, 2, 3, 4}, nil), []parsedElem{{Key: []byte{1, 2, 3, 4}}}, true},
		{"flags of 2 bytes", newSetElemMsgOf(t, testElem{key: []byte{1, 2, 3, 4}, flagBytes: []byte{0, 1}}), nil, true},
		{"cut inside an attribute", good[:len(good)-3], nil, true},
		{"an attribute longer than the message", append(good[:4:4], 0xff, 0x00, 0x03, 0x00), nil, true},
		{"an attribute shorter than its header", append(good[:4:4], 0x02, 0x00, 0x03, 0x00), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []parsedElem
			err := parseSetElems(tt.b, func(k []byte, flags uint32) error {
				got = append(got, parsedElem{append([]byte(nil), k...), flags})
				return nil
			})
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, errSetElem)) {
				t.Fatalf("err = %v, want an error: %v (matching errSetElem)", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("elements (-want +got):\n%s", diff)
			}
		})
	}
	stop := errors.New("stop")
	if err := parseSetElems(good, func([]byte, uint32) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("the callback's error: %v, want it returned", err)
	}
}

func FuzzParseSetElems(f *testing.F) {
	f.Add(newSetElemMsg(f, []byte{192, 0, 2, 10}, []byte{192, 0, 2, 10, 6, 0, 0, 0, 0, 80, 0, 0}))
	f.Add(newSetElemMsg(f, nil))
	f.Add(newSetElemMsgOf(f, testElem{key: []byte{0, 0, 0, 0}, flags: unix.NFT_SET_ELEM_INTERVAL_END}, testElem{key: []byte{1}, flagBytes: []byte{1}}))
	f.Add([]byte{unix.NFPROTO_INET, 0, 0, 0, 8, 0, 3, 0x80, 4, 0, 8, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := parseSetElems(b, func(k []byte, _ uint32) error {
			n++
			if len(k) > len(b) {
				t.Fatalf("a key of %d bytes from %d", len(k), len(b))
			}
			return nil
		})
		if err != nil && !errors.Is(err, errSetElem) {
			t.Fatalf("error %v does not match errSetElem", err)
		}
	})
}

// The real kernel's dump (the host has nf_tables): sets made and filled through
// google/nftables in a namespace of their own, read back key by key.
func TestReadElementsRealKernel(t *testing.T) {
	const name = "kubelvs-setelem-test"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add (needs root and iproute2): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(table())
	want := NewElements()
	sets := map[string]*nftables.Set{}
	for _, s := range tableSets(tbl) {
		if err := c.AddSet(s, nil); err != nil {
			t.Fatal(err)
		}
		sets[s.Name] = s
	}
	// 3,000 VIPs: the dump spans several messages.
	var v4 []nftables.SetElement
	for i := range 3000 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		want.VIPs[a] = struct{}{}
		v4 = append(v4, nftables.SetElement{Key: addrKey(a)})
	}
	v6 := netip.MustParseAddr("2001:db8::10")
	want.VIPs[v6] = struct{}{}
	p4 := Port{VIP: netip.MustParseAddr("198.18.0.1"), Protocol: lvs.UDP, Port: 53}
	p6 := Port{VIP: v6, Protocol: lvs.TCP, Port: 443}
	want.Ports[p4], want.Ports[p6] = struct{}{}, struct{}{}
	// The interval sets, as the agent writes them for a dual-stack pod CIDR.
	var n4, n6 []nftables.SetElement
	for _, b := range NoMasqBounds(MasqueradeRemote, []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")}) {
		want.NoMasq[b] = struct{}{}
		if b.Addr.Is4() {
			n4 = append(n4, boundElem(b))
		} else {
			n6 = append(n6, boundElem(b))
		}
	}
	if len(want.NoMasq) != 6 {
		t.Fatalf("%d bounds, want 6", len(want.NoMasq))
	}
	for set, el := range map[string][]nftables.SetElement{
		setVIPs4: v4, setVIPs6: {{Key: addrKey(v6)}}, setPorts4: {{Key: portKey(p4)}},
		setPorts6: {{Key: portKey(p6)}}, setNoMasq4: n4, setNoMasq6: n6,
	} {
		if err := c.SetAddElements(sets[set], el); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables in a new namespace: %v", err)
	}
	raw, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	got := NewElements()
	if err := readElements(raw, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("elements read back (-made +read):\n%s", diff)
	}
}
