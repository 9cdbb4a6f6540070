package ipvs

import (
	"encoding/binary"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// Hand-written encoders for the requests Apply sends by the thousand. They produce exactly the
// attributes gnl encodes from the declarations in wire.go (TestHandEncoding compares them), at a
// fraction of the cost of reflection. gnl places them under attributes IPVS_CMD_ATTR_SERVICE and
// IPVS_CMD_ATTR_DEST declared as raw bytes, so those two headers lack NLA_F_NESTED: the IPVS
// operations do not require it (GENL_DONT_VALIDATE_STRICT), as the VM tests show, and gnl has no
// way yet to add pre-encoded nested attributes (see the report in README.md).

type (
	rawSvcMsg struct {
		Service []byte `gnl:"1"`
	}
	rawDestMsg struct {
		Service []byte `gnl:"1"`
		Dest    []byte `gnl:"2"`
	}
)

var (
	newServiceRaw = gnl.Command[rawSvcMsg, empty]{Family: family, Name: "NEW_SERVICE", Cmd: cmdNewService}
	setServiceRaw = gnl.Command[rawSvcMsg, empty]{Family: family, Name: "SET_SERVICE", Cmd: cmdSetService}
	delServiceRaw = gnl.Command[rawSvcMsg, empty]{Family: family, Name: "DEL_SERVICE", Cmd: cmdDelService}
	newDestRaw    = gnl.Command[rawDestMsg, empty]{Family: family, Name: "NEW_DEST", Cmd: cmdNewDest}
	setDestRaw    = gnl.Command[rawDestMsg, empty]{Family: family, Name: "SET_DEST", Cmd: cmdSetDest}
	delDestRaw    = gnl.Command[rawDestMsg, empty]{Family: family, Name: "DEL_DEST", Cmd: cmdDelDest}
)

func appendHdr(b []byte, typ uint16, n int) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+n))
	return binary.NativeEndian.AppendUint16(b, typ)
}

func pad(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendU16(b []byte, typ, v uint16) []byte {
	return pad(binary.NativeEndian.AppendUint16(appendHdr(b, typ, 2), v))
}

func appendBE16(b []byte, typ, v uint16) []byte {
	return pad(binary.BigEndian.AppendUint16(appendHdr(b, typ, 2), v))
}

func appendU32(b []byte, typ uint16, v uint32) []byte {
	return binary.NativeEndian.AppendUint32(appendHdr(b, typ, 4), v)
}

func appendBytes(b []byte, typ uint16, v []byte) []byte {
	return pad(append(appendHdr(b, typ, len(v)), v...))
}

func appendString(b []byte, typ uint16, s string) []byte {
	b = append(appendHdr(b, typ, len(s)+1), s...)
	return pad(append(b, 0))
}

func appendServiceKey(b []byte, k *wireServiceKey) []byte {
	b = appendU16(b, 1, k.AF)
	b = appendU16(b, 2, k.Protocol)
	b = appendBytes(b, 3, k.Addr[:])
	b = appendBE16(b, 4, k.Port)
	if k.FWMark != 0 {
		b = appendU32(b, 5, k.FWMark)
	}
	return b
}

func appendService(b []byte, w *wireService) []byte {
	b = appendU16(b, 1, w.AF)
	if w.Protocol != 0 {
		b = appendU16(b, 2, w.Protocol)
	}
	b = appendBytes(b, 3, w.Addr[:])
	b = appendBE16(b, 4, w.Port)
	if w.FWMark != 0 {
		b = appendU32(b, 5, w.FWMark)
	}
	b = appendString(b, 6, w.SchedName)
	b = appendHdr(b, 7, 8)
	b = binary.NativeEndian.AppendUint32(b, w.Flags.Flags)
	b = binary.NativeEndian.AppendUint32(b, w.Flags.Mask)
	b = appendU32(b, 8, w.Timeout)
	b = appendBytes(b, 9, w.Netmask[:])
	if w.PEName != "" {
		b = appendString(b, 11, w.PEName)
	}
	return b
}

func appendDest(b []byte, w *wireDest) []byte {
	b = appendBytes(b, 1, w.Addr[:])
	b = appendBE16(b, 2, w.Port)
	b = appendU32(b, 3, w.FwdMethod)
	b = appendU32(b, 4, uint32(w.Weight))
	b = appendU32(b, 5, w.UThresh)
	b = appendU32(b, 6, w.LThresh)
	if w.AddrFamily != 0 {
		b = appendU16(b, 11, w.AddrFamily)
	}
	if w.TunType != 0 {
		b = pad(append(appendHdr(b, 13, 1), w.TunType))
	}
	if w.TunPort != 0 {
		b = appendBE16(b, 14, w.TunPort)
	}
	if w.TunFlags != 0 {
		b = appendU16(b, 15, w.TunFlags)
	}
	return b
}

func appendDestKey(b []byte, k *wireDestKey) []byte {
	b = appendBytes(b, 1, k.Addr[:])
	b = appendBE16(b, 2, k.Port)
	if k.AddrFamily != 0 {
		b = appendU16(b, 11, k.AddrFamily)
	}
	return b
}

// encoder queues operations in a batch with the hand-written encoders, reusing the encoding of
// the service key across consecutive operations on one service.
type encoder struct {
	svc     *Service
	svcKey  ServiceKey
	keyOK   bool
	keyBuf  []byte
	destBuf []byte
	svcBuf  []byte
}

func (e *encoder) key(s *Service) ([]byte, Family, error) {
	if e.keyOK && s == e.svc {
		return e.keyBuf, e.svcKey.Family, nil
	}
	k := s.Key()
	if e.keyOK && k == e.svcKey {
		e.svc = s
		return e.keyBuf, k.Family, nil
	}
	w, err := s.wireKey()
	if err != nil {
		return nil, 0, err
	}
	e.keyBuf = appendServiceKey(e.keyBuf[:0], w)
	e.svc, e.svcKey, e.keyOK = s, k, true
	return e.keyBuf, Family(w.AF), nil
}

func (e *encoder) add(b *gnl.Batch, o *Op) error {
	switch o.Kind {
	case AddService, UpdateService:
		w, err := o.Service.wire()
		if err != nil {
			return err
		}
		e.svcBuf = appendService(e.svcBuf[:0], w)
		if o.Kind == AddService {
			return newServiceRaw.Add(b, &rawSvcMsg{Service: e.svcBuf})
		}
		return setServiceRaw.Add(b, &rawSvcMsg{Service: e.svcBuf})
	case DeleteService:
		k, _, err := e.key(o.Service)
		if err != nil {
			return err
		}
		return delServiceRaw.Add(b, &rawSvcMsg{Service: k})
	case AddDestination, UpdateDestination:
		k, af, err := e.key(o.Service)
		if err != nil {
			return err
		}
		w, err := o.Destination.wire(af)
		if err != nil {
			return err
		}
		e.destBuf = appendDest(e.destBuf[:0], &w)
		if o.Kind == AddDestination {
			return newDestRaw.Add(b, &rawDestMsg{Service: k, Dest: e.destBuf})
		}
		return setDestRaw.Add(b, &rawDestMsg{Service: k, Dest: e.destBuf})
	case DeleteDestination:
		k, af, err := e.key(o.Service)
		if err != nil {
			return err
		}
		w, err := o.Destination.wireKey(af)
		if err != nil {
			return err
		}
		e.destBuf = appendDestKey(e.destBuf[:0], w)
		return delDestRaw.Add(b, &rawDestMsg{Service: k, Dest: e.destBuf})
	}
	return o.add(b) // reports the unknown kind
}
