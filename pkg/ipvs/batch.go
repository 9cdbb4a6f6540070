package ipvs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// OpKind names an operation: the six changes an [Op] makes, and the client's other requests,
// which name failed operations in [OpError] only.
type OpKind uint8

// Operation kinds. Only the first six are valid in an [Op].
const (
	AddService OpKind = iota + 1
	UpdateService
	DeleteService
	AddDestination
	UpdateDestination
	DeleteDestination

	GetService
	ListServices
	ListDestinations
	GetInfo
	GetTimeouts
	SetTimeouts
	ListDaemons
	StartDaemon
	StopDaemon
	Flush
	Zero
	Open
)

var opNames = [...]string{"", "add service", "update service", "delete service",
	"add destination", "update destination", "delete destination",
	"get service", "list services", "list destinations of", "get info", "get timeouts", "set timeouts",
	"list sync daemons", "start sync daemon", "stop sync daemon", "flush", "zero", "open"}

func (k OpKind) String() string {
	if int(k) < len(opNames) && k != 0 {
		return opNames[k]
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// isChange reports whether the kind is one an Op can carry.
func (k OpKind) isChange() bool { return k >= AddService && k <= DeleteDestination }

// isDest reports whether the kind is a destination change.
func (k OpKind) isDest() bool { return k >= AddDestination && k <= DeleteDestination }

// Op is one change to the table, for [Client.Apply]. Service operations use Service (a
// delete needs only its key fields); destination operations use Destination in Service (which
// needs only its key fields). They are pointers so that a batch of 100,000 operations stays
// small and the destinations of one service share it; Apply does not modify them.
type Op struct {
	Kind        OpKind
	Service     *lvs.Service
	Destination *lvs.Destination
}

func (o *Op) String() string { return o.Kind.String() + " " + o.object() }

// object names what the operation changes, for messages.
func (o *Op) object() string {
	svc := "<nil service>"
	if o.Service != nil {
		svc = o.Service.Key().String()
	}
	if !o.Kind.isDest() {
		return svc
	}
	dst := "<nil destination>"
	if o.Destination != nil {
		dst = o.Destination.Key().String()
	}
	return dst + " of " + svc
}

// check reports a missing service or destination, or a kind that is not a change.
func (o *Op) check() error {
	switch {
	case !o.Kind.isChange():
		return invalidf("operation kind %s is not a change", o.Kind)
	case o.Service == nil:
		return invalidf("no service")
	case o.Kind.isDest() && o.Destination == nil:
		return invalidf("no destination")
	}
	return nil
}

// encoder encodes operations into a batch, reusing its messages from one operation to the
// next, and the key of the last service, encoded once: the destinations of a service usually
// follow one another and share its *Service. Encoding 110,000 operations then allocates nothing
// per destination, and a destination's request costs the encoding of its own attributes only.
type encoder struct {
	svc    *lvs.Service
	key    *wireServiceKey
	keyRaw gnl.RawSet // key, encoded
	keyErr error
	dest   wireDestReq
	dkey   wireDestKey
	dm     destMsg
	dkm    destKeyMsg
}

func (e *encoder) serviceKey(s *lvs.Service) (*wireServiceKey, error) {
	if s != e.svc {
		e.svc = s
		e.key, e.keyErr = wireKey(s.ServiceKey)
		if e.keyErr == nil {
			e.keyRaw, e.keyErr = gnl.AppendMarshal(e.keyRaw[:0], e.key)
		}
	}
	return e.key, e.keyErr
}

// add queues the operation's request in a batch.
func (e *encoder) add(b *gnl.Batch, o *Op) error {
	switch o.Kind {
	case AddService, UpdateService:
		w, err := wireSvc(o.Service)
		if err != nil {
			return err
		}
		if o.Kind == AddService {
			return newService.Add(b, &svcMsg{Service: w})
		}
		return setService.Add(b, &svcMsg{Service: w})
	case DeleteService:
		k, err := e.serviceKey(o.Service)
		if err != nil {
			return err
		}
		return delService.Add(b, &svcKeyMsg{Service: k})
	case AddDestination, UpdateDestination:
		k, err := e.serviceKey(o.Service)
		if err != nil {
			return err
		}
		if e.dest, err = destWire(o.Destination, lvs.Family(k.AF)); err != nil {
			return err
		}
		e.dm = destMsg{Service: e.keyRaw, Dest: &e.dest}
		if o.Kind == AddDestination {
			return newDest.Add(b, &e.dm)
		}
		return setDest.Add(b, &e.dm)
	case DeleteDestination:
		k, err := e.serviceKey(o.Service)
		if err != nil {
			return err
		}
		if e.dkey, err = destWireKey(o.Destination, lvs.Family(k.AF)); err != nil {
			return err
		}
		e.dkm = destKeyMsg{Service: e.keyRaw, Dest: &e.dkey}
		return delDest.Add(b, &e.dkm)
	}
	return invalidf("operation kind %d", o.Kind)
}

// phase orders a batch: services are created and updated before destinations are touched, and
// deleted last, except that a service deleted and added in the same batch is deleted first.
func phase(o *Op, readded map[lvs.ServiceKey]bool) int {
	switch o.Kind {
	case DeleteService:
		if o.Service != nil && readded[o.Service.Key()] {
			return 0
		}
		return 3
	case AddService, UpdateService:
		return 1
	}
	return 2
}

// Apply performs many operations pipelined: a few sendmsg calls carry all the requests and the
// kernel handles them in order. Operations run in a valid order whatever their order in ops:
// service adds and updates first, then destination operations (in the order given), then
// service deletes (a service deleted and re-added in the same call is deleted first).
//
// results[i] is the outcome of ops[i]: nil only when the kernel accepted it, else an
// [*OpError] classified like the single-operation methods' ([ErrServiceExists],
// [ErrDestNotFound], ...); a failed operation does not stop the others. An operation that fails
// validation is not sent. err is non-nil when some operations could not be sent
// ([ErrNotSent]) or their outcome is unknown (transport error, context, lost error reports);
// their results say which. ops must not change while Apply runs.
//
// Requests are encoded and sent a window at a time (Config.Window, default 4,096) through one
// reused buffer, so memory stays bounded by the window whatever the number of operations.
func (c *Client) Apply(ctx context.Context, ops []Op) (results []error, err error) {
	a := applier{c: c, ctx: ctx, ops: ops, results: make([]error, len(ops)), window: c.cfg.Window}
	if a.window <= 0 {
		a.window = defaultWindow
	}
	a.sent = make([]int32, 0, min(a.window, len(ops)))
	for _, i := range sendOrder(ops) {
		a.add(i)
	}
	a.flush()
	if a.sendErr != nil {
		return a.results, fmt.Errorf("ipvs: apply %d operations: %w", len(ops), a.sendErr)
	}
	if a.lost {
		return a.results, fmt.Errorf("ipvs: apply %d operations: %w", len(ops), gnl.ErrAckLost)
	}
	return a.results, nil
}

// sendOrder returns the indices of ops in the order Apply sends them (see phase), stable within
// each phase.
func sendOrder(ops []Op) []int32 {
	// The services both deleted and added (only worth finding when something is deleted).
	var readded map[lvs.ServiceKey]bool
	if slices.ContainsFunc(ops, func(o Op) bool { return o.Kind == DeleteService }) {
		readded = map[lvs.ServiceKey]bool{}
		for i := range ops {
			if ops[i].Kind == AddService && ops[i].Service != nil {
				readded[ops[i].Service.Key()] = true
			}
		}
	}
	var counts [5]int32
	phases := make([]uint8, len(ops))
	for i := range ops {
		p := phase(&ops[i], readded)
		phases[i] = uint8(p)
		counts[p+1]++
	}
	for p := 1; p < len(counts); p++ {
		counts[p] += counts[p-1]
	}
	order := make([]int32, len(ops))
	for i, p := range phases {
		order[counts[p]] = int32(i)
		counts[p]++
	}
	return order
}

// applier is the state of one Apply: the window being filled and what went wrong so far.
type applier struct {
	c       *Client
	ctx     context.Context
	ops     []Op
	results []error
	window  int

	enc     encoder
	b       gnl.Batch
	sent    []int32 // batch index → ops index
	sendErr error   // set once a window could not be sent: the rest is not sent either
	lost    bool
}

// add validates and encodes ops[i] into the window, sending the window when full.
func (a *applier) add(i int32) {
	op := &a.ops[i]
	if a.sendErr != nil {
		a.results[i] = notSent(op.Kind, op.object(), a.sendErr)
		return
	}
	err := op.check()
	if err == nil {
		err = a.enc.add(&a.b, op)
	}
	if err != nil {
		a.results[i] = opErr(op.Kind, op.object(), err)
		return
	}
	if a.sent = append(a.sent, i); len(a.sent) == a.window {
		a.flush()
	}
}

// flush sends the window and records each operation's result. A batch that failed before
// anything was sent (no IPVS family, the context, a closed connection) leaves gnl's results
// empty: its operations are reported not sent, never as accepted.
func (a *applier) flush() {
	if a.b.Len() > 0 {
		err := a.c.conn.SendBatch(a.ctx, &a.b)
		if err != nil && a.sendErr == nil {
			a.sendErr = err
		}
		for k, i := range a.sent {
			op := &a.ops[i]
			if err != nil && a.b.Sends() == 0 {
				a.results[i] = notSent(op.Kind, op.object(), err)
				continue
			}
			r := a.c.opError(a.ctx, op, a.b.Err(k))
			a.results[i] = r
			a.lost = a.lost || errors.Is(r, gnl.ErrAckLost)
		}
	}
	a.b.Reset()
	a.sent = a.sent[:0]
}
