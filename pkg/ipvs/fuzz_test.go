package ipvs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// The decoders of kernel replies are fuzzed: they must never panic, whatever the bytes. Seeds are
// real encodings (testdata/fuzz holds them too; UPDATE_FUZZ_SEEDS=1 rewrites them).

func seedService() []byte {
	w, _ := (&Service{Protocol: TCP, Address: mustAddr("2001:db8::1"), Port: 443, Scheduler: "mh",
		Flags: FlagPersistent, Timeout: 60, Netmask: 64, PersistenceEngine: "sip"}).wire()
	w.Stats, w.Stats64 = &wireStats32{Conns: 1, InBytes: 2}, &wireStats{Conns: 1, OutBytes: 1 << 40}
	b, _ := gnl.Marshal(&svcMsg{Service: w})
	return b
}

func seedDest() []byte {
	r, _ := (&Destination{Address: mustAddr("10.0.0.1"), Port: 80, Forward: Tunnel, Weight: 3,
		TunnelType: TunnelGUE, TunnelPort: 6080, TunnelFlags: TunnelCsum}).wire(IPv6)
	w := wireDest{Addr: r.Addr, Port: r.Port, FwdMethod: r.FwdMethod, Weight: r.Weight,
		UThresh: r.UThresh, LThresh: r.LThresh, AddrFamily: r.AddrFamily, TunType: r.TunType,
		TunPort: r.TunPort, TunFlags: r.TunFlags, ActiveConns: 4, Stats64: &wireStats{Conns: 9}}
	b, _ := gnl.Marshal(&destReply{Dest: &w})
	return b
}

func seedDaemon() []byte {
	w, _ := (&Daemon{State: DaemonBackup, Interface: "eth0", SyncID: 1, Group: mustAddr("ff02::1"), Port: 8848, TTL: 1}).wire()
	b, _ := gnl.Marshal(&daemonMsg{Daemon: w})
	return b
}

// seedDatagram is a kernel reply to dump request 1: a destination and NLMSG_DONE.
// FuzzServiceDecode checks the hand-written service decoder against the declarations decoded by
// gnl, and that what decodes encodes again.
func FuzzServiceDecode(f *testing.F) {
	f.Add(seedService())
	f.Fuzz(func(t *testing.T, b []byte) {
		var m svcMsg
		gerr := gnl.Unmarshal(b, &m)
		var raw svcRawMsg
		if err := gnl.Unmarshal(b, &raw); (err != nil) != (gerr != nil) && gerr == nil {
			t.Fatalf("raw service message: %v", err)
		}
		if gerr != nil || m.Service == nil {
			return
		}
		slow, serr := serviceFrom(m.Service)
		fast, ferr := decodeServiceNest(raw.Service)
		switch {
		case (ferr != nil) != (serr != nil):
			t.Fatalf("hand decoder error %v, gnl error %v", ferr, serr)
		case ferr != nil:
			return
		case fast != slow:
			t.Fatalf("hand decoder %+v\ngnl          %+v", fast, slow)
		}
		s := slow
		_ = s.String()
		_ = s.Flags.String()
		// What decodes must encode again (the client may send back what it read).
		if s.FWMark == 0 && s.Protocol != TCP && s.Protocol != UDP && s.Protocol != SCTP {
			return
		}
		if _, err := s.wire(); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("re-encoding %+v: %v", s, err)
		}
	})
}

// FuzzDestDecode checks the hand-written destination decoder Table uses against the
// declarations decoded by gnl: same destination, or an error from both.
func FuzzDestDecode(f *testing.F) {
	f.Add(seedDest(), uint16(IPv4))
	f.Fuzz(func(t *testing.T, b []byte, af uint16) {
		var fast Destination
		var raw destRawReply
		ferr := gnl.Unmarshal(b, &raw)
		found := ferr == nil && raw.Dest != nil
		if found {
			ferr = decodeDestNest(raw.Dest, Family(af), &fast)
		}
		var m destReply
		gerr := gnl.Unmarshal(b, &m)
		var slow Destination
		if gerr == nil && m.Dest != nil {
			slow, gerr = destFrom(m.Dest, Family(af))
		}
		switch {
		case (ferr != nil) != (gerr != nil):
			t.Fatalf("hand decoder error %v, gnl error %v", ferr, gerr)
		case ferr != nil:
			return
		case found != (m.Dest != nil):
			t.Fatalf("hand decoder found %v, gnl %v", found, m.Dest != nil)
		case fast != slow:
			t.Fatalf("hand decoder %+v\ngnl          %+v", fast, slow)
		}
		_ = fast.String()
		_ = fast.Forward.String() + fast.TunnelType.String()
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

// TestFuzzSeedsCommitted checks that testdata/fuzz holds today's encodings as seeds (so the
// committed corpus follows the declarations); UPDATE_FUZZ_SEEDS=1 rewrites them.
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
	write("FuzzDestDecode", seedDest(), uint16(IPv6))
	write("FuzzDaemonDecode", seedDaemon())
}
