package gnl

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// Ignore is the type of a blank field that declares an attribute to skip on decode (padding such
// as TASKSTATS_TYPE_NULL, or attributes deliberately dropped). It is never encoded.
type Ignore struct{}

// RawSet is a nested attribute set kept as its encoded attributes. Decoding stores the nest's
// payload without looking into it (decode it later with [Unmarshal] or an [AttrIter]); encoding
// writes it back as a nested attribute, NLA_F_NESTED set. Encode a set once with [Marshal] and
// reuse it in many requests: the key of an IPVS service in the request of each of its
// destinations.
type RawSet []byte

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
	rawSet    bool // a RawSet: bytes, encoded as a nest
	ptr       bool // the field is a pointer to the nested set or binary type
	offset    uintptr
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

	unknownOff, presentOff uintptr
	err                    error
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
	typRaw  = reflect.TypeFor[RawSet]()
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
		p.err = fmt.Errorf("gnl: attribute set %s: not a struct", t)
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
			p.err = fmt.Errorf("gnl: attribute set %s: field %s: %w", t, sf.Name, err)
			return p
		}
		switch f.kind {
		case kindUnknown:
			p.unknown, p.unknownOff = i, sf.Offset
			continue
		case kindPresent:
			p.present, p.presentOff = i, sf.Offset
			continue
		case kindIgnore:
			if p.ignore == nil {
				p.ignore = map[uint16]bool{}
			}
			p.ignore[f.attr] = true
			continue
		}
		if !sf.IsExported() {
			p.err = fmt.Errorf("gnl: attribute set %s: field %s: unexported field has a gnl tag", t, sf.Name)
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
			p.err = fmt.Errorf("gnl: attribute set %s: attribute %d declared by both %s and %s", t, f.attr, p.fields[p.byAttr[f.attr]].name, f.name)
			return p
		}
		if p.ignore[f.attr] {
			p.err = fmt.Errorf("gnl: attribute set %s: attribute %d is both ignored and declared by %s", t, f.attr, f.name)
			return p
		}
		p.byAttr[f.attr] = int16(i)
	}
	return p
}

func parseField(sf reflect.StructField, index int, tag string, building map[reflect.Type]*plan) (field, error) {
	parts := strings.Split(tag, ",")
	f := field{name: sf.Name, index: index, typ: sf.Type, offset: sf.Offset}
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

// intKinds maps Go integer kinds to attribute kinds and payload sizes.
var intKinds = map[reflect.Kind]struct {
	kind kind
	size int
}{
	reflect.Uint8: {kindU8, 1}, reflect.Uint16: {kindU16, 2}, reflect.Uint32: {kindU32, 4}, reflect.Uint64: {kindU64, 8},
	reflect.Int8: {kindS8, 1}, reflect.Int16: {kindS16, 2}, reflect.Int32: {kindS32, 4}, reflect.Int64: {kindS64, 8},
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
	if t == typRaw {
		f.kind, f.rawSet = kindBytes, true
		return nil
	}
	if k, ok := intKinds[t.Kind()]; ok {
		f.kind, f.size = k.kind, k.size
		return nil
	}
	switch t.Kind() {
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

// Marshal encodes a tagged struct (or a pointer to one) as an attribute list; the package
// documentation gives the gnl tag's grammar.
func Marshal(v any) ([]byte, error) { return AppendMarshal(nil, v) }

// AppendMarshal appends the attribute list encoding of v to b.
func AppendMarshal(b []byte, v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return b, fmt.Errorf("gnl: marshal %s: nil pointer", rv.Type().Elem())
		}
		rv = rv.Elem()
	} else if rv.IsValid() {
		c := reflect.New(rv.Type()).Elem() // the codec reads through a pointer
		c.Set(rv)
		rv = c
	} else {
		return b, fmt.Errorf("gnl: marshal: nil value")
	}
	p, err := planFor(rv.Type())
	if err != nil {
		return b, err
	}
	b, err = appendSet(b, p, rv.Addr().UnsafePointer())
	if err != nil {
		return b, fmt.Errorf("gnl: marshal %s: %w", rv.Type(), err)
	}
	return b, nil
}

// Unmarshal decodes an attribute list into the tagged struct v points to. It is lenient where
// netlink allows (NLA_F_* flags masked, unknown attributes kept or dropped, missing padding on the
// last attribute) and returns an error wrapping [ErrMalformed] for malformed input; it never
// panics on any input.
func Unmarshal(b []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("gnl: unmarshal %T: needs a non-nil pointer", v)
	}
	p, err := planFor(rv.Type().Elem())
	if err != nil {
		return err
	}
	if err := decodeSet(b, p, rv.UnsafePointer()); err != nil {
		return fmt.Errorf("gnl: unmarshal: %w", err) // the error names the set
	}
	return nil
}

// The codec works on the memory of the struct through the field offsets of its plan, so that
// integers, strings and nested sets cost no reflection calls; slices, binary structs, zeroing
// and allocation of pointed-to sets go through reflect, which keeps the garbage collector's
// write barriers for every pointer store.

func fieldPtr(base unsafe.Pointer, f *field) unsafe.Pointer { return unsafe.Add(base, f.offset) }

// value is the reflect view of the memory at ptr, of type t.
func value(t reflect.Type, ptr unsafe.Pointer) reflect.Value { return reflect.NewAt(t, ptr).Elem() }

func appendSet(b []byte, p *plan, base unsafe.Pointer) ([]byte, error) {
	var err error
	for i := range p.fields {
		f := &p.fields[i]
		ptr := fieldPtr(base, f)
		if f.kind == kindSlice {
			if b, err = appendSlice(b, f, value(f.typ, ptr)); err != nil {
				return b, err
			}
			continue
		}
		if f.omitempty && isZero(f, ptr) {
			continue
		}
		if b, err = appendValue(b, f, f.attr, ptr); err != nil {
			return b, err
		}
	}
	return b, nil
}

func isZero(f *field, ptr unsafe.Pointer) bool {
	switch f.kind {
	case kindU8, kindS8:
		return *(*uint8)(ptr) == 0
	case kindU16, kindS16:
		return *(*uint16)(ptr) == 0
	case kindU32, kindS32:
		return *(*uint32)(ptr) == 0
	case kindU64, kindS64:
		return *(*uint64)(ptr) == 0
	case kindString:
		return *(*string)(ptr) == ""
	}
	return value(f.typ, ptr).IsZero()
}

func appendSlice(b []byte, f *field, fv reflect.Value) ([]byte, error) {
	n := fv.Len()
	if n == 0 {
		return b, nil
	}
	var err error
	if f.multi {
		for j := range n {
			if b, err = appendValue(b, f.elem, f.attr, fv.Index(j).Addr().UnsafePointer()); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	if n > int(typeMask) {
		return b, fmt.Errorf("%w: %s has more than %d entries", ErrTooLarge, f.name, typeMask)
	}
	b, off := appendAttrHeader(b, f.attr|FlagNested)
	for j := range n {
		if b, err = appendValue(b, f.elem, uint16(j+1), fv.Index(j).Addr().UnsafePointer()); err != nil {
			return b, err
		}
	}
	return finishAttr(b, off)
}

// appendValue appends the value at ptr as attribute typ. Nil pointers and false flags are absent.
func appendValue(b []byte, f *field, typ uint16, ptr unsafe.Pointer) ([]byte, error) {
	if f.ptr {
		ptr = *(*unsafe.Pointer)(ptr)
		if ptr == nil {
			return b, nil
		}
	}
	var order binary.AppendByteOrder = binary.NativeEndian
	if f.net {
		order = binary.BigEndian
	}
	switch f.kind {
	case kindFlag:
		if !*(*bool)(ptr) {
			return b, nil
		}
		b, off := appendAttrHeader(b, typ)
		return finishAttr(b, off)
	case kindNested:
		b, off := appendAttrHeader(b, typ|FlagNested)
		b, err := appendSet(b, f.sub, ptr)
		if err != nil {
			return b, err
		}
		return finishAttr(b, off)
	}
	if f.rawSet {
		typ |= FlagNested
	}
	b, off := appendAttrHeader(b, typ)
	switch f.kind {
	case kindU8, kindS8:
		b = append(b, *(*uint8)(ptr))
	case kindU16, kindS16:
		b = order.AppendUint16(b, *(*uint16)(ptr))
	case kindU32, kindS32:
		b = order.AppendUint32(b, *(*uint32)(ptr))
	case kindU64, kindS64:
		b = order.AppendUint64(b, *(*uint64)(ptr))
	case kindString:
		s := *(*string)(ptr)
		if strings.IndexByte(s, 0) >= 0 {
			return b, fmt.Errorf("%s: string contains a NUL byte", f.name)
		}
		b = append(b, s...)
		b = append(b, 0)
	case kindBytes:
		b = append(b, *(*[]byte)(ptr)...)
	case kindFixed:
		b = append(b, unsafe.Slice((*byte)(ptr), f.size)...)
	case kindBinary:
		var err error
		if b, err = appendBinary(b, f, ptr); err != nil {
			return b, err
		}
	default:
		return b, fmt.Errorf("%s: cannot encode kind %s", f.name, f.kind)
	}
	return finishAttr(b, off)
}

func appendBinary(b []byte, f *field, ptr unsafe.Pointer) ([]byte, error) {
	t := f.typ
	if f.ptr {
		t = t.Elem()
	}
	switch m := reflect.NewAt(t, ptr).Interface().(type) {
	case encoding.BinaryAppender:
		return m.AppendBinary(b)
	case encoding.BinaryMarshaler:
		p, err := m.MarshalBinary()
		if err != nil {
			return b, fmt.Errorf("%s: %w", f.name, err)
		}
		return append(b, p...), nil
	}
	return b, fmt.Errorf("%s: %s is decode-only (it has no AppendBinary or MarshalBinary)", f.name, f.typ)
}

// decodeSet fills the struct at base from the attributes in b. Fields whose attribute is absent
// are zeroed; present ones reuse what the struct already holds where they can (string contents
// that did not change, byte and slice capacity, pointed-to nested sets), so that decoding again
// into the same value, as a dump does, allocates nothing for unchanged attributes.
func decodeSet(b []byte, p *plan, base unsafe.Pointer) error {
	many := len(p.fields) > 256
	if many {
		value(p.typ, base).SetZero()
	}
	var seen [4]uint64
	var pres *Present
	if p.present >= 0 {
		pres = (*Present)(unsafe.Add(base, p.presentOff))
		*pres = Present{}
	}
	if p.unknown >= 0 {
		value(typAttr, unsafe.Add(base, p.unknownOff)).SetLen(0)
	}
	for i := range p.fields {
		if f := &p.fields[i]; f.kind == kindSlice {
			value(f.typ, fieldPtr(base, f)).SetLen(0)
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
				uf := value(typAttr, unsafe.Add(base, p.unknownOff))
				a.Data = append([]byte(nil), a.Data...) // the receive buffer is reused
				uf.Set(reflect.Append(uf, reflect.ValueOf(a)))
			}
			continue
		}
		fi := int(p.byAttr[a.Type])
		seen[fi/64&3] |= 1 << (fi % 64)
		ptr := fieldPtr(base, f)
		var err error
		switch {
		case f.kind != kindSlice:
			err = decodeValue(f, a.Data, ptr)
		case f.multi:
			err = decodeElem(f.elem, a.Data, value(f.typ, ptr))
		default:
			err = decodeIndexed(f, a.Data, value(f.typ, ptr))
		}
		if err != nil {
			return fmt.Errorf("%s.%s (attribute %d): %w", p.name, f.name, a.Type, err)
		}
	}
	if it.err != nil {
		return fmt.Errorf("%s: %w", p.name, it.err)
	}
	if !many {
		for i := range p.fields {
			if f := &p.fields[i]; seen[i/64]&(1<<(i%64)) == 0 && f.kind != kindSlice {
				zero(f, fieldPtr(base, f))
			}
		}
	}
	return nil
}

// zero clears a field; integers directly, anything that may hold pointers through reflect.
func zero(f *field, ptr unsafe.Pointer) {
	if f.ptr {
		value(f.typ, ptr).SetZero()
		return
	}
	switch f.kind {
	case kindU8, kindS8, kindFlag:
		*(*uint8)(ptr) = 0
	case kindU16, kindS16:
		*(*uint16)(ptr) = 0
	case kindU32, kindS32:
		*(*uint32)(ptr) = 0
	case kindU64, kindS64:
		*(*uint64)(ptr) = 0
	case kindString:
		*(*string)(ptr) = ""
	default:
		value(f.typ, ptr).SetZero()
	}
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
		if elem.kind != kindNested {
			fv.Index(n).SetZero()
		}
	} else {
		fv.Set(reflect.Append(fv, reflect.Zero(fv.Type().Elem())))
	}
	return decodeValue(elem, b, fv.Index(n).Addr().UnsafePointer())
}

func decodeValue(f *field, b []byte, ptr unsafe.Pointer) error {
	if f.ptr {
		pp := (*unsafe.Pointer)(ptr)
		if *pp == nil {
			*pp = reflect.New(f.typ.Elem()).UnsafePointer()
		}
		ptr = *pp
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
	case kindU8, kindS8:
		*(*uint8)(ptr) = b[0]
	case kindU16, kindS16:
		*(*uint16)(ptr) = order.Uint16(b)
	case kindU32, kindS32:
		*(*uint32)(ptr) = order.Uint32(b)
	case kindU64:
		if len(b) == 4 {
			*(*uint64)(ptr) = uint64(order.Uint32(b))
		} else {
			*(*uint64)(ptr) = order.Uint64(b)
		}
	case kindS64:
		if len(b) == 4 {
			*(*int64)(ptr) = int64(int32(order.Uint32(b)))
		} else {
			*(*uint64)(ptr) = order.Uint64(b)
		}
	case kindFlag:
		*(*bool)(ptr) = true
	case kindString:
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		if sp := (*string)(ptr); *sp != string(b) { // the conversion is only compared: no allocation
			*sp = string(b)
		}
	case kindBytes:
		bp := (*[]byte)(ptr)
		if *bp == nil {
			*bp = []byte{} // present but empty is not absent (nil); no allocation
		}
		*bp = append((*bp)[:0], b...)
	case kindNested:
		return decodeSet(b, f.sub, ptr)
	default:
		return decodeOther(f, b, ptr)
	}
	return nil
}

// decodeOther decodes the kinds that decodeValue's switch leaves out: fixed-size bytes and
// binary structs.
func decodeOther(f *field, b []byte, ptr unsafe.Pointer) error {
	switch f.kind {
	case kindFixed:
		if len(b) > f.size {
			return fmt.Errorf("%w: payload is %d bytes, the field holds %d", ErrMalformed, len(b), f.size)
		}
		clear(unsafe.Slice((*byte)(ptr), f.size)[copy(unsafe.Slice((*byte)(ptr), f.size), b):])
	case kindBinary:
		t := f.typ
		if f.ptr {
			t = t.Elem()
		}
		u := reflect.NewAt(t, ptr).Interface().(encoding.BinaryUnmarshaler)
		if err := u.UnmarshalBinary(b); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	default:
		return fmt.Errorf("%s: cannot decode kind %s", f.name, f.kind)
	}
	return nil
}
