package gnl

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// Attribute sets are Go structs whose fields carry a `gnl` tag:
//
//	`gnl:"N[,option...]"`
//
// N is the attribute number, always explicit (never the field's position). The attribute kind
// follows from the field's Go type:
//
//	uint8 … uint64, and named types of them   u8 … u64 in host byte order ("net": network order)
//	int8 … int64                               s8 … s64 in host byte order ("net": network order)
//	bool                                       flag (present or absent, no payload)
//	string                                     NUL-terminated string
//	[]byte                                     raw bytes
//	[N]byte                                    fixed-size bytes (a shorter payload is zero-filled)
//	a type whose pointer has UnmarshalBinary   a fixed-layout binary struct, decoded by that method
//	                                           (which sees the whole payload, so it can switch on a
//	                                           version field and the length); encoded with
//	                                           AppendBinary or MarshalBinary when it has them
//	a tagged struct, or a pointer to one       a nested set (NLA_F_NESTED set on output)
//	[]T of any kind above                      an array: one nested attribute N whose members are
//	                                           numbered 1, 2, … in order (the "indexed array" of
//	                                           nlctrl); with the "multi" option, attribute N repeated
//
// A set may contain itself through a pointer or a slice (gnlpy's RecursiveSelf).
//
// Options: "net" (network byte order for integers), "omitempty" (do not encode the zero value;
// without it every field is encoded, except nil pointers, empty slices and false flags), "multi".
//
// Special fields:
//
//	_ Ignore  `gnl:"N,ignore"`    attribute N is padding or deliberately dropped on decode
//	X []Attr  `gnl:",unknown"`    collects attributes the set does not declare, as raw bytes
//	X Present `gnl:",present"`    records which attribute numbers a decode saw
//
// Fields without a gnl tag, or tagged "-", are not part of the set.

// Ignore is the type of a blank field that declares an attribute to skip on decode (padding such
// as TASKSTATS_TYPE_NULL, or attributes deliberately dropped). It is never encoded.
type Ignore struct{}

// Present records which attributes a decode saw, for sets where absent and zero differ.
// Attribute numbers above 255 are not recorded.
type Present struct{ bits [4]uint64 }

// Has reports whether attribute t was present.
func (p *Present) Has(t uint16) bool { return t < 256 && p.bits[t/64]&(1<<(t%64)) != 0 }

func (p *Present) set(t uint16) {
	if t < 256 {
		p.bits[t/64] |= 1 << (t % 64)
	}
}

type kind uint8

const (
	kindInvalid kind = iota
	kindU8
	kindU16
	kindU32
	kindU64
	kindS8
	kindS16
	kindS32
	kindS64
	kindFlag
	kindString
	kindBytes
	kindFixed
	kindBinary
	kindNested
	kindSlice
	kindIgnore
	kindUnknown
	kindPresent
)

var kindNames = [...]string{"invalid", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "flag",
	"string", "bytes", "fixed", "binary", "nested", "array", "ignore", "unknown", "present"}

func (k kind) String() string { return kindNames[k] }

// field is the precomputed codec of one struct field (or of a slice's element).
type field struct {
	name      string
	attr      uint16
	index     int
	kind      kind
	size      int  // payload size of integers and fixed arrays
	net       bool // network byte order
	omitempty bool
	multi     bool
	ptr       bool // the field is a pointer to the nested set or binary type
	sub       *plan
	elem      *field // slice element codec
	typ       reflect.Type
}

// plan is the precomputed codec of one attribute set.
type plan struct {
	name    string
	typ     reflect.Type
	fields  []field
	byAttr  []int16 // attribute number → index in fields, -1 when undeclared
	ignore  map[uint16]bool
	unknown int // index of the []Attr field, -1 when none
	present int // index of the Present field, -1 when none
	err     error
}

func (p *plan) lookup(t uint16) *field {
	if int(t) < len(p.byAttr) {
		if i := p.byAttr[t]; i >= 0 {
			return &p.fields[i]
		}
	}
	return nil
}

var (
	plans   sync.Map // reflect.Type → *plan, completed plans only
	planMu  sync.Mutex
	typAttr = reflect.TypeFor[[]Attr]()
	typPres = reflect.TypeFor[Present]()
	typIgn  = reflect.TypeFor[Ignore]()
	typUnm  = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

// planFor returns the codec plan of a struct type, building and caching it on first use.
func planFor(t reflect.Type) (*plan, error) {
	if p, ok := plans.Load(t); ok {
		p := p.(*plan)
		return p, p.err
	}
	planMu.Lock()
	defer planMu.Unlock()
	building := map[reflect.Type]*plan{}
	p := buildPlan(t, building)
	for bt, bp := range building {
		if bp.err == nil {
			bp.err = p.err // a set is only usable when everything it contains is
		}
		plans.Store(bt, bp)
	}
	return p, p.err
}

func buildPlan(t reflect.Type, building map[reflect.Type]*plan) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	if p, ok := building[t]; ok {
		return p // recursion: the plan is being filled in by a caller up the stack
	}
	p := &plan{name: t.String(), typ: t, unknown: -1, present: -1}
	building[t] = p
	if t.Kind() != reflect.Struct {
		p.err = fmt.Errorf("gnl: %s is not a struct", t)
		return p
	}
	var maxAttr uint16
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("gnl")
		if !ok || tag == "-" {
			continue
		}
		f, err := parseField(sf, i, tag, building)
		if err != nil {
			p.err = fmt.Errorf("gnl: %s.%s: %w", t, sf.Name, err)
			return p
		}
		switch f.kind {
		case kindUnknown:
			p.unknown = i
			continue
		case kindPresent:
			p.present = i
			continue
		case kindIgnore:
			if p.ignore == nil {
				p.ignore = map[uint16]bool{}
			}
			p.ignore[f.attr] = true
			continue
		}
		if !sf.IsExported() {
			p.err = fmt.Errorf("gnl: %s.%s: unexported field has a gnl tag", t, sf.Name)
			return p
		}
		p.fields = append(p.fields, f)
		maxAttr = max(maxAttr, f.attr)
	}
	p.byAttr = make([]int16, int(maxAttr)+1)
	for i := range p.byAttr {
		p.byAttr[i] = -1
	}
	for i, f := range p.fields {
		if p.byAttr[f.attr] >= 0 {
			p.err = fmt.Errorf("gnl: %s: attribute %d declared by both %s and %s", t, f.attr, p.fields[p.byAttr[f.attr]].name, f.name)
			return p
		}
		if p.ignore[f.attr] {
			p.err = fmt.Errorf("gnl: %s: attribute %d is both ignored and declared by %s", t, f.attr, f.name)
			return p
		}
		p.byAttr[f.attr] = int16(i)
	}
	return p
}

func parseField(sf reflect.StructField, index int, tag string, building map[reflect.Type]*plan) (field, error) {
	parts := strings.Split(tag, ",")
	f := field{name: sf.Name, index: index, typ: sf.Type}
	var ignore, unknown, present bool
	for _, o := range parts[1:] {
		switch o {
		case "net":
			f.net = true
		case "omitempty":
			f.omitempty = true
		case "multi":
			f.multi = true
		case "ignore":
			ignore = true
		case "unknown":
			unknown = true
		case "present":
			present = true
		default:
			return f, fmt.Errorf("unknown tag option %q", o)
		}
	}
	switch {
	case unknown:
		if sf.Type != typAttr {
			return f, fmt.Errorf("an unknown field must be []gnl.Attr")
		}
		f.kind = kindUnknown
		return f, nil
	case present:
		if sf.Type != typPres {
			return f, fmt.Errorf("a present field must be gnl.Present")
		}
		f.kind = kindPresent
		return f, nil
	}
	n, err := strconv.ParseUint(parts[0], 10, 16)
	if err != nil || n > uint64(typeMask) {
		return f, fmt.Errorf("attribute number %q is not an integer in 0..%d", parts[0], typeMask)
	}
	f.attr = uint16(n)
	if ignore {
		f.kind = kindIgnore
		return f, nil
	}
	if sf.Type == typIgn {
		return f, fmt.Errorf("a gnl.Ignore field needs the ignore option")
	}
	if f.attr == 0 {
		return f, fmt.Errorf("attribute number 0 is reserved (NLA_UNSPEC)")
	}
	if err := setKind(&f, sf.Type, building); err != nil {
		return f, err
	}
	if f.multi && f.kind != kindSlice {
		return f, fmt.Errorf("the multi option needs a slice")
	}
	return f, nil
}

// setKind fills in f's kind (and sub-plan, element codec) from a Go type.
func setKind(f *field, t reflect.Type, building map[reflect.Type]*plan) error {
	f.typ = t
	if t.Kind() == reflect.Pointer {
		et := t.Elem()
		if et.Kind() != reflect.Struct {
			return fmt.Errorf("pointers are only supported to nested sets and binary structs, not %s", t)
		}
		if err := setKind(f, et, building); err != nil {
			return err
		}
		f.typ, f.ptr = t, true
		return nil
	}
	if reflect.PointerTo(t).Implements(typUnm) {
		f.kind = kindBinary
		return nil
	}
	switch t.Kind() {
	case reflect.Uint8:
		f.kind, f.size = kindU8, 1
	case reflect.Uint16:
		f.kind, f.size = kindU16, 2
	case reflect.Uint32:
		f.kind, f.size = kindU32, 4
	case reflect.Uint64:
		f.kind, f.size = kindU64, 8
	case reflect.Int8:
		f.kind, f.size = kindS8, 1
	case reflect.Int16:
		f.kind, f.size = kindS16, 2
	case reflect.Int32:
		f.kind, f.size = kindS32, 4
	case reflect.Int64:
		f.kind, f.size = kindS64, 8
	case reflect.Bool:
		f.kind = kindFlag
	case reflect.String:
		f.kind = kindString
	case reflect.Array:
		if t.Elem().Kind() != reflect.Uint8 {
			return fmt.Errorf("arrays must be of bytes, not %s", t)
		}
		f.kind, f.size = kindFixed, t.Len()
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			f.kind = kindBytes
			return nil
		}
		elem := &field{name: f.name + "[]", attr: f.attr, net: f.net}
		if err := setKind(elem, t.Elem(), building); err != nil {
			return err
		}
		if elem.kind == kindSlice {
			return fmt.Errorf("arrays of arrays are not supported")
		}
		f.kind, f.elem = kindSlice, elem
	case reflect.Struct:
		f.kind = kindNested
		f.sub = buildPlan(t, building)
		if f.sub.err != nil {
			return f.sub.err
		}
	default:
		return fmt.Errorf("unsupported type %s", t)
	}
	if f.net && (f.kind < kindU8 || f.kind > kindS64) && f.kind != kindSlice {
		return fmt.Errorf("the net option needs an integer, not %s", t)
	}
	return nil
}

// Marshal encodes a tagged struct (or a pointer to one) as an attribute list.
func Marshal(v any) ([]byte, error) { return AppendMarshal(nil, v) }

// AppendMarshal appends the attribute list encoding of v to b.
func AppendMarshal(b []byte, v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return b, fmt.Errorf("gnl: marshal of a nil %s", rv.Type())
		}
		rv = rv.Elem()
	}
	p, err := planFor(rv.Type())
	if err != nil {
		return b, err
	}
	return appendSet(b, p, rv)
}

// Unmarshal decodes an attribute list into the tagged struct v points to. It is lenient where
// netlink allows (NLA_F_* flags masked, unknown attributes kept or dropped, missing padding on the
// last attribute) and returns an error wrapping [ErrMalformed] for malformed input; it never
// panics on any input.
func Unmarshal(b []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("gnl: unmarshal needs a non-nil pointer, not %T", v)
	}
	rv = rv.Elem()
	p, err := planFor(rv.Type())
	if err != nil {
		return err
	}
	return decodeSet(b, p, rv)
}

func appendSet(b []byte, p *plan, v reflect.Value) ([]byte, error) {
	var err error
	for i := range p.fields {
		f := &p.fields[i]
		fv := v.Field(f.index)
		if f.kind == kindSlice {
			if fv.Len() == 0 {
				continue
			}
			if b, err = appendSlice(b, f, fv); err != nil {
				return b, err
			}
			continue
		}
		if f.omitempty && fv.IsZero() {
			continue
		}
		if b, err = appendValue(b, f, f.attr, fv); err != nil {
			return b, err
		}
	}
	return b, nil
}

func appendSlice(b []byte, f *field, fv reflect.Value) ([]byte, error) {
	var err error
	if f.multi {
		for j := range fv.Len() {
			if b, err = appendValue(b, f.elem, f.attr, fv.Index(j)); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	b, off := appendAttrHeader(b, f.attr|FlagNested)
	for j := range fv.Len() {
		if j+1 > int(typeMask) {
			return b, fmt.Errorf("%w: %s has more than %d entries", ErrTooLarge, f.name, typeMask)
		}
		if b, err = appendValue(b, f.elem, uint16(j+1), fv.Index(j)); err != nil {
			return b, err
		}
	}
	return finishAttr(b, off)
}

// appendValue appends v as attribute typ. Nil pointers and false flags are absent.
func appendValue(b []byte, f *field, typ uint16, v reflect.Value) ([]byte, error) {
	if f.ptr {
		if v.IsNil() {
			return b, nil
		}
		v = v.Elem()
	}
	var order binary.AppendByteOrder = binary.NativeEndian
	if f.net {
		order = binary.BigEndian
	}
	switch f.kind {
	case kindFlag:
		if !v.Bool() {
			return b, nil
		}
		b, off := appendAttrHeader(b, typ)
		return finishAttr(b, off)
	case kindNested:
		b, off := appendAttrHeader(b, typ|FlagNested)
		b, err := appendSet(b, f.sub, v)
		if err != nil {
			return b, err
		}
		return finishAttr(b, off)
	}
	b, off := appendAttrHeader(b, typ)
	switch f.kind {
	case kindU8:
		b = append(b, uint8(v.Uint()))
	case kindS8:
		b = append(b, uint8(v.Int()))
	case kindU16:
		b = order.AppendUint16(b, uint16(v.Uint()))
	case kindS16:
		b = order.AppendUint16(b, uint16(v.Int()))
	case kindU32:
		b = order.AppendUint32(b, uint32(v.Uint()))
	case kindS32:
		b = order.AppendUint32(b, uint32(v.Int()))
	case kindU64:
		b = order.AppendUint64(b, v.Uint())
	case kindS64:
		b = order.AppendUint64(b, uint64(v.Int()))
	case kindString:
		s := v.String()
		if strings.IndexByte(s, 0) >= 0 {
			return b, fmt.Errorf("gnl: %s: string contains a NUL byte", f.name)
		}
		b = append(b, s...)
		b = append(b, 0)
	case kindBytes:
		b = append(b, v.Bytes()...)
	case kindFixed:
		for i := range v.Len() {
			b = append(b, uint8(v.Index(i).Uint()))
		}
	case kindBinary:
		var err error
		if b, err = appendBinary(b, f, v); err != nil {
			return b, err
		}
	default:
		return b, fmt.Errorf("gnl: %s: cannot encode kind %s", f.name, f.kind)
	}
	return finishAttr(b, off)
}

func appendBinary(b []byte, f *field, v reflect.Value) ([]byte, error) {
	var x any
	if v.CanAddr() {
		x = v.Addr().Interface()
	} else {
		x = v.Interface()
	}
	switch m := x.(type) {
	case encoding.BinaryAppender:
		return m.AppendBinary(b)
	case encoding.BinaryMarshaler:
		p, err := m.MarshalBinary()
		if err != nil {
			return b, fmt.Errorf("gnl: %s: %w", f.name, err)
		}
		return append(b, p...), nil
	}
	return b, fmt.Errorf("gnl: %s: %s is decode-only (it has no AppendBinary or MarshalBinary)", f.name, f.typ)
}

// decodeSet fills v from the attributes in b. Fields whose attribute is absent are zeroed;
// present ones reuse what v already holds where they can (string contents that did not change,
// byte and slice capacity, pointed-to nested sets), so that decoding again into the same value,
// as a dump does, allocates nothing for unchanged attributes.
func decodeSet(b []byte, p *plan, v reflect.Value) error {
	if len(p.fields) > 256 {
		v.SetZero()
	}
	var seen [4]uint64
	var pres *Present
	if p.present >= 0 {
		pres = v.Field(p.present).Addr().Interface().(*Present)
		*pres = Present{}
	}
	if p.unknown >= 0 {
		v.Field(p.unknown).SetLen(0)
	}
	for i := range p.fields {
		if p.fields[i].kind == kindSlice {
			v.Field(p.fields[i].index).SetLen(0)
		}
	}
	it := attrIter{b: b}
	for it.next() {
		a := it.a
		if pres != nil {
			pres.set(a.Type)
		}
		f := p.lookup(a.Type)
		if f == nil {
			if p.unknown >= 0 && !p.ignore[a.Type] {
				uf := v.Field(p.unknown)
				a.Data = append([]byte(nil), a.Data...) // the receive buffer is reused
				uf.Set(reflect.Append(uf, reflect.ValueOf(a)))
			}
			continue
		}
		fi := int(p.byAttr[a.Type])
		seen[fi/64&3] |= 1 << (fi % 64)
		fv := v.Field(f.index)
		var err error
		switch {
		case f.kind != kindSlice:
			err = decodeValue(f, a.Data, fv)
		case f.multi:
			err = decodeElem(f.elem, a.Data, fv)
		default:
			err = decodeIndexed(f, a.Data, fv)
		}
		if err != nil {
			return fmt.Errorf("%s.%s (attribute %d): %w", p.name, f.name, a.Type, err)
		}
	}
	if it.err != nil {
		return fmt.Errorf("%s: %w", p.name, it.err)
	}
	if len(p.fields) <= 256 {
		for i := range p.fields {
			if seen[i/64]&(1<<(i%64)) == 0 && p.fields[i].kind != kindSlice {
				v.Field(p.fields[i].index).SetZero()
			}
		}
	}
	return nil
}

func decodeIndexed(f *field, b []byte, fv reflect.Value) error {
	it := attrIter{b: b}
	for it.next() {
		if err := decodeElem(f.elem, it.a.Data, fv); err != nil {
			return fmt.Errorf("entry %d: %w", it.a.Type, err)
		}
	}
	return it.err
}

// decodeElem appends one decoded element to the slice fv.
func decodeElem(elem *field, b []byte, fv reflect.Value) error {
	n := fv.Len()
	if n < fv.Cap() {
		fv.SetLen(n + 1) // the element is reused: decodeValue resets what the attribute lacks
	} else {
		fv.Set(reflect.Append(fv, reflect.Zero(fv.Type().Elem())))
	}
	return decodeValue(elem, b, fv.Index(n))
}

func decodeValue(f *field, b []byte, v reflect.Value) error {
	if f.ptr {
		if v.IsNil() {
			v.Set(reflect.New(f.typ.Elem()))
		}
		v = v.Elem()
	}
	var order binary.ByteOrder = binary.NativeEndian
	if f.net {
		order = binary.BigEndian
	}
	if f.size > 0 && f.kind != kindFixed && len(b) != f.size {
		// A 64-bit field also takes a 32-bit payload (the kernel's variable-width NLA_UINT/SINT).
		if f.size != 8 || len(b) != 4 {
			return fmt.Errorf("%w: %s payload is %d bytes, want %d", ErrMalformed, f.kind, len(b), f.size)
		}
	}
	switch f.kind {
	case kindU8:
		v.SetUint(uint64(b[0]))
	case kindS8:
		v.SetInt(int64(int8(b[0])))
	case kindU16:
		v.SetUint(uint64(order.Uint16(b)))
	case kindS16:
		v.SetInt(int64(int16(order.Uint16(b))))
	case kindU32:
		v.SetUint(uint64(order.Uint32(b)))
	case kindS32:
		v.SetInt(int64(int32(order.Uint32(b))))
	case kindU64:
		if len(b) == 4 {
			v.SetUint(uint64(order.Uint32(b)))
		} else {
			v.SetUint(order.Uint64(b))
		}
	case kindS64:
		if len(b) == 4 {
			v.SetInt(int64(int32(order.Uint32(b))))
		} else {
			v.SetInt(int64(order.Uint64(b)))
		}
	case kindFlag:
		v.SetBool(true)
	case kindString:
		if i := strings.IndexByte(string(b), 0); i >= 0 { // no allocation: the conversion is only compared
			b = b[:i]
		}
		if v.String() != string(b) {
			v.SetString(string(b))
		}
	case kindBytes:
		v.SetBytes(append(v.Bytes()[:0], b...))
	case kindFixed:
		if len(b) > f.size {
			return fmt.Errorf("%w: payload is %d bytes, the field holds %d", ErrMalformed, len(b), f.size)
		}
		v.SetZero()
		reflect.Copy(v, reflect.ValueOf(b))
	case kindBinary:
		u := v.Addr().Interface().(encoding.BinaryUnmarshaler)
		if err := u.UnmarshalBinary(b); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	case kindNested:
		return decodeSet(b, f.sub, v)
	default:
		return fmt.Errorf("gnl: %s: cannot decode kind %s", f.name, f.kind)
	}
	return nil
}
