package ipvs

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"syscall"

	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

// fakeIPVS is an IPVS family for gnltest that follows ip_vs_ctl.c: the same checks in the same
// order with the same errnos, an empty destination dump for a missing service, "hashed" set on
// every service it stores.
//
// It reads requests and writes replies with its own attribute codec and the numbers of
// linux/ip_vs.h (below), never with the package's declarations or decoders, so that a wrong
// attribute number, size or byte order in the package shows up as a failure instead of
// cancelling out.
type fakeIPVS struct {
	mu       sync.Mutex
	svcs     []*fakeSvc
	timeouts [3]uint32 // tcp, tcpfin, udp
	daemons  []fakeDaemon
	reqs     []gnltest.Request // every request, for encoding checks
	// intrDumps makes the next n service dumps come back flagged NLM_F_DUMP_INTR.
	intrDumps int
	// after, when set, runs after each request is answered (with the fake unlocked), to play
	// another program changing the table in between.
	after func(req gnltest.Request)
}

// linux/ip_vs.h, written out here on purpose (see fakeIPVS).
const (
	hCmdNewService = 1
	hCmdSetService = 2
	hCmdDelService = 3
	hCmdGetService = 4
	hCmdNewDest    = 5
	hCmdSetDest    = 6
	hCmdDelDest    = 7
	hCmdGetDest    = 8
	hCmdNewDaemon  = 9
	hCmdDelDaemon  = 10
	hCmdGetDaemon  = 11
	hCmdSetConfig  = 12
	hCmdGetConfig  = 13
	hCmdSetInfo    = 14
	hCmdGetInfo    = 15
	hCmdZero       = 16
	hCmdFlush      = 17

	hCmdAttrService = 1
	hCmdAttrDest    = 2
	hCmdAttrDaemon  = 3
	hCmdAttrTCP     = 4
	hCmdAttrTCPFin  = 5
	hCmdAttrUDP     = 6

	hSvcAF       = 1
	hSvcProtocol = 2
	hSvcAddr     = 3
	hSvcPort     = 4
	hSvcFWMark   = 5
	hSvcSched    = 6
	hSvcFlags    = 7
	hSvcTimeout  = 8
	hSvcNetmask  = 9
	hSvcStats    = 10
	hSvcPEName   = 11
	hSvcStats64  = 12

	hDestAddr     = 1
	hDestPort     = 2
	hDestFwd      = 3
	hDestWeight   = 4
	hDestUThresh  = 5
	hDestLThresh  = 6
	hDestActive   = 7
	hDestInact    = 8
	hDestPersist  = 9
	hDestStats    = 10
	hDestAF       = 11
	hDestStats64  = 12
	hDestTunType  = 13
	hDestTunPort  = 14
	hDestTunFlags = 15

	hDaemonState    = 1
	hDaemonIfn      = 2
	hDaemonSyncID   = 3
	hDaemonMaxLen   = 4
	hDaemonGroup    = 5
	hDaemonGroup6   = 6
	hDaemonPort     = 7
	hDaemonTTL      = 8
	hInfoVersion    = 1
	hInfoConnTab    = 2
	hStatsConns     = 1
	hStatsInBytes   = 4
	hStatsOutBytes  = 5
	hStatsPad       = 11
	hFlagHashed     = 0x0002
	hFwdTunnel      = 2
	hTunGUE         = 1
	hNLANested      = 0x8000
	hAFInet         = 2
	hAFInet6        = 10
	hNLMFDumpIntr   = 0x10
	hStateMaster    = 1
	hStateBackup    = 2
	hSchedNameLimit = 16 // IP_VS_SCHEDNAME_MAXLEN
)

type fakeSvc struct {
	af, proto uint16
	addr      [16]byte
	port      uint16 // host order
	fwmark    uint32
	sched, pe string
	flags     uint32
	timeout   uint32
	netmask   uint32 // as the kernel keeps it: __be32 mask bytes (IPv4) or host-order length (IPv6)
	dests     []fakeDest
}

type fakeDest struct {
	af                       uint16
	addr                     [16]byte
	port                     uint16
	fwd, weight              uint32
	uthresh, lthresh         uint32
	tunType                  uint8
	tunPort, tunFlags        uint16
	active, inactive, persis uint32
}

type fakeDaemon struct {
	state, syncID uint32
	ifn           string
	maxLen, port  uint16
	ttl           uint8
	group         []byte // 4 or 16 bytes, or nil
}

var fakeSchedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

func newFake() (*fakeIPVS, *gnltest.Kernel) {
	f := &fakeIPVS{timeouts: [3]uint32{900, 120, 300}}
	k := &gnltest.Kernel{DatagramsPerRead: 4} // several datagrams per read, as from the real socket
	k.Register(&gnltest.Family{Name: "IPVS", Version: 1, MaxAttr: 6, Handle: f.handle})
	return f, k
}

// --- the fake's attribute codec ---

// fattrs splits attributes into a map by type (flags masked, the last of repeated ones
// winning), as nla_parse does.
func fattrs(b []byte) (map[uint16][]byte, error) {
	m := map[uint16][]byte{}
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			return nil, errors.New("bad attribute length")
		}
		m[binary.NativeEndian.Uint16(b[2:])&0x3fff] = b[4:l]
		b = b[min((l+3)&^3, len(b)):]
	}
	return m, nil
}

func fput(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func fnest(b []byte, typ uint16, inner []byte) []byte { return fput(b, typ|hNLANested, inner) }

func ne16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func ne64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }
func cstr(s string) []byte { return append([]byte(s), 0) }

// fstats encodes a stats nest: 64-bit (STATS64, a PAD attribute first, as
// nla_put_u64_64bit may add) or 32-bit (STATS, u64 byte counters only).
func fstats(conns, inBytes, outBytes uint64, wide bool) []byte {
	var b []byte
	if wide {
		b = fput(b, hStatsPad, nil)
		b = fput(b, hStatsConns, ne64(conns))
	} else {
		b = fput(b, hStatsConns, ne32(uint32(conns)))
	}
	b = fput(b, hStatsInBytes, ne64(inBytes))
	return fput(b, hStatsOutBytes, ne64(outBytes))
}

func errno(e syscall.Errno) error { return &gnltest.Error{Errno: e} }

func fu16(b []byte, ok *bool) uint16 {
	if len(b) < 2 {
		*ok = false
		return 0
	}
	return binary.NativeEndian.Uint16(b)
}

func fu32(b []byte, ok *bool) uint32 {
	if len(b) < 4 {
		*ok = false
		return 0
	}
	return binary.NativeEndian.Uint32(b)
}

func fstr(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// --- requests ---

func (f *fakeIPVS) handle(req gnltest.Request) ([]gnltest.Message, error) {
	f.mu.Lock()
	msgs, err := f.handleLocked(req)
	after := f.after
	f.mu.Unlock()
	if after != nil {
		after(req)
	}
	return msgs, err
}

func (f *fakeIPVS) handleLocked(req gnltest.Request) ([]gnltest.Message, error) {
	f.reqs = append(f.reqs, req)
	top, err := fattrs(req.Attrs)
	if err != nil {
		return nil, errno(syscall.EINVAL)
	}
	switch req.Cmd {
	case hCmdGetInfo:
		b := fput(nil, hInfoVersion, ne32(0x010201))
		return []gnltest.Message{{Cmd: hCmdSetInfo, Attrs: fput(b, hInfoConnTab, ne32(4096))}}, nil
	case hCmdGetConfig:
		var b []byte
		for i, v := range f.timeouts {
			b = fput(b, uint16(hCmdAttrTCP+i), ne32(v))
		}
		return []gnltest.Message{{Cmd: hCmdSetConfig, Attrs: b}}, nil
	case hCmdSetConfig:
		// ip_vs_genl_set_config: each timeout present and non-zero is set.
		for i := range f.timeouts {
			ok := true
			if v, has := top[uint16(hCmdAttrTCP+i)]; has {
				if n := fu32(v, &ok); ok && n != 0 {
					f.timeouts[i] = n
				}
			}
		}
		return nil, nil
	case hCmdFlush:
		f.svcs = nil
		return nil, nil
	case hCmdNewDaemon, hCmdDelDaemon, hCmdGetDaemon:
		return f.daemon(req.Cmd, top)
	case hCmdGetService:
		if req.Dump() {
			return f.dumpServices(), nil
		}
	case hCmdZero:
		if top[hCmdAttrService] == nil {
			return nil, nil
		}
	}
	return f.serviceCmd(req.Cmd, top)
}

func (f *fakeIPVS) dumpServices() []gnltest.Message {
	var out []gnltest.Message
	for _, s := range f.svcs {
		m := gnltest.Message{Cmd: hCmdNewService, Attrs: fnest(nil, hCmdAttrService, s.encode())}
		if f.intrDumps > 0 {
			m.Flags |= hNLMFDumpIntr
		}
		out = append(out, m)
	}
	if f.intrDumps > 0 {
		f.intrDumps--
	}
	return out
}

// parsedSvc is ip_vs_genl_parse_service's result.
type parsedSvc struct {
	fakeSvc
	flagMask uint32
	full     bool
}

// parseService follows ip_vs_genl_parse_service: the family, then a firewall mark or protocol,
// address and port, then (for NEW and SET) scheduler, flags, timeout and netmask, all required.
func parseService(nest []byte, full bool) (*parsedSvc, error) {
	a, err := fattrs(nest)
	if nest == nil || err != nil {
		return nil, errno(syscall.EINVAL)
	}
	ok := true
	p := &parsedSvc{full: full}
	if a[hSvcAF] == nil {
		return nil, errno(syscall.EINVAL)
	}
	p.af = fu16(a[hSvcAF], &ok)
	if p.af != hAFInet && p.af != hAFInet6 {
		return nil, errno(syscall.EAFNOSUPPORT)
	}
	if v, has := a[hSvcFWMark]; has {
		p.fwmark = fu32(v, &ok)
	} else {
		if a[hSvcProtocol] == nil || a[hSvcAddr] == nil || a[hSvcPort] == nil {
			return nil, errno(syscall.EINVAL)
		}
		p.proto = fu16(a[hSvcProtocol], &ok)
		copy(p.addr[:], a[hSvcAddr])
		if len(a[hSvcPort]) != 2 {
			ok = false
		} else {
			p.port = binary.BigEndian.Uint16(a[hSvcPort])
		}
	}
	if full {
		if a[hSvcSched] == nil || a[hSvcFlags] == nil || a[hSvcTimeout] == nil || a[hSvcNetmask] == nil {
			return nil, errno(syscall.EINVAL)
		}
		if len(a[hSvcSched]) > hSchedNameLimit || len(a[hSvcFlags]) != 8 {
			return nil, errno(syscall.EINVAL)
		}
		p.sched, p.pe = fstr(a[hSvcSched]), fstr(a[hSvcPEName])
		p.flags = fu32(a[hSvcFlags], &ok)
		p.flagMask = fu32(a[hSvcFlags][4:], &ok)
		p.timeout = fu32(a[hSvcTimeout], &ok)
		p.netmask = fu32(a[hSvcNetmask], &ok)
	}
	if !ok {
		return nil, errno(syscall.EINVAL)
	}
	return p, nil
}

func (f *fakeIPVS) find(p *parsedSvc) (int, *fakeSvc) {
	for i, s := range f.svcs {
		if s.af != p.af {
			continue
		}
		if p.fwmark != 0 || s.fwmark != 0 {
			if s.fwmark == p.fwmark {
				return i, s
			}
			continue
		}
		if s.proto == p.proto && s.addr == p.addr && s.port == p.port {
			return i, s
		}
	}
	return -1, nil
}

// serviceCmd follows ip_vs_genl_set_cmd and ip_vs_genl_get_cmd for commands on one service.
func (f *fakeIPVS) serviceCmd(cmd uint8, top map[uint16][]byte) ([]gnltest.Message, error) {
	p, err := parseService(top[hCmdAttrService], cmd == hCmdNewService || cmd == hCmdSetService)
	if err != nil {
		return nil, err
	}
	i, svc := f.find(p)
	switch {
	case cmd == hCmdGetDest:
		if svc == nil {
			return nil, nil // the kernel's dump of a missing service is empty
		}
		var out []gnltest.Message
		for _, d := range svc.dests {
			out = append(out, gnltest.Message{Cmd: hCmdNewDest, Attrs: fnest(nil, hCmdAttrDest, d.encode())})
		}
		return out, nil
	case cmd == hCmdGetService:
		if svc == nil {
			return nil, errno(syscall.ESRCH)
		}
		return []gnltest.Message{{Cmd: hCmdNewService, Attrs: fnest(nil, hCmdAttrService, svc.encode())}}, nil
	case cmd != hCmdNewService && svc == nil:
		// "Unless we're adding a new service, the service must already exist", before any
		// scheduler lookup.
		return nil, errno(syscall.ESRCH)
	}
	switch cmd {
	case hCmdNewService:
		if svc != nil {
			return nil, errno(syscall.EEXIST) // before the scheduler is looked up
		}
		s := &fakeSvc{}
		if err := s.edit(p); err != nil {
			return nil, err
		}
		f.svcs = append(f.svcs, s)
		return nil, nil
	case hCmdSetService:
		return nil, svc.edit(p)
	case hCmdDelService:
		f.svcs = slices.Delete(f.svcs, i, i+1)
		return nil, nil
	case hCmdZero:
		return nil, nil
	}
	return nil, svc.destCmd(cmd, top[hCmdAttrDest])
}

// edit follows ip_vs_add_service and ip_vs_edit_service: the scheduler, then the persistence
// engine (ENOENT for a module it cannot load), then an IPv6 netmask between 1 and 128.
func (s *fakeSvc) edit(p *parsedSvc) error {
	if p.sched != "none" && !slices.Contains(fakeSchedulers, p.sched) {
		return &gnltest.Error{Errno: syscall.ENOENT}
	}
	if p.pe != "" && p.pe != "sip" {
		return &gnltest.Error{Errno: syscall.ENOENT}
	}
	if p.af == hAFInet6 && (p.netmask < 1 || p.netmask > 128) {
		return errno(syscall.EINVAL)
	}
	// The kernel would keep a service that claims "hashed" out of its hash table (and
	// complain in its log); a client must never send it, so the fake refuses it.
	if p.flags&p.flagMask&hFlagHashed != 0 {
		return errno(syscall.EINVAL)
	}
	flags := s.flags&^p.flagMask | p.flags&p.flagMask
	dests := s.dests
	*s = p.fakeSvc
	s.flags, s.dests = flags|hFlagHashed, dests
	if s.fwmark != 0 {
		s.proto, s.addr, s.port = 0, [16]byte{}, 0
	}
	return nil
}

// encode is ip_vs_genl_fill_service.
func (s *fakeSvc) encode() []byte {
	b := fput(nil, hSvcAF, ne16(s.af))
	if s.fwmark != 0 {
		b = fput(b, hSvcFWMark, ne32(s.fwmark))
	} else {
		b = fput(b, hSvcProtocol, ne16(s.proto))
		b = fput(b, hSvcAddr, s.addr[:])
		b = fput(b, hSvcPort, be16(s.port))
	}
	b = fput(b, hSvcSched, cstr(s.sched))
	if s.pe != "" {
		b = fput(b, hSvcPEName, cstr(s.pe))
	}
	b = fput(b, hSvcFlags, append(ne32(s.flags), 0xff, 0xff, 0xff, 0xff))
	b = fput(b, hSvcTimeout, ne32(s.timeout))
	b = fput(b, hSvcNetmask, ne32(s.netmask))
	b = fnest(b, hSvcStats, fstats(5, 100, 0, false))
	return fnest(b, hSvcStats64, fstats(5, 100, 1<<33, true))
}

// parseDest follows ip_vs_genl_parse_dest: address and port always, forwarding, weight and
// thresholds for NEW and SET.
func parseDest(nest []byte, full bool) (fakeDest, error) {
	var d fakeDest
	a, err := fattrs(nest)
	if nest == nil || err != nil || a[hDestAddr] == nil || len(a[hDestPort]) != 2 {
		return d, errno(syscall.EINVAL)
	}
	ok := true
	copy(d.addr[:], a[hDestAddr])
	d.port = binary.BigEndian.Uint16(a[hDestPort])
	if v, has := a[hDestAF]; has {
		d.af = fu16(v, &ok)
	}
	if full {
		if a[hDestFwd] == nil || a[hDestWeight] == nil || a[hDestUThresh] == nil || a[hDestLThresh] == nil {
			return d, errno(syscall.EINVAL)
		}
		d.fwd = fu32(a[hDestFwd], &ok) & 0x7
		d.weight = fu32(a[hDestWeight], &ok)
		d.uthresh = fu32(a[hDestUThresh], &ok)
		d.lthresh = fu32(a[hDestLThresh], &ok)
		if v, has := a[hDestTunType]; has && len(v) == 1 {
			d.tunType = v[0]
		}
		if v, has := a[hDestTunPort]; has && len(v) == 2 {
			d.tunPort = binary.BigEndian.Uint16(v)
		}
		if v, has := a[hDestTunFlags]; has {
			d.tunFlags = fu16(v, &ok)
		}
	}
	if !ok {
		return d, errno(syscall.EINVAL)
	}
	return d, nil
}

// destCmd follows the destination half of ip_vs_genl_set_cmd, then ip_vs_add_dest,
// ip_vs_edit_dest and ip_vs_del_dest.
func (s *fakeSvc) destCmd(cmd uint8, nest []byte) error {
	d, err := parseDest(nest, cmd != hCmdDelDest)
	if err != nil {
		return err
	}
	if d.af == 0 {
		d.af = s.af
	}
	if d.af != hAFInet && d.af != hAFInet6 {
		return errno(syscall.EAFNOSUPPORT)
	}
	if d.af != s.af && cmd != hCmdDelDest && d.fwd != hFwdTunnel {
		return errno(syscall.EINVAL)
	}
	if cmd != hCmdDelDest {
		switch {
		case int32(d.weight) < 0, d.lthresh > d.uthresh:
			return errno(syscall.ERANGE)
		case d.tunType == hTunGUE && d.tunPort == 0:
			return errno(syscall.EINVAL)
		}
	}
	j := slices.IndexFunc(s.dests, func(o fakeDest) bool { return o.af == d.af && o.addr == d.addr && o.port == d.port })
	switch {
	case cmd == hCmdNewDest && j >= 0:
		return errno(syscall.EEXIST)
	case cmd == hCmdNewDest:
		d.active = 3
		s.dests = append(s.dests, d)
	case j < 0:
		return errno(syscall.ENOENT)
	case cmd == hCmdSetDest:
		d.active = s.dests[j].active
		s.dests[j] = d
	case cmd == hCmdDelDest:
		s.dests = slices.Delete(s.dests, j, j+1)
	default:
		return errno(syscall.EOPNOTSUPP)
	}
	return nil
}

// encode is ip_vs_genl_fill_dest.
func (d *fakeDest) encode() []byte {
	b := fput(nil, hDestAddr, d.addr[:])
	b = fput(b, hDestPort, be16(d.port))
	b = fput(b, hDestFwd, ne32(d.fwd))
	b = fput(b, hDestWeight, ne32(d.weight))
	b = fput(b, hDestTunType, []byte{d.tunType})
	b = fput(b, hDestTunPort, be16(d.tunPort))
	b = fput(b, hDestTunFlags, ne16(d.tunFlags))
	b = fput(b, hDestUThresh, ne32(d.uthresh))
	b = fput(b, hDestLThresh, ne32(d.lthresh))
	b = fput(b, hDestActive, ne32(d.active))
	b = fput(b, hDestInact, ne32(d.inactive))
	b = fput(b, hDestPersist, ne32(d.persis))
	b = fput(b, hDestAF, ne16(d.af))
	b = fnest(b, hDestStats, fstats(7, 1<<40, 0, false))
	return fnest(b, hDestStats64, fstats(7, 1<<40, 0, true))
}

// daemon follows ip_vs_genl_new_daemon, ip_vs_genl_del_daemon and the daemon dump.
func (f *fakeIPVS) daemon(cmd uint8, top map[uint16][]byte) ([]gnltest.Message, error) {
	if cmd == hCmdGetDaemon {
		var out []gnltest.Message
		for _, d := range f.daemons {
			out = append(out, gnltest.Message{Cmd: hCmdNewDaemon, Attrs: fnest(nil, hCmdAttrDaemon, d.encode())})
		}
		return out, nil
	}
	a, err := fattrs(top[hCmdAttrDaemon])
	if top[hCmdAttrDaemon] == nil || err != nil || a[hDaemonState] == nil {
		return nil, errno(syscall.EINVAL)
	}
	ok := true
	d := fakeDaemon{state: fu32(a[hDaemonState], &ok)}
	idx := slices.IndexFunc(f.daemons, func(o fakeDaemon) bool { return o.state == d.state })
	if cmd == hCmdDelDaemon {
		if idx < 0 {
			return nil, errno(syscall.ESRCH)
		}
		f.daemons = slices.Delete(f.daemons, idx, idx+1)
		return nil, nil
	}
	if a[hDaemonIfn] == nil || a[hDaemonSyncID] == nil {
		return nil, errno(syscall.EINVAL)
	}
	d.ifn, d.syncID = fstr(a[hDaemonIfn]), fu32(a[hDaemonSyncID], &ok)
	if v, has := a[hDaemonMaxLen]; has {
		d.maxLen = fu16(v, &ok)
	}
	if v, has := a[hDaemonPort]; has {
		d.port = fu16(v, &ok)
	}
	if v, has := a[hDaemonTTL]; has && len(v) == 1 {
		d.ttl = v[0]
	}
	if v, has := a[hDaemonGroup]; has && len(v) == 4 {
		d.group = v
	}
	if v, has := a[hDaemonGroup6]; has && len(v) == 16 {
		d.group = v
	}
	if !ok || d.state != hStateMaster && d.state != hStateBackup {
		return nil, errno(syscall.EINVAL)
	}
	if idx >= 0 {
		return nil, errno(syscall.EEXIST)
	}
	f.daemons = append(f.daemons, d)
	return nil, nil
}

func (d *fakeDaemon) encode() []byte {
	b := fput(nil, hDaemonState, ne32(d.state))
	b = fput(b, hDaemonIfn, cstr(d.ifn))
	b = fput(b, hDaemonSyncID, ne32(d.syncID))
	b = fput(b, hDaemonMaxLen, ne16(d.maxLen))
	b = fput(b, hDaemonPort, ne16(d.port))
	b = fput(b, hDaemonTTL, []byte{d.ttl})
	switch len(d.group) {
	case 4:
		b = fput(b, hDaemonGroup, d.group)
	case 16:
		b = fput(b, hDaemonGroup6, d.group)
	}
	return b
}
