package ipvs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Config configures [New]. The zero value (or nil) is usable.
type Config struct {
	// NetNS is a file descriptor of the network namespace whose IPVS table to use (IPVS tables
	// are per namespace); 0 means the calling thread's. [New] opens both of the client's sockets
	// in it; the descriptor is not used afterwards, so the caller may close it.
	NetNS int
	// Timeout bounds each wait for the kernel when the context has no earlier deadline
	// (default 30 s).
	Timeout time.Duration
	// Window is the maximum number of requests [Client.Apply] pipelines per sendmsg (default
	// 4,096). The kernel copies each sendmsg into one buffer and handles its requests under the
	// generic netlink mutex: a larger window costs less per request but holds off the host's
	// other generic netlink users for longer (the README has the measurements).
	Window int
	// DumpConn, when set, is the connection [Client.Table] runs its destination dumps on (tests
	// give a second gnltest one); by default a client made by [New] opens a second socket in
	// NetNS with a page-sized read buffer, and one made by [NewWithConn] uses its connection.
	DumpConn *gnl.Conn
}

// defaultWindow is Config.Window's default.
const defaultWindow = 4096

// Client talks to the kernel's IPVS. Its methods are safe for concurrent use; they are
// serialized on one socket.
type Client struct {
	conn  *gnl.Conn
	owned bool
	cfg   Config

	dconn *gnl.Conn // Table's destination dumps, opened by New (see table.go)
}

// New opens a generic netlink socket (in cfg.NetNS when set) and checks that the kernel has
// IPVS; without it the error matches [ErrNotAvailable].
func New(ctx context.Context, cfg *Config) (*Client, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Window <= 0 {
		c.Window = defaultWindow
	}
	conn, err := gnl.Dial(&gnl.Config{NetNS: c.NetNS, Timeout: c.Timeout, Window: c.Window})
	if err != nil {
		return nil, fmt.Errorf("ipvs: %w", err)
	}
	cl := &Client{conn: conn, owned: true, cfg: c}
	if _, err := conn.Family(ctx, family.Name); err != nil {
		_ = cl.Close()
		return nil, opErr(Open, "", err)
	}
	if c.DumpConn == nil {
		// Now, not on the first Table: later, c.NetNS may be closed or name another namespace.
		if cl.dconn, err = dialDumpConn(&c); err != nil {
			_ = cl.Close()
			return nil, fmt.Errorf("ipvs: dump socket: %w", err)
		}
	}
	return cl, nil
}

// NewWithConn makes a Client on an existing connection (gnltest's in-process kernel, or a
// socket shared with other families). Close does not close conn.
func NewWithConn(conn *gnl.Conn, cfg *Config) *Client {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	cl := &Client{conn: conn, cfg: c}
	return cl
}

// Close closes the socket the client opened.
func (c *Client) Close() error {
	var err error
	if c.dconn != nil {
		err = c.dconn.Close()
	}
	if c.owned {
		err = errors.Join(err, c.conn.Close())
	}
	return err
}

// Conn is the generic netlink connection the client uses.
func (c *Client) Conn() *gnl.Conn { return c.conn }

// Info reports the IPVS version and connection table size.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var rep infoMsg
	if err := getInfo.Do(ctx, c.conn, &empty{}, &rep); err != nil {
		return Info{}, opErr(GetInfo, "", err)
	}
	return Info{Version: rep.Version, ConnTableSize: rep.ConnTabSize}, nil
}

// Services lists every service (without destinations; see [Client.Table]).
func (c *Client) Services(ctx context.Context) ([]Service, error) {
	var out []Service
	for attempt := 0; ; attempt++ {
		out = out[:0]
		err := dumpServicesRaw.Dump(ctx, c.conn, &empty{}, func(m *svcRawMsg) error {
			if m.Service == nil {
				return nil
			}
			s, err := decodeServiceNest(m.Service)
			if err != nil {
				return err
			}
			out = append(out, s)
			return nil
		})
		if errors.Is(err, gnl.ErrDumpInterrupted) && attempt < maxDumpRetries {
			continue
		}
		if err != nil {
			return nil, opErr(ListServices, "", err)
		}
		return out, nil
	}
}

// maxDumpRetries bounds the retries of dumps the kernel flags as interrupted.
const maxDumpRetries = 10

// Service reads one service. A missing service gives [ErrServiceNotFound].
func (c *Client) Service(ctx context.Context, key lvs.ServiceKey) (Service, error) {
	object := key.Canonical().String()
	k, err := wireKey(key)
	if err != nil {
		return Service{}, opErr(GetService, object, err)
	}
	var rep svcRawMsg
	if err := getServiceRaw.Do(ctx, c.conn, &svcKeyMsg{Service: k}, &rep); err != nil {
		return Service{}, opErr(GetService, object, err)
	}
	if rep.Service == nil {
		return Service{}, opErr(GetService, object, fmt.Errorf("%w: reply without a service", gnl.ErrUnexpectedReply))
	}
	s, err := decodeServiceNest(rep.Service)
	return s, opErr(GetService, object, err)
}

// AddService creates a service. An existing one gives [ErrServiceExists], an unknown scheduler
// or persistence engine [ErrSchedulerNotFound].
func (c *Client) AddService(ctx context.Context, s *lvs.Service) error {
	return c.exec(ctx, Op{Kind: AddService, Service: s})
}

// UpdateService changes a service's scheduler, flags, persistence and engine in place.
func (c *Client) UpdateService(ctx context.Context, s *lvs.Service) error {
	return c.exec(ctx, Op{Kind: UpdateService, Service: s})
}

// DeleteService deletes a service and its destinations (s needs only its key).
func (c *Client) DeleteService(ctx context.Context, s *lvs.Service) error {
	return c.exec(ctx, Op{Kind: DeleteService, Service: s})
}

// AddDestination adds a destination to a service (s needs only its key).
func (c *Client) AddDestination(ctx context.Context, s *lvs.Service, d *lvs.Destination) error {
	return c.exec(ctx, Op{Kind: AddDestination, Service: s, Destination: d})
}

// UpdateDestination changes a destination's forwarding method, weight, thresholds and tunnel
// in place (prefer this to delete and add: deleted destinations linger in the kernel).
func (c *Client) UpdateDestination(ctx context.Context, s *lvs.Service, d *lvs.Destination) error {
	return c.exec(ctx, Op{Kind: UpdateDestination, Service: s, Destination: d})
}

// DeleteDestination removes a destination from a service (d needs only its key).
func (c *Client) DeleteDestination(ctx context.Context, s *lvs.Service, d *lvs.Destination) error {
	return c.exec(ctx, Op{Kind: DeleteDestination, Service: s, Destination: d})
}

// exec performs one operation: a batch of one, so that it is encoded exactly as in Apply.
func (c *Client) exec(ctx context.Context, op Op) error {
	err := op.check()
	if err != nil {
		return opErr(op.Kind, op.object(), err)
	}
	var (
		enc encoder
		b   gnl.Batch
	)
	if err = enc.add(&b, &op); err != nil {
		return opErr(op.Kind, op.object(), err)
	}
	if err = c.conn.SendBatch(ctx, &b); err == nil {
		err = b.Err(0)
	}
	return c.opError(ctx, &op, err)
}

// opError makes the error of one sent operation.
//
// ENOENT from SET_SERVICE means a missing scheduler or engine module: the kernel answers ESRCH
// for a missing service before it looks at the scheduler. If the service is gone when the client
// checks, another program deleted it meanwhile, and the error says the service is not found
// (keeping the kernel's errno): re-adding the service is what the caller then has to do.
func (c *Client) opError(ctx context.Context, op *Op, err error) error {
	if err == nil {
		return nil
	}
	e := newOpError(op.Kind, op.object(), err)
	if op.Kind == UpdateService && errors.Is(e.Kind, ErrSchedulerNotFound) {
		if _, gerr := c.Service(ctx, op.Service.ServiceKey); errors.Is(gerr, ErrServiceNotFound) {
			e.Kind = ErrServiceNotFound
		}
	}
	return e
}

// Destinations lists the destinations of a service. A missing service gives
// [ErrServiceNotFound] (the kernel itself answers with an empty list).
func (c *Client) Destinations(ctx context.Context, key lvs.ServiceKey) ([]Destination, error) {
	object := key.Canonical().String()
	k, err := wireKey(key)
	if err != nil {
		return nil, opErr(ListDestinations, object, err)
	}
	var out []Destination
	for attempt := 0; ; attempt++ {
		out = out[:0]
		err = dumpDestsRaw.Dump(ctx, c.conn, &svcKeyMsg{Service: k}, func(m *destRawReply) error {
			if m.Dest == nil {
				return nil
			}
			out = append(out, Destination{})
			return decodeDestNest(m.Dest, lvs.Family(k.AF), &out[len(out)-1])
		})
		if errors.Is(err, gnl.ErrDumpInterrupted) && attempt < maxDumpRetries {
			continue
		}
		break
	}
	if err != nil {
		return nil, opErr(ListDestinations, object, err)
	}
	if len(out) == 0 {
		// The kernel's dump of a missing service is empty: ask for the service.
		if _, err := c.Service(ctx, key); err != nil {
			var oe *OpError
			if errors.As(err, &oe) {
				oe.Op = ListDestinations
			}
			return nil, err
		}
	}
	return out, nil
}

// Flush deletes every service and destination.
func (c *Client) Flush(ctx context.Context) error {
	return opErr(Flush, "", flush.Exec(ctx, c.conn, &empty{}))
}

// Zero zeroes the counters of every service and destination.
func (c *Client) Zero(ctx context.Context) error {
	return opErr(Zero, "", zero.Exec(ctx, c.conn, &svcKeyMsg{}))
}

// ZeroService zeroes the counters of one service and its destinations.
func (c *Client) ZeroService(ctx context.Context, key lvs.ServiceKey) error {
	object := key.Canonical().String()
	k, err := wireKey(key)
	if err != nil {
		return opErr(Zero, object, err)
	}
	return opErr(Zero, object, zero.Exec(ctx, c.conn, &svcKeyMsg{Service: k}))
}

// Timeouts reads the global TCP, TCP FIN and UDP timeouts.
func (c *Client) Timeouts(ctx context.Context) (Timeouts, error) {
	var rep configMsg
	if err := getConfig.Do(ctx, c.conn, &empty{}, &rep); err != nil {
		return Timeouts{}, opErr(GetTimeouts, "", err)
	}
	return Timeouts{TCPSeconds: rep.TCP, TCPFinSeconds: rep.TCPFin, UDPSeconds: rep.UDP}, nil
}

// SetTimeouts sets the global timeouts; zero fields are left unchanged.
func (c *Client) SetTimeouts(ctx context.Context, t Timeouts) error {
	if t == (Timeouts{}) {
		return nil
	}
	m := configMsg{TCP: t.TCPSeconds, TCPFin: t.TCPFinSeconds, UDP: t.UDPSeconds}
	return opErr(SetTimeouts, "", setConfig.Exec(ctx, c.conn, &m))
}

// Daemons lists the running connection-sync daemons.
func (c *Client) Daemons(ctx context.Context) ([]Daemon, error) {
	var out []Daemon
	err := dumpDaemons.Dump(ctx, c.conn, &empty{}, func(m *daemonMsg) error {
		if m.Daemon != nil {
			out = append(out, daemonFrom(m.Daemon))
		}
		return nil
	})
	if err != nil {
		return nil, opErr(ListDaemons, "", err)
	}
	return out, nil
}

// StartDaemon starts a connection-sync daemon. One of that state already running gives
// [ErrDaemonRunning].
func (c *Client) StartDaemon(ctx context.Context, d Daemon) error {
	w, err := d.wire()
	if err != nil {
		return opErr(StartDaemon, d.State.String(), err)
	}
	return opErr(StartDaemon, d.State.String(), newDaemon.Exec(ctx, c.conn, &daemonMsg{Daemon: w}))
}

// StopDaemon stops the sync daemon of that state.
func (c *Client) StopDaemon(ctx context.Context, state DaemonState) error {
	if state != DaemonMaster && state != DaemonBackup {
		return opErr(StopDaemon, state.String(), invalidf("state %d is neither master nor backup", state))
	}
	m := daemonStateMsg{Daemon: &wireDaemonState{State: uint32(state)}}
	return opErr(StopDaemon, state.String(), delDaemon.Exec(ctx, c.conn, &m))
}
