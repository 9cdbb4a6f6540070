package ipvs

import (
	"context"
	"errors"
	"fmt"

	"github.com/kubelvs/kubelvs/pkg/gnl"
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
	Service     *Service
	Destination *Destination
}

func (o *Op) String() string {
	svc, dst := "<nil service>", "<nil destination>"
	if o.Service != nil {
		svc = o.Service.String()
	}
	if o.Destination != nil {
		dst = o.Destination.String()
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

func (o *Op) destMsg() (destMsg, error) {
	k, err := o.Service.wireKey()
	if err != nil {
		return destMsg{}, err
	}
	d, err := o.Destination.wire(Family(k.AF))
	if err != nil {
		return destMsg{}, err
	}
	return destMsg{Service: k, Dest: &d}, nil
}

func (o *Op) destKeyMsg() (destKeyMsg, error) {
	k, err := o.Service.wireKey()
	if err != nil {
		return destKeyMsg{}, err
	}
	d, err := o.Destination.wireKey(Family(k.AF))
	if err != nil {
		return destKeyMsg{}, err
	}
	return destKeyMsg{Service: k, Dest: d}, nil
}

// add queues the operation's request in a batch.
func (o *Op) add(b *gnl.Batch) error {
	switch o.Kind {
	case AddService, UpdateService:
		w, err := o.Service.wire()
		if err != nil {
			return err
		}
		if o.Kind == AddService {
			return newService.Add(b, &svcMsg{Service: w})
		}
		return setService.Add(b, &svcMsg{Service: w})
	case DeleteService:
		k, err := o.Service.wireKey()
		if err != nil {
			return err
		}
		return delService.Add(b, &svcKeyMsg{Service: k})
	case AddDestination, UpdateDestination:
		m, err := o.destMsg()
		if err != nil {
			return err
		}
		if o.Kind == AddDestination {
			return newDest.Add(b, &m)
		}
		return setDest.Add(b, &m)
	case DeleteDestination:
		m, err := o.destKeyMsg()
		if err != nil {
			return err
		}
		return delDest.Add(b, &m)
	}
	return fmt.Errorf("%w: operation kind %d", ErrInvalid, o.Kind)
}

// phase orders a batch: services are created and updated before destinations are touched, and
// deleted last, except that a service deleted and added in the same batch is deleted first.
func phase(o *Op, readded map[ServiceKey]bool) int {
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
// not be sent or their outcome is unknown (transport error, context, lost acknowledgements);
// their results say which.
func (c *Client) Apply(ctx context.Context, ops []Op) (results []error, err error) {
	results = make([]error, len(ops))
	var readded map[ServiceKey]bool
	for i := range ops {
		if ops[i].Kind == AddService && ops[i].Service != nil {
			if readded == nil {
				readded = map[ServiceKey]bool{}
			}
			readded[ops[i].Service.Key()] = true
		}
	}
	var buckets [4][]int32
	for i := range ops {
		p := phase(&ops[i], readded)
		buckets[p] = append(buckets[p], int32(i))
	}
	order := make([]int32, 0, len(ops)) // batch index → ops index
	var b gnl.Batch
	for _, bucket := range buckets {
		for _, i := range bucket {
			aerr := ops[i].check()
			if aerr == nil {
				aerr = ops[i].add(&b)
			}
			if aerr != nil {
				results[i] = fmt.Errorf("ipvs: %s: %w", &ops[i], aerr)
				continue
			}
			order = append(order, i)
		}
	}
	sendErr := c.conn.SendBatch(ctx, &b)
	for k, i := range order {
		results[i] = c.opError(ctx, &ops[i], b.Err(k))
	}
	if sendErr != nil {
		return results, fmt.Errorf("ipvs: apply %d operations: %w", len(ops), sendErr)
	}
	for _, r := range results {
		if errors.Is(r, gnl.ErrAckLost) {
			return results, fmt.Errorf("ipvs: apply %d operations: %w", len(ops), gnl.ErrAckLost)
		}
	}
	return results, nil
}
