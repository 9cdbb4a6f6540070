// Package gnl is a declarative generic netlink library: a family's attribute sets and commands are
// declared once, as Go structs and typed [Command] values, and gnl encodes requests and decodes
// replies for you, in the spirit of facebook's gnlpy but with explicit attribute numbers, no
// global registry, lenient decoding and strict encoding.
//
// # Declaring a family
//
// An attribute set is a struct whose fields carry `gnl:"N"` tags, N being the attribute number
// (the grammar follows). A family is a [Family] value, and each command a [Command] with its
// request and reply sets:
//
//	var family = &gnl.Family{Name: "TASKSTATS", Version: 1}
//
//	type getRequest struct {
//		PID  uint32 `gnl:"1,omitempty"` // TASKSTATS_CMD_ATTR_PID
//		TGID uint32 `gnl:"2,omitempty"` // TASKSTATS_CMD_ATTR_TGID
//	}
//
//	type aggr struct {
//		PID   uint32    `gnl:"1"`          // TASKSTATS_TYPE_PID
//		Stats RawStats  `gnl:"3"`          // TASKSTATS_TYPE_STATS, a binary struct
//		_     gnl.Ignore `gnl:"6,ignore"`  // TASKSTATS_TYPE_NULL padding
//	}
//
//	type getReply struct {
//		AggrPID *aggr `gnl:"4"` // TASKSTATS_TYPE_AGGR_PID, nested
//	}
//
//	var cmdGet = gnl.Command[getRequest, getReply]{Family: family, Name: "GET", Cmd: 1, Reply: 2}
//
// Then, on a [Conn]:
//
//	c, err := gnl.Dial(nil)
//	var rep getReply
//	err = cmdGet.Do(ctx, c, &getRequest{PID: 1}, &rep)
//
// [Command.Exec] sends an acknowledged request, [Command.Do] a request with one reply,
// [Command.Dump] a dump (NLM_F_DUMP, multipart, with [ErrDumpInterrupted] when the kernel flags
// the dump inconsistent), and [Command.Add] queues a request in a [Batch] that
// [Conn.SendBatch] pipelines, many requests per sendmsg, with one result per request.
//
// # The gnl struct tag
//
// Attribute sets are Go structs whose fields carry a gnl tag:
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
//	RawSet                                     a nested set kept encoded (NLA_F_NESTED set on output)
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
// Options:
//
//	net        network byte order for integers
//	omitempty  do not encode the zero value (without it every field is encoded, except nil
//	           pointers, empty slices and false flags)
//	multi      a slice is attribute N repeated, not an indexed array
//
// Special fields:
//
//	_ Ignore  `gnl:"N,ignore"`    attribute N is padding or deliberately dropped on decode
//	X []Attr  `gnl:",unknown"`    collects attributes the set does not declare, as raw bytes
//	X Present `gnl:",present"`    records which attribute numbers a decode saw
//
// Fields without a gnl tag, or tagged "-", are not part of the set. A declaration that breaks
// these rules is an error the first time the set is used ([Command.Check] reports it early).
//
// # Behaviour
//
// Family ids are looked up by name through nlctrl (itself declared with this package as [Ctrl])
// and cached per connection; a request refused with ENOENT or EINVAL looks its family up again
// and is sent once more when the id changed (the family was registered again, as when ip_vs is
// unloaded and loaded). Every call takes a context and never waits past its deadline or the
// connection's timeout. Replies are matched by sequence number and port id; replies to requests
// that were given up on are discarded, never taken for the next request's. Kernel errors are
// [*Error] values that keep the errno, so errors.Is(err, os.ErrNotExist) and
// errors.Is(err, os.ErrPermission) work, and carry the kernel's extended-ACK message. Decoding is
// lenient (NLA_F_NESTED and NLA_F_NET_BYTEORDER are masked off, unknown attributes are kept as raw
// bytes or skipped, the last attribute may lack padding); malformed input returns an error
// wrapping [ErrMalformed] and never panics. Encoding is strict (NLA_F_NESTED on every nest).
//
// Package gnltest provides an in-process kernel for unit tests of family implementations.
package gnl
