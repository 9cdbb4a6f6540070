package gnl_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// version is a fixed-layout binary struct whose decoder switches on the payload: a version-aware
// hook like the one struct taskstats needs.
type version struct {
	V     uint16
	A, B  uint32
	Extra []byte
}

func (v *version) UnmarshalBinary(b []byte) error {
	if len(b) < 6 {
		return fmt.Errorf("version struct of %d bytes", len(b))
	}
	v.V = binary.NativeEndian.Uint16(b)
	v.A = binary.NativeEndian.Uint32(b[2:])
	v.B, v.Extra = 0, nil
	if v.V >= 2 {
		if len(b) < 10 {
			return fmt.Errorf("version %d struct of %d bytes, want 10", v.V, len(b))
		}
		v.B = binary.NativeEndian.Uint32(b[6:])
		v.Extra = append([]byte(nil), b[10:]...)
	}
	return nil
}

func (v version) AppendBinary(b []byte) ([]byte, error) {
	b = binary.NativeEndian.AppendUint16(b, v.V)
	b = binary.NativeEndian.AppendUint32(b, v.A)
	if v.V >= 2 {
		b = binary.NativeEndian.AppendUint32(b, v.B)
		b = append(b, v.Extra...)
	}
	return b, nil
}

type kindU32 uint32

type inner struct {
	Name string `gnl:"1"`
	ID   uint32 `gnl:"2"`
}

// tree is a set nested in itself (gnlpy's RecursiveSelf).
type tree struct {
	Value    uint32 `gnl:"1"`
	Left     *tree  `gnl:"2"`
	Children []tree `gnl:"3"`
}

// everything has one field of each kind, declared out of attribute order and with gaps, as
// families do.
type everything struct {
	U8      uint8       `gnl:"1"`
	U16     uint16      `gnl:"2"`
	U32     uint32      `gnl:"3"`
	U64     uint64      `gnl:"4"`
	N16     uint16      `gnl:"5,net"`
	N32     uint32      `gnl:"6,net"`
	N64     uint64      `gnl:"7,net"`
	S32     int32       `gnl:"8"`
	S64     int64       `gnl:"9"`
	Flag    bool        `gnl:"10"`
	Str     string      `gnl:"11"`
	Bytes   []byte      `gnl:"12"`
	Addr    [16]byte    `gnl:"13"`
	Ver     version     `gnl:"14"`
	Nested  inner       `gnl:"15"`
	Ptr     *inner      `gnl:"16"`
	Array   []inner     `gnl:"17"`
	Multi   []inner     `gnl:"18,multi"`
	U32s    []uint32    `gnl:"19"`
	Named   kindU32     `gnl:"20"`
	Tree    *tree       `gnl:"42"`
	S8      int8        `gnl:"21"`
	S16     int16       `gnl:"30,net"`
	Strs    []string    `gnl:"31,multi"`
	VerPtr  *version    `gnl:"32"`
	Opt     uint32      `gnl:"33,omitempty"`
	_       gnl.Ignore  `gnl:"40,ignore"`
	Unknown []gnl.Attr  `gnl:",unknown"`
	Seen    gnl.Present `gnl:",present"`
	Local   int         // no tag: not part of the set
}

func full() everything {
	return everything{
		U8: 0xab, U16: 0xbeef, U32: 0xdeadbeef, U64: 1<<63 | 5, N16: 8080, N32: 0x01020304, N64: 1 << 40,
		S32: -7, S64: -1 << 40, Flag: true, Str: "wlc", Bytes: []byte{1, 2, 3}, Addr: [16]byte{10, 0, 0, 1},
		Ver: version{V: 2, A: 3, B: 4, Extra: []byte{9}}, Nested: inner{Name: "a", ID: 1},
		Ptr: &inner{Name: "b", ID: 2}, Array: []inner{{Name: "c", ID: 3}, {Name: "d", ID: 4}},
		Multi: []inner{{Name: "e", ID: 5}, {ID: 6}}, U32s: []uint32{7, 8, 9}, Named: 10,
		Tree: &tree{Value: 1, Left: &tree{Value: 2, Left: &tree{Value: 3}}, Children: []tree{{Value: 4}, {Value: 5, Children: []tree{{Value: 6}}}}},
		S8:   -2, S16: -300, Strs: []string{"x", "", "yz"}, VerPtr: &version{V: 1, A: 11},
	}
}

var cmpOpts = []cmp.Option{cmpopts.IgnoreFields(everything{}, "Local"), cmpopts.EquateEmpty(), cmp.AllowUnexported(gnl.Present{})}

func TestRoundTripEveryKind(t *testing.T) {
	for name, in := range map[string]everything{"full": full(), "zero": {}} {
		t.Run(name, func(t *testing.T) {
			b, err := gnl.Marshal(&in)
			if err != nil {
				t.Fatal(err)
			}
			var out everything
			if err := gnl.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			out.Seen = gnl.Present{}
			if diff := cmp.Diff(in, out, cmpOpts...); diff != "" {
				t.Errorf("round trip (-in +out):\n%s", diff)
			}
		})
	}
}

// attr builds one raw attribute.
func attr(typ uint16, payload ...byte) []byte {
	b, err := gnl.AppendAttr(nil, typ, payload)
	if err != nil {
		panic(err)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func le32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func TestEncodeIsStrict(t *testing.T) {
	in := everything{N16: 0x1f90, Nested: inner{ID: 1}, Ptr: &inner{ID: 2}, Array: []inner{{ID: 3}}}
	b, err := gnl.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := gnl.Attrs(b)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]gnl.Attr{}
	for _, a := range attrs {
		seen[a.Type] = a
	}
	for _, typ := range []uint16{15, 16, 17} {
		if !seen[typ].Nested() {
			t.Errorf("attribute %d: NLA_F_NESTED not set on a nest", typ)
		}
	}
	inner, _ := gnl.Attrs(seen[17].Data)
	if len(inner) != 1 || inner[0].Type != 1 || !inner[0].Nested() {
		t.Errorf("indexed array entries: %+v, want entry 1, nested", inner)
	}
	if got := seen[5].Data; !cmp.Equal(got, []byte{0x1f, 0x90}) {
		t.Errorf("net-order u16 payload %x, want 1f90", got)
	}
	if _, ok := seen[18]; ok {
		t.Error("an empty multi slice was encoded")
	}
	if _, ok := seen[10]; ok {
		t.Error("a false flag was encoded")
	}
	if _, ok := seen[33]; ok {
		t.Error("an omitempty zero was encoded")
	}
	if _, ok := seen[3]; !ok {
		t.Error("a zero u32 without omitempty was not encoded")
	}
	if len(b)%4 != 0 {
		t.Errorf("encoding of %d bytes is not padded", len(b))
	}
}

func TestDecodeIsLenient(t *testing.T) {
	nestedNoFlag := attr(15, cat(attr(1, 'x', 0), attr(2, le32(7)...))...)
	withFlags := attr(3|gnl.FlagNetByteOrder, le32(42)...) // flags are masked, not misread
	ptrFlagged := attr(16|gnl.FlagNested, attr(2, le32(9)...)...)
	unknown := attr(99, 1, 2, 3)
	ignored := attr(40, 0, 0, 0, 0)
	noPad := []byte{5, 0, 1, 0, 0x77} // u8 attribute 1, last, without its padding
	b := cat(nestedNoFlag, withFlags, ptrFlagged, unknown, ignored, noPad)
	var got everything
	if err := gnl.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := everything{Nested: inner{Name: "x", ID: 7}, U32: 42, Ptr: &inner{ID: 9}, U8: 0x77,
		Unknown: []gnl.Attr{{Type: 99, Data: []byte{1, 2, 3}}}}
	got.Seen = gnl.Present{}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	var p everything
	_ = gnl.Unmarshal(b, &p)
	for _, typ := range []uint16{15, 3, 16, 99, 40, 1} {
		if !p.Seen.Has(typ) {
			t.Errorf("Present does not have attribute %d", typ)
		}
	}
	if p.Seen.Has(2) {
		t.Error("Present has attribute 2, which was absent")
	}
}

func TestDecodeResetsTheTarget(t *testing.T) {
	v := full()
	if err := gnl.Unmarshal(attr(3, le32(1)...), &v); err != nil {
		t.Fatal(err)
	}
	v.Seen = gnl.Present{}
	if diff := cmp.Diff(everything{U32: 1}, v, cmpOpts...); diff != "" {
		t.Errorf("stale fields survived a decode (-want +got):\n%s", diff)
	}
}

func TestMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"short header", []byte{8, 0, 1}},
		{"length below header", []byte{2, 0, 1, 0}},
		{"length past end", []byte{12, 0, 3, 0, 1, 0, 0, 0}},
		{"u32 of 3 bytes", attr(3, 1, 2, 3)},
		{"u16 of 4 bytes", attr(2, 1, 2, 3, 4)},
		{"u8 empty", attr(1)},
		{"u64 of 6 bytes", attr(4, 1, 2, 3, 4, 5, 6)},
		{"net u16 of 1 byte", attr(5, 1)},
		{"fixed too long", attr(13, make([]byte, 17)...)},
		{"binary decoder refuses", attr(14, 1, 0)},
		{"binary v2 truncated", attr(14, 2, 0, 0, 0, 0, 0, 1)},
		{"nested malformed", attr(15, 9, 0, 1, 0)},
		{"nested scalar wrong", attr(15, attr(2, 1)...)},
		{"array entry malformed", attr(17, attr(1, attr(2, 1, 2)...)...)},
		{"array body malformed", attr(17, 1, 2, 3)},
		{"multi entry malformed", attr(18, attr(2, 1)...)},
		{"recursive malformed deep", attr(42, attr(2, attr(2, attr(1, 1)...)...)...)},
		{"trailing garbage", cat(attr(3, le32(1)...), []byte{1, 2})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v everything
			err := gnl.Unmarshal(tc.in, &v)
			if !errors.Is(err, gnl.ErrMalformed) {
				t.Errorf("got %v, want an error wrapping ErrMalformed", err)
			}
		})
	}
}

func TestU64TakesVariableWidth(t *testing.T) {
	var v everything
	if err := gnl.Unmarshal(cat(attr(4, le32(5)...), attr(9, le32(0xffffffff)...)), &v); err != nil {
		t.Fatal(err)
	}
	if v.U64 != 5 || v.S64 != -1 {
		t.Errorf("got u64 %d s64 %d, want 5 and -1", v.U64, v.S64)
	}
}

func TestBadDeclarations(t *testing.T) {
	for name, v := range map[string]any{
		"duplicate number": &struct {
			A uint32 `gnl:"1"`
			B uint32 `gnl:"1"`
		}{},
		"no number": &struct {
			A uint32 `gnl:"x"`
		}{},
		"number zero": &struct {
			A uint32 `gnl:"0"`
		}{},
		"number too large": &struct {
			A uint32 `gnl:"16384"`
		}{},
		"unknown option": &struct {
			A uint32 `gnl:"1,bogus"`
		}{},
		"unsupported type": &struct {
			A float64 `gnl:"1"`
		}{},
		"map": &struct {
			A map[int]int `gnl:"1"`
		}{},
		"net on string": &struct {
			A string `gnl:"1,net"`
		}{},
		"multi on scalar": &struct {
			A uint32 `gnl:"1,multi"`
		}{},
		"unknown not attrs": &struct {
			A []byte `gnl:",unknown"`
		}{},
		"unexported": &struct {
			a uint32 `gnl:"1"`
		}{},
		"ignore and declared": &struct {
			_ gnl.Ignore `gnl:"1,ignore"`
			A uint32     `gnl:"1"`
		}{},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := gnl.Marshal(v); err == nil {
				t.Error("Marshal accepted a bad declaration")
			}
			if err := gnl.Unmarshal(nil, v); err == nil {
				t.Error("Unmarshal accepted a bad declaration")
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	type decodeOnly struct {
		X *onlyUnmarshal `gnl:"1"`
	}
	if _, err := gnl.Marshal(&decodeOnly{X: &onlyUnmarshal{}}); err == nil {
		t.Error("a decode-only binary type was encoded")
	}
	type big struct {
		B []byte `gnl:"1"`
	}
	if _, err := gnl.Marshal(&big{B: make([]byte, 70000)}); !errors.Is(err, gnl.ErrTooLarge) {
		t.Errorf("70000-byte attribute: got %v, want ErrTooLarge", err)
	}
	type nul struct {
		S string `gnl:"1"`
	}
	if _, err := gnl.Marshal(&nul{S: "a\x00b"}); err == nil {
		t.Error("a string with a NUL byte was encoded")
	}
	if err := gnl.Unmarshal(nil, everything{}); err == nil {
		t.Error("Unmarshal into a non-pointer succeeded")
	}
}

type onlyUnmarshal struct{}

func (*onlyUnmarshal) UnmarshalBinary([]byte) error { return nil }

// An attribute that is present with an empty payload decodes to an empty, non-nil slice, so it
// is told apart from an absent one (found by pkg/ipvs's differential fuzzing).
func TestEmptyBytesArePresent(t *testing.T) {
	var v everything
	if err := gnl.Unmarshal(attr(12), &v); err != nil {
		t.Fatal(err)
	}
	if v.Bytes == nil || len(v.Bytes) != 0 {
		t.Errorf("empty attribute decoded to %#v, want a non-nil empty slice", v.Bytes)
	}
	if err := gnl.Unmarshal(nil, &v); err != nil || v.Bytes != nil {
		t.Errorf("absent attribute decoded to %#v, %v; want nil", v.Bytes, err)
	}
}

// A RawSet encodes exactly as the nested set it was marshalled from, and decodes to the nest's
// payload.
func TestRawSet(t *testing.T) {
	type key struct {
		A uint16 `gnl:"1"`
		B string `gnl:"2"`
	}
	type nested struct {
		Key  *key   `gnl:"1"`
		Rest uint32 `gnl:"2"`
	}
	type raw struct {
		Key  gnl.RawSet `gnl:"1"`
		Rest uint32     `gnl:"2"`
	}
	k := key{A: 7, B: "seven"}
	enc, err := gnl.Marshal(&k)
	if err != nil {
		t.Fatal(err)
	}
	want, err := gnl.Marshal(&nested{Key: &k, Rest: 3})
	if err != nil {
		t.Fatal(err)
	}
	got, err := gnl.Marshal(&raw{Key: enc, Rest: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(got, want) {
		t.Errorf("RawSet encoding\n%x, want the nested set's\n%x", got, want)
	}
	if typ := binary.NativeEndian.Uint16(got[2:]); typ&gnl.FlagNested == 0 {
		t.Errorf("attribute type %#x without NLA_F_NESTED", typ)
	}
	var back raw
	if err := gnl.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal([]byte(back.Key), enc) || back.Rest != 3 {
		t.Errorf("decoded %x %d, want %x 3", back.Key, back.Rest, enc)
	}
}
