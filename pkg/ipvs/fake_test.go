package ipvs

import (
	"encoding/binary"
	"slices"
	"sync"
	"syscall"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

// fakeIPVS is an IPVS family for gnltest that follows ip_vs_ctl.c's rules and errnos: ESRCH for
// a missing service, ENOENT for a missing destination or scheduler/engine module, EEXIST for
// duplicates, EINVAL/ERANGE for bad values, an empty destination dump for a missing service,
// "hashed" set on every service.
type fakeIPVS struct {
	mu       sync.Mutex
	svcs     []*fakeSvc
	timeouts configMsg
	daemons  []wireDaemon
	reqs     []gnltest.Request // every request, for encoding checks
	// intrDumps makes the next n service dumps come back flagged NLM_F_DUMP_INTR.
	intrDumps int
}

type fakeSvc struct {
	w     wireService
	dests []wireDest
}

var fakeSchedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

func newFake() (*fakeIPVS, *gnltest.Kernel) {
	f := &fakeIPVS{timeouts: configMsg{TCP: 900, TCPFin: 120, UDP: 300}}
	k := &gnltest.Kernel{DatagramsPerRead: 4} // several datagrams per read, as from the real socket
	k.Register(&gnltest.Family{Name: "IPVS", Version: 1, MaxAttr: 6, Handle: f.handle})
	return f, k
}

func sameKey(a *wireService, k *wireServiceKey) bool {
	if a.AF != k.AF {
		return false
	}
	if k.FWMark != 0 || a.FWMark != 0 {
		return a.FWMark == k.FWMark
	}
	return a.Protocol == k.Protocol && a.Addr == k.Addr && a.Port == k.Port
}

func (f *fakeIPVS) find(k *wireServiceKey) (int, *fakeSvc) {
	for i, s := range f.svcs {
		if sameKey(&s.w, k) {
			return i, s
		}
	}
	return -1, nil
}

func findDest(s *fakeSvc, addr [16]byte, port uint16) int {
	for i := range s.dests {
		if s.dests[i].Addr == addr && s.dests[i].Port == port {
			return i
		}
	}
	return -1
}

func errno(e syscall.Errno) error { return &gnltest.Error{Errno: e} }

func (f *fakeIPVS) handle(req gnltest.Request) ([]gnltest.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	switch req.Cmd {
	case cmdGetInfo:
		m, err := gnltest.Reply(cmdSetInfo, &infoMsg{Version: 0x010201, ConnTabSize: 4096})
		return []gnltest.Message{m}, err
	case cmdGetConfig:
		m, err := gnltest.Reply(cmdSetConfig, &f.timeouts)
		return []gnltest.Message{m}, err
	case cmdSetConfig:
		var c configMsg
		if err := gnl.Unmarshal(req.Attrs, &c); err != nil {
			return nil, errno(syscall.EINVAL)
		}
		if c.TCP != 0 {
			f.timeouts.TCP = c.TCP
		}
		if c.TCPFin != 0 {
			f.timeouts.TCPFin = c.TCPFin
		}
		if c.UDP != 0 {
			f.timeouts.UDP = c.UDP
		}
		return nil, nil
	case cmdFlush:
		f.svcs = nil
		return nil, nil
	case cmdNewDaemon, cmdDelDaemon, cmdGetDaemon:
		return f.daemon(req)
	case cmdGetService:
		if req.Dump() {
			var out []gnltest.Message
			for _, s := range f.svcs {
				m, err := gnltest.Reply(cmdNewService, &svcMsg{Service: withStats(s.w)})
				if err != nil {
					return nil, err
				}
				if f.intrDumps > 0 {
					m.Flags |= 0x10
				}
				out = append(out, m)
			}
			if f.intrDumps > 0 {
				f.intrDumps--
			}
			return out, nil
		}
	}
	var m struct {
		Service *wireService `gnl:"1"`
		Dest    *wireDest    `gnl:"2"`
	}
	if err := gnl.Unmarshal(req.Attrs, &m); err != nil {
		return nil, errno(syscall.EINVAL)
	}
	if req.Cmd == cmdZero && m.Service == nil {
		for _, s := range f.svcs {
			s.w.Stats64 = nil
		}
		return nil, nil
	}
	if m.Service == nil || m.Service.AF != uint16(IPv4) && m.Service.AF != uint16(IPv6) {
		return nil, errno(syscall.EINVAL)
	}
	k := &wireServiceKey{AF: m.Service.AF, Protocol: m.Service.Protocol, Addr: m.Service.Addr, Port: m.Service.Port, FWMark: m.Service.FWMark}
	i, svc := f.find(k)
	if req.Cmd == cmdGetDest {
		if svc == nil {
			return nil, nil // the kernel's dump of a missing service is empty
		}
		var out []gnltest.Message
		for _, d := range svc.dests {
			d.ActiveConns, d.Stats64 = 3, &wireStats{Conns: 7, InBytes: 1 << 40}
			r, err := gnltest.Reply(cmdNewDest, &destReply{Dest: &d})
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	}
	if req.Cmd != cmdNewService && svc == nil {
		return nil, errno(syscall.ESRCH)
	}
	switch req.Cmd {
	case cmdGetService:
		r, err := gnltest.Reply(cmdNewService, &svcMsg{Service: withStats(svc.w)})
		return []gnltest.Message{r}, err
	case cmdNewService, cmdSetService:
		w := *m.Service
		if !slices.Contains(fakeSchedulers, w.SchedName) || (w.PEName != "" && w.PEName != "sip") {
			return nil, &gnltest.Error{Errno: syscall.ENOENT, Message: "Scheduler module not found"}
		}
		if w.AF == uint16(IPv6) {
			if n := binary.NativeEndian.Uint32(w.Netmask[:]); n < 1 || n > 128 {
				return nil, errno(syscall.EINVAL)
			}
		}
		if w.Flags.Flags&uint32(FlagHashed) != 0 {
			return nil, errno(syscall.EINVAL) // the real kernel would corrupt its hash table
		}
		w.Flags = wireFlags{Flags: w.Flags.Flags&w.Flags.Mask | uint32(FlagHashed), Mask: ^uint32(0)}
		w.Stats, w.Stats64, w.Unknown = nil, nil, nil
		if w.FWMark != 0 {
			w.Protocol, w.Addr, w.Port = 0, [16]byte{}, 0
		}
		if req.Cmd == cmdNewService {
			if svc != nil {
				return nil, errno(syscall.EEXIST)
			}
			f.svcs = append(f.svcs, &fakeSvc{w: w})
		} else {
			svc.w = w
		}
		return nil, nil
	case cmdDelService:
		f.svcs = slices.Delete(f.svcs, i, i+1)
		return nil, nil
	case cmdZero:
		return nil, nil
	}
	if m.Dest == nil {
		return nil, errno(syscall.EINVAL)
	}
	d := *m.Dest
	if d.AddrFamily == 0 {
		d.AddrFamily = svc.w.AF
	}
	j := findDest(svc, d.Addr, d.Port)
	if req.Cmd != cmdDelDest {
		if d.AddrFamily != svc.w.AF && d.FwdMethod != uint32(Tunnel) {
			return nil, errno(syscall.EINVAL)
		}
		if d.Weight < 0 {
			return nil, errno(syscall.EINVAL)
		}
		if d.UThresh != 0 && d.LThresh > d.UThresh {
			return nil, errno(syscall.ERANGE)
		}
	}
	switch req.Cmd {
	case cmdNewDest:
		if j >= 0 {
			return nil, errno(syscall.EEXIST)
		}
		svc.dests = append(svc.dests, d)
	case cmdSetDest:
		if j < 0 {
			return nil, errno(syscall.ENOENT)
		}
		svc.dests[j] = d
	case cmdDelDest:
		if j < 0 {
			return nil, errno(syscall.ENOENT)
		}
		svc.dests = slices.Delete(svc.dests, j, j+1)
	default:
		return nil, errno(syscall.EOPNOTSUPP)
	}
	return nil, nil
}

func withStats(w wireService) *wireService {
	w.Stats = &wireStats32{Conns: 5, InBytes: 100}
	w.Stats64 = &wireStats{Conns: 5, InBytes: 100, OutBytes: 1 << 33}
	return &w
}

func (f *fakeIPVS) daemon(req gnltest.Request) ([]gnltest.Message, error) {
	if req.Cmd == cmdGetDaemon {
		var out []gnltest.Message
		for i := range f.daemons {
			m, err := gnltest.Reply(cmdNewDaemon, &daemonMsg{Daemon: &f.daemons[i]})
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	}
	var m daemonMsg
	if err := gnl.Unmarshal(req.Attrs, &m); err != nil || m.Daemon == nil {
		return nil, errno(syscall.EINVAL)
	}
	idx := slices.IndexFunc(f.daemons, func(d wireDaemon) bool { return d.State == m.Daemon.State })
	if req.Cmd == cmdNewDaemon {
		if idx >= 0 {
			return nil, errno(syscall.EEXIST)
		}
		f.daemons = append(f.daemons, *m.Daemon)
		return nil, nil
	}
	if idx < 0 {
		return nil, errno(syscall.ESRCH)
	}
	f.daemons = slices.Delete(f.daemons, idx, idx+1)
	return nil, nil
}
