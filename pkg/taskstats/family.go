package taskstats

import "github.com/kubelvs/kubelvs/pkg/gnl"

// The TASKSTATS family (include/uapi/linux/taskstats.h, cgroupstats.h). The kernel has no YNL
// spec for it: these declarations are the source of truth.
var family = &gnl.Family{Name: "TASKSTATS", Version: 1}

// Commands.
const (
	cmdGet            = 1 // TASKSTATS_CMD_GET
	cmdNew            = 2 // TASKSTATS_CMD_NEW: replies and exit records
	cmdCgroupstatsGet = 4 // CGROUPSTATS_CMD_GET (CGROUPSTATS_CMD_UNSPEC is 3)
	cmdCgroupstatsNew = 5 // CGROUPSTATS_CMD_NEW
)

// getRequest is TASKSTATS_CMD_GET, its attributes TASKSTATS_CMD_ATTR_PID (1), _TGID (2),
// _REGISTER_CPUMASK (3) and _DEREGISTER_CPUMASK (4): exactly one of PID and TGID is set. The cpumask attributes
// (TASKSTATS_CMD_ATTR_[DE]REGISTER_CPUMASK, strings such as "0-3,7") register the sending socket
// as an exit listener.
type getRequest struct {
	PID        uint32 `gnl:"1,omitempty"` // TASKSTATS_CMD_ATTR_PID
	TGID       uint32 `gnl:"2,omitempty"` // TASKSTATS_CMD_ATTR_TGID
	Register   string `gnl:"3,omitempty"` // TASKSTATS_CMD_ATTR_REGISTER_CPUMASK
	Deregister string `gnl:"4,omitempty"` // TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK
}

// aggregate is TASKSTATS_TYPE_AGGR_PID or _AGGR_TGID: the id and the struct.
type aggregate struct {
	PID     uint32      `gnl:"1"` // TASKSTATS_TYPE_PID
	TGID    uint32      `gnl:"2"` // TASKSTATS_TYPE_TGID
	Stats   Stats       `gnl:"3"` // TASKSTATS_TYPE_STATS
	_       gnl.Ignore  `gnl:"6,ignore"`
	Seen    gnl.Present `gnl:",present"`
	Unknown []gnl.Attr  `gnl:",unknown"`
}

// reply is a TASKSTATS_CMD_NEW message: the answer to a GET, or an exit record (an AGGR_PID for
// the task, and an AGGR_TGID as well when it was the last thread of a multi-threaded group).
type reply struct {
	AggrPID  aggregate   `gnl:"4"`
	AggrTGID aggregate   `gnl:"5"`
	_        gnl.Ignore  `gnl:"6,ignore"`
	Seen     gnl.Present `gnl:",present"`
	Unknown  []gnl.Attr  `gnl:",unknown"`
}

var get = gnl.Command[getRequest, reply]{Family: family, Name: "GET", Cmd: cmdGet, Reply: cmdNew}

// pidReply and tgidReply are a GET reply with only the aggregate a PID or a TGID request gets:
// half the size of a reply, for the batches of Client.Process, which decode each reply into a
// value of its own.
type pidReply struct {
	AggrPID aggregate   `gnl:"4"`
	_       gnl.Ignore  `gnl:"6,ignore"`
	Seen    gnl.Present `gnl:",present"`
	Unknown []gnl.Attr  `gnl:",unknown"`
}

type tgidReply struct {
	AggrTGID aggregate   `gnl:"5"`
	_        gnl.Ignore  `gnl:"6,ignore"`
	Seen     gnl.Present `gnl:",present"`
	Unknown  []gnl.Attr  `gnl:",unknown"`
}

var (
	getPID  = gnl.Command[getRequest, pidReply]{Family: family, Name: "GET", Cmd: cmdGet, Reply: cmdNew}
	getTGID = gnl.Command[getRequest, tgidReply]{Family: family, Name: "GET", Cmd: cmdGet, Reply: cmdNew}
)

// exitRecords reads the TASKSTATS_CMD_NEW messages the kernel sends unasked to a registered exit
// listener (Command.Listen); it sends no request of its own.
var exitRecords = gnl.Command[getRequest, reply]{Family: family, Name: "exit records", Cmd: cmdGet, Reply: cmdNew}

// register is GET with a cpumask attribute: the kernel answers with an acknowledgement only.
var register = gnl.Command[getRequest, struct{}]{Family: family, Name: "REGISTER_CPUMASK", Cmd: cmdGet}

// cgroupstatsRequest is CGROUPSTATS_CMD_GET: an open file descriptor of a cgroup v1 directory.
type cgroupstatsRequest struct {
	FD uint32 `gnl:"1"` // CGROUPSTATS_CMD_ATTR_FD
}

type cgroupstatsReply struct {
	Stats CgroupStats `gnl:"1"` // CGROUPSTATS_TYPE_CGROUP_STATS
	_     gnl.Ignore  `gnl:"6,ignore"`
	Seen  gnl.Present `gnl:",present"`
}

var cgroupstatsGet = gnl.Command[cgroupstatsRequest, cgroupstatsReply]{Family: family, Name: "CGROUPSTATS_GET", Cmd: cmdCgroupstatsGet, Reply: cmdCgroupstatsNew}
