package ipvs

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// The decoders of the replies IPVS sends by the thousand: services (IPVS_CMD_NEW_SERVICE) and
// destinations (IPVS_CMD_NEW_DEST), each the only decoder of its message. They are written by
// hand, straight into the exported types without reflection or allocations, because Table
// decodes one per destination and gnl's generic decoding, cheap natively, costs several times as
// much under emulation, where the benchmark runs. They follow gnl's lenient rules: flags masked
// from attribute types, unknown attributes skipped, the last padding optional, a u64 taking a
// 4-byte payload, fixed-size bytes taking a shorter one, the last of repeated attributes winning.

func sizeErr(what string, n, want int) error {
	return fmt.Errorf("%w: %s payload is %d bytes, want %d", gnl.ErrMalformed, what, n, want)
}

func u16(b []byte, order binary.ByteOrder) (uint16, error) {
	if len(b) != 2 {
		return 0, sizeErr("u16", len(b), 2)
	}
	return order.Uint16(b), nil
}

func u32(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, sizeErr("u32", len(b), 4)
	}
	return binary.NativeEndian.Uint32(b), nil
}

func u64(b []byte) (uint64, error) {
	switch len(b) {
	case 8:
		return binary.NativeEndian.Uint64(b), nil
	case 4:
		return uint64(binary.NativeEndian.Uint32(b)), nil
	}
	return 0, sizeErr("u64", len(b), 8)
}

func fixed(dst []byte, b []byte) error {
	if len(b) > len(dst) {
		return fmt.Errorf("%w: payload is %d bytes, the field holds %d", gnl.ErrMalformed, len(b), len(dst))
	}
	clear(dst)
	copy(dst, b)
	return nil
}

// decodeStats decodes an IPVS_*_ATTR_STATS or _STATS64 nest. wide says whether the counters other
// than the byte counts are u64 (STATS64) or u32 (STATS).
func decodeStats(b []byte, wide bool) (Stats, error) {
	var s Stats
	it := gnl.NewAttrIter(b)
	for it.Next() {
		var p *uint64
		switch it.Attr().Type {
		case 1:
			p = &s.Conns
		case 2:
			p = &s.InPackets
		case 3:
			p = &s.OutPackets
		case 4:
			p = &s.InBytes
		case 5:
			p = &s.OutBytes
		case 6:
			p = &s.CPS
		case 7:
			p = &s.InPPS
		case 8:
			p = &s.OutPPS
		case 9:
			p = &s.InBPS
		case 10:
			p = &s.OutBPS
		default:
			continue
		}
		var err error
		if wide || it.Attr().Type == 4 || it.Attr().Type == 5 {
			*p, err = u64(it.Attr().Data)
		} else {
			var v uint32
			v, err = u32(it.Attr().Data)
			*p = uint64(v)
		}
		if err != nil {
			return s, fmt.Errorf("stats attribute %d: %w", it.Attr().Type, err)
		}
	}
	return s, it.Err()
}

// decodeDestNest decodes the payload of an IPVS_CMD_ATTR_DEST attribute into d; svc is the
// family of the destination's service, which a destination without its own family has.
func decodeDestNest(nest []byte, svc lvs.Family, d *Destination) error {
	*d = Destination{}
	var (
		addr          [16]byte
		af            uint16
		have64, have3 bool
	)
	it := gnl.NewAttrIter(nest)
	for it.Next() {
		a := it.Attr()
		var err error
		switch a.Type {
		case 1:
			err = fixed(addr[:], a.Data)
		case 10:
			d.Stats32, err = decodeStats(a.Data, false)
			have3 = true
		case 11:
			af, err = u16(a.Data, binary.NativeEndian)
		case 12:
			d.Stats, err = decodeStats(a.Data, true)
			have64 = true
		default:
			err = decodeDestScalar(d, a.Type, a.Data)
		}
		if err != nil {
			return fmt.Errorf("destination attribute %d: %w", a.Type, err)
		}
	}
	if it.Err() != nil {
		return it.Err()
	}
	d.Family = svc
	if af != 0 {
		d.Family = lvs.Family(af)
	}
	switch d.Family {
	case lvs.IPv4, lvs.IPv6:
		d.Address = addrFrom(d.Family, addr)
	default:
		return fmt.Errorf("%w: destination with address family %d", ErrInvalid, d.Family)
	}
	if !have64 && have3 {
		d.Stats = d.Stats32 // kernels before 4.1 have no 64-bit counters
	}
	return nil
}

// decodeDestScalar decodes the destination attributes that are single numbers.
func decodeDestScalar(d *Destination, typ uint16, b []byte) (err error) {
	var v32 uint32
	switch typ {
	case 2:
		d.Port, err = u16(b, binary.BigEndian)
	case 3:
		v32, err = u32(b)
		d.Forwarding = lvs.Forwarding(v32 & 0x7) // IP_VS_CONN_F_FWD_MASK
	case 4:
		d.Weight, err = u32(b)
	case 5:
		d.UpperThreshold, err = u32(b)
	case 6:
		d.LowerThreshold, err = u32(b)
	case 7:
		d.ActiveConns, err = u32(b)
	case 8:
		d.InactiveConns, err = u32(b)
	case 9:
		d.PersistentConns, err = u32(b)
	case 13:
		if len(b) != 1 {
			return sizeErr("u8", len(b), 1)
		}
		d.TunnelType = lvs.TunnelType(b[0])
	case 14:
		d.TunnelPort, err = u16(b, binary.BigEndian)
	case 15:
		var f uint16
		f, err = u16(b, binary.NativeEndian)
		d.TunnelFlags = lvs.TunnelFlags(f)
	}
	return err
}

// decodeServiceNest decodes the payload of an IPVS_CMD_ATTR_SERVICE attribute.
func decodeServiceNest(b []byte) (Service, error) {
	var (
		s             Service
		addr          [16]byte
		mask          [4]byte
		have64, have3 bool
	)
	it := gnl.NewAttrIter(b)
	for it.Next() {
		a := it.Attr()
		var err error
		switch a.Type {
		case 3:
			err = fixed(addr[:], a.Data)
		case 9:
			err = fixed(mask[:], a.Data)
		case 10:
			s.Stats32, err = decodeStats(a.Data, false)
			have3 = true
		case 12:
			s.Stats, err = decodeStats(a.Data, true)
			have64 = true
		default:
			err = decodeServiceScalar(&s, a.Type, a.Data)
		}
		if err != nil {
			return Service{}, fmt.Errorf("service attribute %d: %w", a.Type, err)
		}
	}
	if it.Err() != nil {
		return Service{}, it.Err()
	}
	f := s.Family
	if f != lvs.IPv4 && f != lvs.IPv6 {
		return Service{}, fmt.Errorf("%w: service with address family %d", ErrInvalid, f)
	}
	if s.FirewallMark == 0 {
		s.Address = addrFrom(f, addr)
	} else {
		s.Protocol, s.Port = 0, 0
	}
	if f == lvs.IPv6 {
		// A host-order prefix length for IPv6.
		s.PersistencePrefixLength = uint8(min(binary.NativeEndian.Uint32(mask[:]), 128))
	} else {
		// A __be32 mask for IPv4.
		s.PersistencePrefixLength = uint8(bits.LeadingZeros32(^binary.BigEndian.Uint32(mask[:])))
	}
	if !have64 && have3 {
		s.Stats = s.Stats32
	}
	return s, nil
}

// decodeServiceScalar decodes the service attributes that are numbers, names and flags.
func decodeServiceScalar(s *Service, typ uint16, b []byte) (err error) {
	var v uint16
	switch typ {
	case 1:
		v, err = u16(b, binary.NativeEndian)
		s.Family = lvs.Family(v)
	case 2:
		v, err = u16(b, binary.NativeEndian)
		s.Protocol = lvs.Protocol(v)
	case 4:
		s.Port, err = u16(b, binary.BigEndian)
	case 5:
		s.FirewallMark, err = u32(b)
	case 6:
		s.Scheduler = cString(b)
	case 7:
		// struct ip_vs_flags: the flags, then the mask of those to change.
		if len(b) < 8 {
			return fmt.Errorf("%w: struct ip_vs_flags of %d bytes", gnl.ErrMalformed, len(b))
		}
		s.Flags = lvs.ServiceFlags(binary.NativeEndian.Uint32(b))
	case 8:
		s.TimeoutSeconds, err = u32(b)
	case 11:
		s.PersistenceEngine = cString(b)
	}
	return err
}

// cString is gnl's string decoding: up to the first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
