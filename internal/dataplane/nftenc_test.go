package dataplane

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The summary both sides are reduced to: what nft -j shows of a table, and what the
// library's netlink messages say, decoded here independently of nft.go.
type tableSummary struct {
	Table  string
	Sets   map[string]setSummary
	Chains map[string]chainSummary
	Rules  map[string][]ruleSummary
}

type setSummary struct {
	Type     []string
	Interval bool
	Elems    []string // an interval set's as prefixes (a/n) or ranges (a-b)
}

type chainSummary struct {
	Type, Hook, Policy string
	Prio               int
}

type ruleSummary struct {
	Sets    []string // sets looked up, "!" before the name for "not in"
	Counter bool
	Verdict string // accept, drop, jump <chain>, masquerade
}

// summaryOfJSON reduces `nft -j list table` output.
func summaryOfJSON(t *testing.T, b []byte) tableSummary {
	t.Helper()
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	s := tableSummary{Sets: map[string]setSummary{}, Chains: map[string]chainSummary{}, Rules: map[string][]ruleSummary{}}
	for _, o := range doc.Nftables {
		switch {
		case o["table"] != nil:
			var v struct{ Family, Name string }
			_ = json.Unmarshal(o["table"], &v)
			s.Table = v.Family + " " + v.Name
		case o["set"] != nil:
			var v struct {
				Name  string
				Type  json.RawMessage
				Flags []string
				Elem  []json.RawMessage
			}
			_ = json.Unmarshal(o["set"], &v)
			ss := setSummary{Interval: slices.Contains(v.Flags, "interval")}
			var one string
			if json.Unmarshal(v.Type, &one) == nil {
				ss.Type = []string{one}
			} else {
				_ = json.Unmarshal(v.Type, &ss.Type)
			}
			for _, e := range v.Elem {
				ss.Elems = append(ss.Elems, jsonElem(e))
			}
			slices.Sort(ss.Elems)
			s.Sets[v.Name] = ss
		case o["chain"] != nil:
			var v struct {
				Name, Type, Hook, Policy string
				Prio                     int
			}
			_ = json.Unmarshal(o["chain"], &v)
			s.Chains[v.Name] = chainSummary{Type: v.Type, Hook: v.Hook, Policy: v.Policy, Prio: v.Prio}
		case o["rule"] != nil:
			var v struct {
				Chain string
				Expr  []map[string]json.RawMessage
			}
			_ = json.Unmarshal(o["rule"], &v)
			var r ruleSummary
			for _, e := range v.Expr {
				for k, val := range e {
					switch k {
					case "match":
						var m struct {
							Op    string
							Right json.RawMessage
						}
						_ = json.Unmarshal(val, &m)
						var set string
						if json.Unmarshal(m.Right, &set) == nil && strings.HasPrefix(set, "@") {
							if m.Op == "!=" {
								set = "!" + set[1:]
							} else {
								set = set[1:]
							}
							r.Sets = append(r.Sets, set)
						}
					case "counter":
						r.Counter = true
					case "accept", "drop", "masquerade":
						r.Verdict = k
					case "jump":
						var j struct{ Target string }
						_ = json.Unmarshal(val, &j)
						r.Verdict = "jump " + j.Target
					}
				}
			}
			s.Rules[v.Chain] = append(s.Rules[v.Chain], r)
		}
	}
	return s
}

func jsonElem(e json.RawMessage) string {
	var s string
	if json.Unmarshal(e, &s) == nil {
		return s
	}
	var iv struct {
		Prefix *struct {
			Addr string
			Len  int
		}
		Range []string
	}
	if json.Unmarshal(e, &iv) == nil {
		switch {
		case iv.Prefix != nil:
			return fmt.Sprintf("%s/%d", iv.Prefix.Addr, iv.Prefix.Len)
		case len(iv.Range) == 2:
			return iv.Range[0] + "-" + iv.Range[1]
		}
	}
	var c struct{ Concat []any }
	_ = json.Unmarshal(e, &c)
	parts := make([]string, len(c.Concat))
	for i, p := range c.Concat {
		// nft names protocols from /etc/protocols when it has one (the VM has none).
		if n, ok := map[any]int{"tcp": 6, "udp": 17, "sctp": 132}[p]; ok {
			p = n
		}
		parts[i] = fmt.Sprint(p)
	}
	return strings.Join(parts, " . ")
}

// The nft datatype numbers (nftables' datatype.h) and their names in nft -j.
var typeNames = map[uint32]string{7: "ipv4_addr", 8: "ipv6_addr", 12: "inet_proto", 13: "inet_service"}

func setTypes(magic uint32) []string {
	var out []string
	for ; magic != 0; magic >>= 6 {
		out = append([]string{typeNames[magic&0x3f]}, out...)
	}
	return out
}

// renderKey renders a set element's key bytes as nft -j does, by the set's type (each field
// of a concatenation padded to 4 bytes).
func renderKey(types []string, b []byte) string {
	var parts []string
	for _, ty := range types {
		switch ty {
		case "ipv4_addr":
			parts, b = append(parts, netip.AddrFrom4([4]byte(b[:4])).String()), b[4:]
		case "ipv6_addr":
			parts, b = append(parts, netip.AddrFrom16([16]byte(b[:16])).String()), b[16:]
		case "inet_proto":
			parts, b = append(parts, fmt.Sprint(b[0])), b[4:]
		case "inet_service":
			parts, b = append(parts, fmt.Sprint(binary.BigEndian.Uint16(b[:2]))), b[4:]
		}
	}
	return strings.Join(parts, " . ")
}

// msgBound is an element of an interval set as a message carries it.
type msgBound struct {
	addr netip.Addr
	end  bool
}

// renderIntervals renders an interval set's elements as nft lists them: each start with the
// end after it (none: to the family's last address) as a prefix when it is one, else a range;
// an end without a start before it (nft writes one at the family's first address) is nothing.
func renderIntervals(bounds []msgBound) []string {
	slices.SortFunc(bounds, func(a, b msgBound) int { return a.addr.Compare(b.addr) })
	var out []string
	for i, b := range bounds {
		if b.end {
			continue
		}
		var last netip.Addr
		if i+1 < len(bounds) && bounds[i+1].end {
			last = bounds[i+1].addr.Prev()
		} else {
			last, _ = netip.AddrFromSlice(bytes.Repeat([]byte{0xff}, b.addr.BitLen()/8))
		}
		out = append(out, rangeString(b.addr, last))
	}
	return out
}

// rangeString is a/n when [first, last] is that prefix, else first-last.
func rangeString(first, last netip.Addr) string {
	for bits := 0; bits <= first.BitLen(); bits++ {
		p := netip.PrefixFrom(first, bits)
		if next := last.Next(); p.Masked().Addr() == first && p.Contains(last) && (!next.IsValid() || !p.Contains(next)) {
			return p.String()
		}
	}
	return first.String() + "-" + last.String()
}

func attrs(t *testing.T, b []byte) map[uint16][]byte {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint16][]byte{}
	for ad.Next() {
		out[ad.Type()] = ad.Bytes()
	}
	return out
}

func list(t *testing.T, b []byte) [][]byte {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for ad.Next() {
		out = append(out, ad.Bytes())
	}
	return out
}

func str(b []byte) string { return strings.TrimRight(string(b), "\x00") }

// Netfilter verdicts (linux/netfilter.h).
const (
	nfDrop   = 0
	nfAccept = 1
)

var hookNames = map[uint32]string{unix.NF_INET_LOCAL_IN: "input", unix.NF_INET_POST_ROUTING: "postrouting"}

// summaryOfMessages decodes the requests of one nftables batch.
func summaryOfMessages(t *testing.T, msgs []netlink.Message) tableSummary {
	t.Helper()
	s := tableSummary{Sets: map[string]setSummary{}, Chains: map[string]chainSummary{}, Rules: map[string][]ruleSummary{}}
	for _, m := range msgs {
		if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES || len(m.Data) < 4 {
			continue // batch begin and end
		}
		a := attrs(t, m.Data[4:])
		switch m.Header.Type & 0xff {
		case unix.NFT_MSG_NEWTABLE:
			if m.Data[0] != unix.NFPROTO_INET {
				t.Errorf("table of family %d", m.Data[0])
			}
			s.Table = "inet " + str(a[unix.NFTA_TABLE_NAME])
		case unix.NFT_MSG_NEWSET:
			var flags uint32
			if f := a[unix.NFTA_SET_FLAGS]; f != nil {
				flags = binary.BigEndian.Uint32(f)
			}
			s.Sets[str(a[unix.NFTA_SET_NAME])] = setSummary{Type: setTypes(binary.BigEndian.Uint32(a[unix.NFTA_SET_KEY_TYPE])),
				Interval: flags&unix.NFT_SET_INTERVAL != 0}
		case unix.NFT_MSG_NEWSETELEM:
			name := str(a[unix.NFTA_SET_ELEM_LIST_SET])
			ss := s.Sets[name]
			var bounds []msgBound
			for _, e := range list(t, a[unix.NFTA_SET_ELEM_LIST_ELEMENTS]) {
				ea := attrs(t, e)
				key := attrs(t, ea[unix.NFTA_SET_ELEM_KEY])[unix.NFTA_DATA_VALUE]
				if ss.Interval {
					addr, _ := netip.AddrFromSlice(key)
					f := ea[unix.NFTA_SET_ELEM_FLAGS]
					bounds = append(bounds, msgBound{addr, len(f) == 4 && binary.BigEndian.Uint32(f)&unix.NFT_SET_ELEM_INTERVAL_END != 0})
					continue
				}
				ss.Elems = append(ss.Elems, renderKey(ss.Type, key))
			}
			ss.Elems = append(ss.Elems, renderIntervals(bounds)...)
			slices.Sort(ss.Elems)
			s.Sets[name] = ss
		case unix.NFT_MSG_NEWCHAIN:
			c := chainSummary{Type: str(a[unix.NFTA_CHAIN_TYPE])}
			if h := a[unix.NFTA_CHAIN_HOOK]; h != nil {
				ha := attrs(t, h)
				c.Hook = hookNames[binary.BigEndian.Uint32(ha[unix.NFTA_HOOK_HOOKNUM])]
				c.Prio = int(int32(binary.BigEndian.Uint32(ha[unix.NFTA_HOOK_PRIORITY])))
			}
			if p := a[unix.NFTA_CHAIN_POLICY]; p != nil && binary.BigEndian.Uint32(p) == nfAccept {
				c.Policy = "accept"
			}
			s.Chains[str(a[unix.NFTA_CHAIN_NAME])] = c
		case unix.NFT_MSG_NEWRULE:
			chain := str(a[unix.NFTA_RULE_CHAIN])
			s.Rules[chain] = append(s.Rules[chain], ruleOf(t, a[unix.NFTA_RULE_EXPRESSIONS]))
		}
	}
	return s
}

func ruleOf(t *testing.T, b []byte) ruleSummary {
	var r ruleSummary
	for _, e := range list(t, b) {
		ea := attrs(t, e)
		data := ea[unix.NFTA_EXPR_DATA]
		switch str(ea[unix.NFTA_EXPR_NAME]) {
		case "lookup":
			la := attrs(t, data)
			name := str(la[unix.NFTA_LOOKUP_SET])
			if f := la[unix.NFTA_LOOKUP_FLAGS]; len(f) == 4 && binary.BigEndian.Uint32(f)&unix.NFT_LOOKUP_F_INV != 0 {
				name = "!" + name
			}
			r.Sets = append(r.Sets, name)
		case "counter":
			r.Counter = true
		case "masq":
			r.Verdict = "masquerade"
		case "immediate":
			v := attrs(t, attrs(t, attrs(t, data)[unix.NFTA_IMMEDIATE_DATA])[unix.NFTA_DATA_VERDICT])
			switch code := int32(binary.BigEndian.Uint32(v[unix.NFTA_VERDICT_CODE])); code {
			case nfAccept:
				r.Verdict = "accept"
			case nfDrop:
				r.Verdict = "drop"
			case unix.NFT_JUMP:
				r.Verdict = "jump " + str(v[unix.NFTA_VERDICT_CHAIN])
			default:
				r.Verdict = fmt.Sprint("verdict ", code)
			}
		}
	}
	return r
}

// The table and elements the agent sends for fixtureServices, as the library encodes them,
// are what the kernel listed in the VM (testdata/nft-list-table.json).
func TestTableEncoding(t *testing.T) {
	want, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatalf("the fixture captured in the VM: %v", err)
	}
	d := New(Config{Masquerade: MasqueradeRemote})
	fixtureServices(d)
	var sent []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		sent = append(sent, req...)
		acks := make([]netlink.Message, 0, len(req))
		for _, m := range req {
			if m.Header.Flags&netlink.Acknowledge != 0 {
				acks = append(acks, netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID}, Data: make([]byte, 4)})
			}
		}
		return acks, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	sets, err := addTable(c)
	if err != nil {
		t.Fatal(err)
	}
	delta := Diff(NewElements(), d.index.Want(), nil)
	if err := queueDelta(c, sets, &delta); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got := summaryOfMessages(t, sent)
	exp := summaryOfJSON(t, want)
	if len(exp.Rules) == 0 || len(exp.Sets["ports4"].Elems) == 0 {
		t.Fatalf("the fixture has no rules or elements: %+v", exp)
	}
	if diff := cmp.Diff(exp, got); diff != "" {
		t.Errorf("the library's messages differ from what the kernel listed (-nft +messages):\n%s", diff)
	}
}
