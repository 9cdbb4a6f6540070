package ipvs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// OpKind is the kind of an [Op].
type OpKind uint8

// Operation kinds.
const (
	AddService OpKind = iota + 1
	UpdateService
	DeleteService
	AddDestination
	UpdateDestination
	DeleteDestination
)

var opNames = [...]string{"", "add service", "update service", "delete service",
	"add destination", "update destination", "delete destination"}

func (k OpKind) String() string {
	if int(k) < len(opNames) && k != 0 {
		return opNames[k]
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

func (k OpKind) kind() opKind {
	switch k {
	case AddService:
		return opAddService
	case UpdateService:
		return opUpdateService
	case DeleteService:
		return opDeleteService
	case AddDestination:
		return opAddDest
	case UpdateDestination:
		return opUpdateDest
	case DeleteDestination:
		return opDeleteDest
	}
	return opOther
}

// Op is one change to the table, for [Client.Apply]. Service operations use Service (a
// delete needs only its key fields); destination operations use Destination in Service (which
// needs only its key fields). They are pointers so that a batch of 100,000 operations stays
// small and the destinations of one service share it; Apply does not modify them.
type Op struct {
	Kind        OpKind
	Service     *lvs.Service
	Destination *lvs.Destination
}

func (o *Op) String() string {
	svc, dst := "<nil service>", "<nil destination>"
	if o.Service != nil {
		svc = o.Service.Key().String()
	}
	if o.Destination != nil {
		dst = o.Destination.Key().String()
	}
	switch o.Kind {
	case AddDestination, UpdateDestination, DeleteDestination:
		return fmt.Sprintf("%s %s of %s", o.Kind, dst, svc)
	}
	return fmt.Sprintf("%s %s", o.Kind, svc)
}

// check reports a missing service or destination.
func (o *Op) check() error {
	if o.Service == nil {
		return fmt.Errorf("%w: no service", ErrInvalid)
	}
	switch o.Kind {
	case AddDestination, UpdateDestination, DeleteDestination:
		if o.Destination == nil {
			return fmt.Errorf("%w: no destination", ErrInvalid)
		}
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
	return fmt.Errorf("%w: operation kind %d", ErrInvalid, o.Kind)
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
// results[i] is the outcome of ops[i], classified like the single-operation methods (nil,
// [ErrServiceExists], [ErrDestNotFound], ...); a failed operation does not stop the others.
// An operation that fails validation is not sent. err is non-nil when some operations could
// not be sent or their outcome is unknown (transport error, context, lost error reports);
// their results say which. ops must not change while Apply runs.
//
// Requests are encoded and sent a window at a time (Config.Window, default 4,096) through one
// reused buffer, so memory stays bounded by the window whatever the number of operations.
func (c *Client) Apply(ctx context.Context, ops []Op) (results []error, err error) {
	results = make([]error, len(ops))
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
	order := make([]int32, len(ops)) // ops indices in the order they are sent
	for i, p := range phases {
		order[counts[p]] = int32(i)
		counts[p]++
	}
	chunk := c.cfg.Window
	if chunk <= 0 {
		chunk = defaultWindow
	}
	var (
		enc     encoder
		b       gnl.Batch
		sent    = make([]int32, 0, min(chunk, len(ops))) // batch index → ops index
		sendErr error
		lost    bool
	)
	flush := func() {
		if b.Len() > 0 {
			if err := c.conn.SendBatch(ctx, &b); err != nil && sendErr == nil {
				sendErr = err
			}
			for k, i := range sent {
				r := c.opError(ctx, &ops[i], b.Err(k))
				results[i] = r
				lost = lost || errors.Is(r, gnl.ErrAckLost)
			}
		}
		b.Reset()
		sent = sent[:0]
	}
	for _, i := range order {
		if sendErr != nil {
			results[i] = fmt.Errorf("ipvs: %s: not sent: %w", &ops[i], sendErr)
			continue
		}
		aerr := ops[i].check()
		if aerr == nil {
			aerr = enc.add(&b, &ops[i])
		}
		if aerr != nil {
			results[i] = fmt.Errorf("ipvs: %s: %w", &ops[i], aerr)
			continue
		}
		if sent = append(sent, i); len(sent) == chunk {
			flush()
		}
	}
	flush()
	if sendErr != nil {
		return results, fmt.Errorf("ipvs: apply %d operations: %w", len(ops), sendErr)
	}
	if lost {
		return results, fmt.Errorf("ipvs: apply %d operations: %w", len(ops), gnl.ErrAckLost)
	}
	return results, nil
}
