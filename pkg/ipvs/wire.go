package ipvs

import (
	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// The IPVS generic netlink family (linux/ip_vs.h). These declarations are the source of truth:
// the kernel has no YNL spec for IPVS.
var family = &gnl.Family{Name: "IPVS", Version: 1}

// Commands (IPVS_CMD_*).
const (
	cmdNewService = 1
	cmdSetService = 2
	cmdDelService = 3
	cmdGetService = 4
	cmdNewDest    = 5
	cmdSetDest    = 6
	cmdDelDest    = 7
	cmdGetDest    = 8
	cmdNewDaemon  = 9
	cmdDelDaemon  = 10
	cmdGetDaemon  = 11
	cmdSetConfig  = 12
	cmdGetConfig  = 13
	cmdSetInfo    = 14
	cmdGetInfo    = 15
	cmdZero       = 16
	cmdFlush      = 17
)

// wireServiceKey is the part of IPVS_CMD_ATTR_SERVICE that identifies a service. With a firewall
// mark the kernel ignores protocol, address and port; without one it needs all three (a port of
// 0 included), so those are always sent.
type wireServiceKey struct {
	AF       uint16   `gnl:"1"`
	Protocol uint16   `gnl:"2"`
	Addr     [16]byte `gnl:"3"` // union nf_inet_addr
	Port     uint16   `gnl:"4,net"`
	FWMark   uint32   `gnl:"5,omitempty"`
}

// wireService is the IPVS_CMD_ATTR_SERVICE set (IPVS_SVC_ATTR_*) of NEW_SERVICE and
// SET_SERVICE. Replies are decoded by hand (decode.go).
type wireService struct {
	AF        uint16   `gnl:"1"`
	Protocol  uint16   `gnl:"2,omitempty"` // zero for a firewall-mark service
	Addr      [16]byte `gnl:"3"`
	Port      uint16   `gnl:"4,net"`
	FWMark    uint32   `gnl:"5,omitempty"`
	SchedName string   `gnl:"6"`
	Flags     [8]byte  `gnl:"7"` // struct ip_vs_flags: flags, then the mask of those to set
	Timeout   uint32   `gnl:"8"`
	Netmask   [4]byte  `gnl:"9"` // __be32 mask for IPv4, host-order prefix length for IPv6
	PEName    string   `gnl:"11,omitempty"`
}

// wireDestReq is what IPVS_CMD_NEW_DEST and IPVS_CMD_SET_DEST carry: the writable attributes of
// a destination only (the kernel ignores counters in requests), so that encoding 100,000 of them
// visits no fields it would skip.
type wireDestReq struct {
	Addr       [16]byte `gnl:"1"`
	Port       uint16   `gnl:"2,net"`
	FwdMethod  uint32   `gnl:"3"`
	Weight     int32    `gnl:"4"`
	UThresh    uint32   `gnl:"5"`
	LThresh    uint32   `gnl:"6"`
	AddrFamily uint16   `gnl:"11,omitempty"`
	TunType    uint8    `gnl:"13,omitempty"`
	TunPort    uint16   `gnl:"14,net,omitempty"`
	TunFlags   uint16   `gnl:"15,omitempty"`
}

// wireDestKey identifies a destination in a service (IPVS_CMD_DEL_DEST needs no more).
type wireDestKey struct {
	Addr       [16]byte `gnl:"1"`
	Port       uint16   `gnl:"2,net"`
	AddrFamily uint16   `gnl:"11,omitempty"`
}

// wireDaemon is IPVS_CMD_ATTR_DAEMON (IPVS_DAEMON_ATTR_*).
type wireDaemon struct {
	State       uint32     `gnl:"1"`
	McastIfn    string     `gnl:"2,omitempty"`
	SyncID      uint32     `gnl:"3"`
	SyncMaxLen  uint16     `gnl:"4,omitempty"`
	McastGroup  [4]byte    `gnl:"5,omitempty"`
	McastGroup6 [16]byte   `gnl:"6,omitempty"`
	McastPort   uint16     `gnl:"7,omitempty"`
	McastTTL    uint8      `gnl:"8,omitempty"`
	Unknown     []gnl.Attr `gnl:",unknown"`
}

// Request and reply sets (IPVS_CMD_ATTR_*).
type (
	svcKeyMsg struct {
		Service *wireServiceKey `gnl:"1"`
	}
	svcMsg struct {
		Service *wireService `gnl:"1"`
	}
	// The destination requests carry their service's key encoded (a wireServiceKey), once for
	// all the destinations of a service.
	destMsg struct {
		Service gnl.RawSet   `gnl:"1"`
		Dest    *wireDestReq `gnl:"2"`
	}
	destKeyMsg struct {
		Service gnl.RawSet   `gnl:"1"`
		Dest    *wireDestKey `gnl:"2"`
	}
	// svcRawMsg keeps the service nest undecoded, for the hand-written decoder (decode.go).
	svcRawMsg struct {
		Service []byte `gnl:"1"`
	}
	// destRawReply keeps the destination nest undecoded, for the hand-written decoder (decode.go).
	destRawReply struct {
		Dest []byte `gnl:"2"`
	}
	daemonMsg struct {
		Daemon *wireDaemon `gnl:"3"`
	}
	daemonStateMsg struct {
		Daemon *wireDaemonState `gnl:"3"`
	}
	configMsg struct {
		TCP    uint32 `gnl:"4,omitempty"`
		TCPFin uint32 `gnl:"5,omitempty"`
		UDP    uint32 `gnl:"6,omitempty"`
	}
	infoMsg struct {
		Version     uint32 `gnl:"1"`
		ConnTabSize uint32 `gnl:"2"`
	}
	empty struct{}
)

// wireDaemonState is the daemon set of IPVS_CMD_DEL_DAEMON, which needs only the state.
type wireDaemonState struct {
	State uint32 `gnl:"1"`
}

// The commands. Dumps answer with the NEW_* command; GET_INFO and GET_CONFIG with SET_*.
var (
	newService = gnl.Command[svcMsg, empty]{Family: family, Name: "NEW_SERVICE", Cmd: cmdNewService}
	setService = gnl.Command[svcMsg, empty]{Family: family, Name: "SET_SERVICE", Cmd: cmdSetService}
	delService = gnl.Command[svcKeyMsg, empty]{Family: family, Name: "DEL_SERVICE", Cmd: cmdDelService}
	// The service and destination replies keep their nests undecoded for decode.go.
	getServiceRaw   = gnl.Command[svcKeyMsg, svcRawMsg]{Family: family, Name: "GET_SERVICE", Cmd: cmdGetService, Reply: cmdNewService}
	dumpServicesRaw = gnl.Command[empty, svcRawMsg]{Family: family, Name: "GET_SERVICE", Cmd: cmdGetService, Reply: cmdNewService}
	newDest         = gnl.Command[destMsg, empty]{Family: family, Name: "NEW_DEST", Cmd: cmdNewDest}
	setDest         = gnl.Command[destMsg, empty]{Family: family, Name: "SET_DEST", Cmd: cmdSetDest}
	delDest         = gnl.Command[destKeyMsg, empty]{Family: family, Name: "DEL_DEST", Cmd: cmdDelDest}
	dumpDestsRaw    = gnl.Command[svcKeyMsg, destRawReply]{Family: family, Name: "GET_DEST", Cmd: cmdGetDest, Reply: cmdNewDest}
	newDaemon       = gnl.Command[daemonMsg, empty]{Family: family, Name: "NEW_DAEMON", Cmd: cmdNewDaemon}
	delDaemon       = gnl.Command[daemonStateMsg, empty]{Family: family, Name: "DEL_DAEMON", Cmd: cmdDelDaemon}
	dumpDaemons     = gnl.Command[empty, daemonMsg]{Family: family, Name: "GET_DAEMON", Cmd: cmdGetDaemon, Reply: cmdNewDaemon}
	setConfig       = gnl.Command[configMsg, empty]{Family: family, Name: "SET_CONFIG", Cmd: cmdSetConfig}
	getConfig       = gnl.Command[empty, configMsg]{Family: family, Name: "GET_CONFIG", Cmd: cmdGetConfig, Reply: cmdSetConfig}
	getInfo         = gnl.Command[empty, infoMsg]{Family: family, Name: "GET_INFO", Cmd: cmdGetInfo, Reply: cmdSetInfo}
	zero            = gnl.Command[svcKeyMsg, empty]{Family: family, Name: "ZERO", Cmd: cmdZero}
	flush           = gnl.Command[empty, empty]{Family: family, Name: "FLUSH", Cmd: cmdFlush}
)

// checks lists every command for the declaration test.
var checks = []interface{ Check() error }{
	newService, setService, delService, getServiceRaw, dumpServicesRaw, newDest, setDest, delDest,
	dumpDestsRaw, newDaemon, delDaemon, dumpDaemons, setConfig, getConfig, getInfo, zero, flush,
}
