package gnl

import (
	"context"
	"fmt"
	"reflect"
	"unsafe"
)

// Family declares a generic netlink family: the name the kernel registers it under and the
// version of the protocol the declaration speaks. Its commands are declared as [Command] values
// that point to it. A Family holds no state; family ids are resolved per [Conn], because they
// differ between kernels and network namespaces.
type Family struct {
	// Name is the family name, as in `genl ctrl list` ("IPVS", "TASKSTATS", "nlctrl").
	Name string
	// Version is sent in the generic netlink header of every request.
	Version uint8
	// ID, when non-zero, is a fixed family id that needs no lookup (nlctrl is always 0x10).
	ID uint16
}

// Command declares one command of a family: its number, the attribute set of its request (Req)
// and of its reply (Rep), and the command the kernel answers with (TASKSTATS answers GET with NEW,
// IPVS dumps answer with NEW_*). Req and Rep are attribute-set structs (see the package doc);
// use struct{} for an empty set.
type Command[Req, Rep any] struct {
	Family *Family
	// Name is used in errors ("IPVS NEW_SERVICE: file exists").
	Name string
	// Cmd is the command number sent in the request.
	Cmd uint8
	// Reply is the command number replies carry; 0 accepts any.
	Reply uint8
}

// Plans are checked when a command is first used; Check lets a package verify its declarations
// in a test or at start-up.
func (c Command[Req, Rep]) Check() error {
	if c.Family == nil {
		return fmt.Errorf("gnl: command %s: no family", c.Name)
	}
	// A plan's error names its attribute set and says gnl: already.
	if _, err := planFor(reflect.TypeFor[Req]()); err != nil {
		return err
	}
	if _, err := planFor(reflect.TypeFor[Rep]()); err != nil {
		return err
	}
	return nil
}

// Exec sends the request and waits for the kernel's acknowledgement.
func (c Command[Req, Rep]) Exec(ctx context.Context, conn *Conn, req *Req) error {
	return c.run(ctx, conn, req, false, nil)
}

// Do sends the request and decodes the one reply into rep. It asks for no acknowledgement: the
// reply, or the kernel's error, ends the call (one read instead of two). For commands the kernel
// answers with an acknowledgement only, use [Command.Exec].
func (c Command[Req, Rep]) Do(ctx context.Context, conn *Conn, req *Req, rep *Rep) error {
	return c.do(ctx, conn, nil, 0, req, rep)
}

// do is Do, or with an exchange x, Do within that exchange, which holds the connection (a
// family lookup in the middle of another call), on family id id. The closures are built here
// and passed to concrete functions, so that they stay on the stack.
func (c Command[Req, Rep]) do(ctx context.Context, conn *Conn, x *exchange, id uint16, req *Req, rep *Rep) error {
	p, err := planFor(reflect.TypeFor[Rep]())
	if err != nil {
		return err
	}
	preq, err := planFor(reflect.TypeFor[Req]())
	if err != nil {
		return err
	}
	// No NLM_F_ACK: the reply, or the kernel's error, ends the request, one read instead of two.
	// onReply's errors are decoding errors, named after the request by the caller: the closure
	// captures no more than it needs, so that it stays small.
	op := operation{family: c.Family, name: c.Name, cmd: c.Cmd, reply: c.Reply, noAck: true, decodeOnly: true,
		onReply: func(data []byte) error { return decodeSet(data, p, unsafe.Pointer(rep)) }}
	build := func(b []byte) ([]byte, error) { return appendSet(b, preq, unsafe.Pointer(req)) }
	if x != nil {
		return conn.exchangeLocked(x, &op, id, build)
	}
	return conn.roundTrip(ctx, &op, build)
}

// Dump sends the request as a dump (NLM_F_DUMP) and calls fn for each reply, decoded into the
// same *Rep each time: its strings, slices and pointed-to sets are reused by the next reply, so
// copy deeply what you keep (or use DumpAll). A dump the kernel flags as interrupted returns an
// error wrapping [ErrDumpInterrupted] after all replies were delivered. An error from fn stops the
// dump (the rest is read and discarded) and is returned.
func (c Command[Req, Rep]) Dump(ctx context.Context, conn *Conn, req *Req, fn func(*Rep) error) error {
	p, err := planFor(reflect.TypeFor[Rep]())
	if err != nil {
		return err
	}
	var rep Rep
	rv := unsafe.Pointer(&rep)
	return c.run(ctx, conn, req, true, func(data []byte) error {
		if err := decodeSet(data, p, rv); err != nil {
			return c.decodeErr(err)
		}
		return fn(&rep)
	})
}

// DumpAll is Dump collecting every reply, each decoded into a value of its own.
func (c Command[Req, Rep]) DumpAll(ctx context.Context, conn *Conn, req *Req) ([]Rep, error) {
	p, err := planFor(reflect.TypeFor[Rep]())
	if err != nil {
		return nil, err
	}
	var out []Rep
	var zero Rep
	err = c.run(ctx, conn, req, true, func(data []byte) error {
		out = append(out, zero)
		return c.decodeErr(decodeSet(data, p, unsafe.Pointer(&out[len(out)-1])))
	})
	return out, err
}

// Add appends the request to a batch, to be sent with [Conn.SendBatch]; the kernel reports its
// outcome (see [Batch]).
func (c Command[Req, Rep]) Add(b *Batch, req *Req) error {
	p, err := planFor(reflect.TypeFor[Req]())
	if err != nil {
		return err
	}
	return b.add(c.Family, c.Name, c.Cmd, 0, nil, func(buf []byte) ([]byte, error) {
		return appendSet(buf, p, unsafe.Pointer(req))
	})
}

// AddDo appends a request with a reply to a batch: when [Conn.SendBatch] receives the reply it
// decodes it and calls fn, whose error becomes the request's result. Like [Command.Do], no
// acknowledgement is asked for. The *Rep passed to fn is reused by the batch's other replies of
// this request's Add call only (each AddDo has its own).
func (c Command[Req, Rep]) AddDo(b *Batch, req *Req, fn func(*Rep) error) error {
	p, err := planFor(reflect.TypeFor[Req]())
	if err != nil {
		return err
	}
	prep, err := planFor(reflect.TypeFor[Rep]())
	if err != nil {
		return err
	}
	var rep Rep
	onReply := func(attrs []byte) error {
		if err := decodeSet(attrs, prep, unsafe.Pointer(&rep)); err != nil {
			return requestError(c.Family.Name, c.Name, fmt.Errorf("decode reply: %w", err))
		}
		return fn(&rep)
	}
	return b.add(c.Family, c.Name, c.Cmd, c.Reply, onReply, func(buf []byte) ([]byte, error) {
		return appendSet(buf, p, unsafe.Pointer(req))
	})
}

// decodeErr names the command in an error decoding its reply.
func (c Command[Req, Rep]) decodeErr(err error) error {
	if err == nil {
		return nil
	}
	return requestError(c.Family.Name, c.Name, fmt.Errorf("decode reply: %w", err))
}

func (c Command[Req, Rep]) run(ctx context.Context, conn *Conn, req *Req, dump bool, fn func([]byte) error) error {
	p, err := planFor(reflect.TypeFor[Req]())
	if err != nil {
		return err
	}
	op := operation{family: c.Family, name: c.Name, cmd: c.Cmd, reply: c.Reply, dump: dump, onReply: fn}
	return conn.roundTrip(ctx, &op, func(b []byte) ([]byte, error) {
		return appendSet(b, p, unsafe.Pointer(req))
	})
}
