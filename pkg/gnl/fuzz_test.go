package gnl_test

import (
	"testing"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// FuzzUnmarshal feeds arbitrary bytes to the decoder of a set with every kind, nesting and
// recursion: it must return an error or a value, never panic, and what it decodes must encode.
func FuzzUnmarshal(f *testing.F) {
	v := full()
	b, _ := gnl.Marshal(&v)
	f.Add(b)
	f.Add(attr(42, attr(2, attr(2, attr(1, le32(1)...)...)...)...))
	f.Add(attr(17, attr(1, attr(2, 1, 2)...)...))
	f.Add([]byte{8, 0, 3, 0, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var v everything
		if err := gnl.Unmarshal(b, &v); err != nil {
			return
		}
		if _, err := gnl.Marshal(&v); err != nil {
			t.Errorf("a decoded value does not encode: %v", err)
		}
	})
}

// FuzzAttrs checks the raw attribute walker.
func FuzzAttrs(f *testing.F) {
	f.Add(cat(attr(1, 1), attr(2|gnl.FlagNested, attr(3, 0, 0, 0, 0)...)))
	f.Add([]byte{4, 0, 0, 0, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		attrs, err := gnl.Attrs(b)
		if err != nil {
			return
		}
		var again []byte
		for _, a := range attrs {
			again, err = gnl.AppendAttr(again, a.Type|a.Flags, a.Data)
			if err != nil {
				t.Fatal(err)
			}
		}
		back, err := gnl.Attrs(again)
		if err != nil || len(back) != len(attrs) {
			t.Errorf("re-encoded attributes decode to %d, %v; want %d", len(back), err, len(attrs))
		}
	})
}
