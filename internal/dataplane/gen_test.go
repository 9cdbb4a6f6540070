package dataplane

import (
	"errors"
	"testing"
)

// NEWGEN payloads as the kernel sends them (nfgenmsg, then NFTA_GEN_ID, NFTA_GEN_PROC_PID and
// NFTA_GEN_PROC_NAME), written out by hand.
func TestParseGen(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want uint32
		err  bool
	}{
		{name: "id pid name", want: 0x01020304, b: []byte{
			0, 0, 0, 0, // nfgenmsg: AF_UNSPEC, v0, res_id 0
			8, 0, 1, 0, 1, 2, 3, 4, // NFTA_GEN_ID 0x01020304 (big-endian)
			8, 0, 2, 0, 0, 0, 0x30, 0x39, // NFTA_GEN_PROC_PID 12345
			8, 0, 3, 0, 'n', 'f', 't', 0, // NFTA_GEN_PROC_NAME "nft"
		}},
		{name: "no id", err: true, b: []byte{0, 0, 0, 0, 8, 0, 2, 0, 0, 0, 0, 1}},
		{name: "short id", err: true, b: []byte{0, 0, 0, 0, 6, 0, 1, 0, 1, 2, 0, 0}},
		{name: "no header", err: true, b: []byte{0, 0}},
		{name: "truncated attribute", err: true, b: []byte{0, 0, 0, 0, 8, 0, 1, 0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseGen(tc.b)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("parseGen = %#x, %v; want %#x, error %v", got, err, tc.want, tc.err)
			}
			if tc.name == "no id" && !errors.Is(err, errNoGen) {
				t.Errorf("error %v is not errNoGen", err)
			}
		})
	}
}

func FuzzParseGen(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 8, 0, 1, 0, 1, 2, 3, 4})
	f.Add([]byte{0, 0, 0, 0, 6, 0, 1, 0, 1, 2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseGen(b) // must not panic
	})
}
