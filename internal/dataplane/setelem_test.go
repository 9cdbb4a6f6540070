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

// newSetElemMsg encodes a NEWSETELEM payload with mdlayher/netlink's encoder (not the code
// under test): nfgenmsg, the table and set names, then the elements, each with its key and
// flags. A nil key makes an element without NFTA_SET_ELEM_KEY.
func newSetElemMsg(t testing.TB, keys ...[]byte) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, "kubelvs")
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, "vips4")
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
		for _, k := range keys {
			ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
				if k != nil {
					ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
						ae.Bytes(unix.NFTA_DATA_VALUE, k)
						return nil
					})
				}
				ae.ByteOrder = binary.BigEndian
				ae.Uint32(unix.NFTA_SET_ELEM_FLAGS, 0)
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

func TestParseSetElems(t *testing.T) {
	concat := []byte{192, 0, 2, 10, 6, 0, 0, 0, 0, 80, 0, 0} // 192.0.2.10 . tcp . 80
	good := newSetElemMsg(t, []byte{192, 0, 2, 10}, concat, []byte{0x20, 0x01, 0x0d, 0xb8, 12: 0, 15: 0x10})
	tests := []struct {
		name    string
		b       []byte
		want    [][]byte
		wantErr bool
	}{
		{"three keys, other attributes skipped", good, [][]byte{{192, 0, 2, 10}, concat, {0x20, 0x01, 0x0d, 0xb8, 12: 0, 15: 0x10}}, false},
		{"no elements (an empty set's dump)", newSetElemMsg(t), nil, false},
		{"only the nfgenmsg", good[:4], nil, false},
		{"shorter than nfgenmsg", good[:3], nil, true},
		{"an element without a key", newSetElemMsg(t, []byte{1, 2, 3, 4}, nil), [][]byte{{1, 2, 3, 4}}, true},
		{"cut inside an attribute", good[:len(good)-3], nil, true},
		{"an attribute longer than the message", append(good[:4:4], 0xff, 0x00, 0x03, 0x00), nil, true},
		{"an attribute shorter than its header", append(good[:4:4], 0x02, 0x00, 0x03, 0x00), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]byte
			err := parseSetElems(tt.b, func(k []byte) error { got = append(got, append([]byte(nil), k...)); return nil })
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, errSetElem)) {
				t.Fatalf("err = %v, want an error: %v (matching errSetElem)", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
	stop := errors.New("stop")
	if err := parseSetElems(good, func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("the callback's error: %v, want it returned", err)
	}
}

func FuzzParseSetElems(f *testing.F) {
	f.Add(newSetElemMsg(f, []byte{192, 0, 2, 10}, []byte{192, 0, 2, 10, 6, 0, 0, 0, 0, 80, 0, 0}))
	f.Add(newSetElemMsg(f, nil))
	f.Add([]byte{unix.NFPROTO_INET, 0, 0, 0, 8, 0, 3, 0x80, 4, 0, 8, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := parseSetElems(b, func(k []byte) error {
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
	m4 := Masq{Backend: netip.MustParseAddr("10.244.2.7")}
	want.Ports[p4], want.Ports[p6], want.Masq[m4] = struct{}{}, struct{}{}, struct{}{}
	for set, el := range map[string][]nftables.SetElement{
		setVIPs4: v4, setVIPs6: {{Key: addrKey(v6)}}, setPorts4: {{Key: portKey(p4)}},
		setPorts6: {{Key: portKey(p6)}}, setMasq4: {{Key: masqKey(m4)}},
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
