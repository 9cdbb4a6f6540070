package taskstats

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// FuzzUnmarshalStats feeds arbitrary payloads to the struct taskstats decoder: it must never panic
// or read past the payload, must refuse what is too short for its version, and must decode
// whatever it accepts the same way twice.
func FuzzUnmarshalStats(f *testing.F) {
	for v := MinVersion; v <= MaxVersion; v++ {
		b, _ := synthetic(v)
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	b, _ := synthetic(MaxVersion)
	binary.NativeEndian.PutUint16(b, MaxVersion+1)
	f.Add(append(b, 1, 2, 3, 4, 5, 6, 7, 8))
	f.Add([]byte{})
	f.Add([]byte{7, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Stats
		err := s.UnmarshalBinary(b)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(b) < SizeOf(s.Version) || s.Version < MinVersion {
			t.Fatalf("accepted %d bytes of version %d (needs %d)", len(b), s.Version, SizeOf(s.Version))
		}
		if (s.Raw != nil) != (s.Version > MaxVersion) || (s.Raw != nil && !bytes.Equal(s.Raw, b)) {
			t.Fatalf("Raw kept %d bytes for version %d", len(s.Raw), s.Version)
		}
		var again Stats
		if err := again.UnmarshalBinary(bytes.Clone(b)); err != nil || again.Comm != s.Comm || again.CPU != s.CPU || again.Nvcsw != s.Nvcsw {
			t.Fatalf("second decode differs: %v", err)
		}
	})
}

// FuzzReply feeds arbitrary attribute lists to the TASKSTATS reply declaration (what the kernel
// and exit records send), through pkg/gnl: errors are fine, panics are not.
func FuzzReply(f *testing.F) {
	payload, _ := synthetic(16)
	f.Add(nla(4|gnl.FlagNested, nla(1, u32b(1)), nla(3, payload)))
	f.Add(bytes.Join([][]byte{nla(null), nla(4|gnl.FlagNested, nla(null), nla(1, u32b(1)), nla(3, payload), nla(null)),
		nla(5|gnl.FlagNested, nla(2, u32b(1)), nla(3, payload)), nla(null)}, nil))
	p15, _ := synthetic(15)
	f.Add(nla(5, nla(2, u32b(7)), nla(3, p15), nla(9, []byte("x"))))
	f.Add(nla(4|gnl.FlagNested, nla(3, payload[:100])))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rep reply
		if err := gnl.Unmarshal(b, &rep); err != nil {
			return
		}
		for _, agg := range []*aggregate{&rep.AggrPID, &rep.AggrTGID} {
			if agg.Seen.Has(3) && agg.Stats.Version < MinVersion {
				t.Fatalf("accepted stats of version %d", agg.Stats.Version)
			}
		}
	})
}
