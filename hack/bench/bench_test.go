package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewTable(t *testing.T) {
	tb := NewTable(3, 2)
	s, d := tb.Objects()
	if s != 3 || d != 6 {
		t.Fatalf("Objects() = %d, %d, want 3, 6", s, d)
	}
	seen := map[string]bool{}
	for _, svc := range tb.Services {
		for _, dst := range svc.Dests {
			if seen[dst.Addr.String()] {
				t.Fatalf("destination address %v used twice", dst.Addr)
			}
			seen[dst.Addr.String()] = true
		}
	}
	if got := tb.Services[2].Addr.String(); got != "10.0.0.2" {
		t.Errorf("third VIP = %s, want 10.0.0.2", got)
	}
	if got := tb.Services[1].Dests[1].Addr.String(); got != "100.64.0.3" {
		t.Errorf("fourth destination = %s, want 100.64.0.3", got)
	}
}

// TestMessageLayout checks the hand-built NEW_DEST request against the layout the kernel parses:
// netlink header, genetlink header, then nested service and dest attributes, each 4-byte aligned.
func TestMessageLayout(t *testing.T) {
	var m msg
	svc := &NewTable(1, 1).Services[0]
	start := m.begin(0x22, 5, 7, ipvsCmdNewDest, ipvsGenlVersion)
	n := m.nest(ipvsCmdAttrService)
	m.serviceID(svc)
	m.endNest(n)
	m.end(start)

	b := m.b
	if got := binary.NativeEndian.Uint32(b); int(got) != len(b) || len(b)%4 != 0 {
		t.Fatalf("nlmsg_len = %d, buffer %d bytes", got, len(b))
	}
	if typ, seq := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:]); typ != 0x22 || seq != 7 {
		t.Fatalf("type %#x seq %d, want 0x22 7", typ, seq)
	}
	if b[16] != ipvsCmdNewDest || b[17] != ipvsGenlVersion {
		t.Fatalf("genl header %v", b[16:20])
	}
	var nested []byte
	for typ, v := range attrs(b[nlmsgHdrLen+genlHdrLen:]) {
		if typ == ipvsCmdAttrService {
			nested = v
		}
	}
	if nested == nil {
		t.Fatal("no IPVS_CMD_ATTR_SERVICE")
	}
	if flags := binary.NativeEndian.Uint16(b[nlmsgHdrLen+genlHdrLen+2:]); flags&nlaFNested == 0 {
		t.Error("nested attribute without NLA_F_NESTED")
	}
	got := map[uint16][]byte{}
	for typ, v := range attrs(nested) {
		got[typ] = v
	}
	if af := binary.NativeEndian.Uint16(got[svcAttrAF]); af != 2 {
		t.Errorf("AF = %d, want 2", af)
	}
	if port := binary.BigEndian.Uint16(got[svcAttrPort]); port != 80 {
		t.Errorf("port = %d, want 80 (big-endian)", port)
	}
	if a := got[svcAttrAddr]; len(a) != 16 || a[0] != 10 || a[3] != 0 || a[4] != 0 {
		t.Errorf("address = %v, want 10.0.0.0 in a 16-byte union", a)
	}
}

func TestCPUReport(t *testing.T) {
	log := strings.Join([]string{
		"noise",
		"@@vmcpu 7.00 program floor (raw netlink)", // warm-up: 1 service, left out
		"@@vmcpu 7.10 read floor (raw netlink)",
		"@@vmcpu 7.20 end 1 1 floor (raw netlink)",
		"@@vmcpu 10.00 program moby/ipvs",
		"@@vmcpu 14.00 read moby/ipvs",
		"@@vmcpu 15.00 end 10 100 moby/ipvs",
		"@@vmcpu unknown program floor (raw netlink)", // no stamp: run left out
		"@@vmcpu 16.00 read floor (raw netlink)",
		"@@vmcpu 16.50 end 10 100 floor (raw netlink)",
		"@@vmcpu 20.00 program floor (raw netlink)",
		"@@vmcpu 21.00 read floor (raw netlink)",
		"@@vmcpu 21.50 end 10 100 floor (raw netlink)",
	}, "\n")
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := printCPUReport(&out, path); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1 runs without qemu CPU stamps", "moby/ipvs       4.00    1.00          4.00x       2.00x",
		"floor (raw netlink)       1.00    0.50          1.00x       1.00x"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestMedians(t *testing.T) {
	got := medians([]result{
		{Name: "a", Program: 3, Read: 1}, {Name: "b", Program: 1}, {Name: "a", Program: 1, Read: 5},
		{Name: "a", Program: 2, Read: 2}, {Name: "b", Err: "boom"},
	})
	if len(got) != 2 || got[0].Name != "a" || got[0].Program != 2 || got[0].Read != 2 {
		t.Fatalf("medians = %+v", got)
	}
	if got[1].Err != "boom" {
		t.Errorf("a failed run must be reported, got %+v", got[1])
	}
}

// FuzzAttrs: the attribute walker must never panic or loop on arbitrary (kernel-supplied) bytes.
func FuzzAttrs(f *testing.F) {
	var m msg
	m.u16(1, 2)
	n := m.nest(2)
	m.be16(4, 80)
	m.endNest(n)
	f.Add(m.b)
	f.Add([]byte{0, 0, 1, 0})
	f.Add([]byte{3, 0, 1, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		for _, v := range attrs(b) {
			total += 4 + len(v)
			if total > len(b)+4*len(b) {
				t.Fatal("attrs yielded more than the input holds")
			}
		}
	})
}
