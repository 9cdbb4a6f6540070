package ipvs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// The decoders of kernel replies are fuzzed: they must never panic, whatever the bytes, and a
// service they decode must encode again (the agent may send back what it read). Seeds are the
// fake kernel's encodings (testdata/fuzz holds them too; UPDATE_FUZZ_SEEDS=1 rewrites them).

func seedService() []byte {
	s := fakeSvc{af: hAFInet6, proto: 6, addr: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}, port: 443, sched: "mh", pe: "sip",
		flags: 1 | hFlagHashed, timeout: 60, netmask: 64}
	return fnest(nil, hCmdAttrService, s.encode())
}

func seedDest() []byte {
	d := fakeDest{af: hAFInet, addr: [16]byte{10, 0, 0, 1}, port: 80, fwd: hFwdTunnel, weight: 3, tunType: hTunGUE, tunPort: 6080, tunFlags: 1, active: 4}
	return fnest(nil, hCmdAttrDest, d.encode())
}

func seedDaemon() []byte {
	d := fakeDaemon{state: hStateBackup, ifn: "eth0", syncID: 1, group: []byte{0xff, 2, 14: 0, 15: 1}, port: 8848, ttl: 1}
	return fnest(nil, hCmdAttrDaemon, d.encode())
}

func FuzzServiceDecode(f *testing.F) {
	f.Add(seedService())
	f.Fuzz(func(t *testing.T, b []byte) {
		var raw svcRawMsg
		if gnl.Unmarshal(b, &raw) != nil || raw.Service == nil {
			return
		}
		s, err := decodeServiceNest(raw.Service)
		if err != nil {
			return
		}
		_ = s.Key().String() + s.Flags.String()
		if s.FirewallMark == 0 && s.Protocol != lvs.TCP && s.Protocol != lvs.UDP && s.Protocol != lvs.SCTP {
			return
		}
		if _, err := wireSvc(&s.Service); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("re-encoding %+v: %v", s, err)
		}
	})
}

func FuzzDestDecode(f *testing.F) {
	f.Add(seedDest(), uint16(lvs.IPv4))
	f.Fuzz(func(t *testing.T, b []byte, af uint16) {
		var raw destRawReply
		if gnl.Unmarshal(b, &raw) != nil || raw.Dest == nil {
			return
		}
		var d Destination
		if err := decodeDestNest(raw.Dest, lvs.Family(af), &d); err != nil {
			return
		}
		if d.Family != lvs.IPv4 && d.Family != lvs.IPv6 || lvs.FamilyOf(d.Address) != d.Family {
			t.Fatalf("decoded %+v: address and family disagree", d)
		}
		_ = d.Key().String() + d.Forwarding.String() + d.TunnelType.String() + d.TunnelFlags.String()
	})
}

func FuzzDaemonDecode(f *testing.F) {
	f.Add(seedDaemon())
	f.Fuzz(func(t *testing.T, b []byte) {
		var m daemonMsg
		if gnl.Unmarshal(b, &m) != nil || m.Daemon == nil {
			return
		}
		d := daemonFrom(m.Daemon)
		_ = d.State.String()
	})
}

// TestFuzzSeedsCommitted checks that testdata/fuzz holds today's seeds (so the committed corpus
// follows the fake's encodings); UPDATE_FUZZ_SEEDS=1 rewrites them.
func TestFuzzSeedsCommitted(t *testing.T) {
	update := os.Getenv("UPDATE_FUZZ_SEEDS") == "1"
	write := func(name string, args ...any) {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := "go test fuzz v1\n"
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				s += "[]byte(" + strconv.Quote(string(v)) + ")\n"
			case uint16:
				s += fmt.Sprintf("uint16(%d)\n", v)
			}
		}
		path := filepath.Join(dir, "seed")
		if !update {
			if old, err := os.ReadFile(path); err != nil || string(old) != s {
				t.Errorf("%s is missing or outdated (%v): run UPDATE_FUZZ_SEEDS=1 go test -run TestFuzzSeedsCommitted", path, err)
			}
			return
		}
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("FuzzServiceDecode", seedService())
	write("FuzzDestDecode", seedDest(), uint16(lvs.IPv6))
	write("FuzzDaemonDecode", seedDaemon())
}
