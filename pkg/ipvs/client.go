package ipvs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
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
	// generic netlink mutex: a larger window costs less per request (110,000 writes took 2.5 s
	// of the VM's CPU with windows of 1,024 and 2.2 s with 4,096) but holds off other generic
	// netlink users for longer (4,096 IPVS writes: about 70 ms under emulation, a few ms on
	// hardware).
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
		return nil, classify(opOther, "ipvs: family lookup", err)
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
		return Info{}, classify(opOther, "ipvs: get info", err)
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
			return nil, classify(opOther, "ipvs: list services", err)
		}
		return out, nil
	}
}

// maxDumpRetries bounds the retries of dumps the kernel flags as interrupted.
const maxDumpRetries = 10

// Service reads one service (s needs only its key fields). A missing service gives
// [ErrServiceNotFound].
func (c *Client) Service(ctx context.Context, s Service) (Service, error) {
	k, err := s.wireKey()
	if err != nil {
		return Service{}, fmt.Errorf("ipvs: get service %s: %w", &s, err)
	}
	var rep svcMsg
	if err := getService.Do(ctx, c.conn, &svcKeyMsg{Service: k}, &rep); err != nil {
		return Service{}, classify(opGetService, "ipvs: get service "+s.String(), err)
	}
	if rep.Service == nil {
		return Service{}, fmt.Errorf("ipvs: get service %s: %w: reply without a service", &s, gnl.ErrUnexpectedReply)
	}
	return serviceFrom(rep.Service)
}

// AddService creates a service. An existing one gives [ErrServiceExists], an unknown scheduler
// or persistence engine [ErrSchedulerNotFound].
func (c *Client) AddService(ctx context.Context, s Service) error {
	return c.exec(ctx, Op{Kind: AddService, Service: &s})
}

// UpdateService changes a service's scheduler, flags, persistence and engine in place.
func (c *Client) UpdateService(ctx context.Context, s Service) error {
	return c.exec(ctx, Op{Kind: UpdateService, Service: &s})
}

// DeleteService deletes a service and its destinations.
func (c *Client) DeleteService(ctx context.Context, s Service) error {
	return c.exec(ctx, Op{Kind: DeleteService, Service: &s})
}

// AddDestination adds a destination to a service.
func (c *Client) AddDestination(ctx context.Context, s Service, d Destination) error {
	return c.exec(ctx, Op{Kind: AddDestination, Service: &s, Destination: &d})
}

// UpdateDestination changes a destination's forwarding method, weight, thresholds and tunnel
// in place (prefer this to delete and add: deleted destinations linger in the kernel).
func (c *Client) UpdateDestination(ctx context.Context, s Service, d Destination) error {
	return c.exec(ctx, Op{Kind: UpdateDestination, Service: &s, Destination: &d})
}

// DeleteDestination removes a destination from a service.
func (c *Client) DeleteDestination(ctx context.Context, s Service, d Destination) error {
	return c.exec(ctx, Op{Kind: DeleteDestination, Service: &s, Destination: &d})
}

// exec performs one operation: a batch of one, so that it is encoded exactly as in Apply.
func (c *Client) exec(ctx context.Context, op Op) error {
	err := op.check()
	if err == nil {
		var (
			enc encoder
			b   gnl.Batch
		)
		if err = enc.add(&b, &op); err != nil {
			return fmt.Errorf("ipvs: %s: %w", &op, err)
		}
		if err = c.conn.SendBatch(ctx, &b); err == nil {
			err = b.Err(0)
		}
		return c.opError(ctx, &op, err)
	}
	return fmt.Errorf("ipvs: %s: %w", &op, err)
}

// opError classifies the error of one operation. For an ENOENT on a service update it checks
// whether the service exists, so that a missing service is never reported as a missing
// scheduler (whatever errno a kernel uses for it).
func (c *Client) opError(ctx context.Context, op *Op, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrInvalid) && !isKernel(err) {
		return fmt.Errorf("ipvs: %s: %w", op, err)
	}
	err = classify(op.Kind.kind(), "ipvs: "+op.String(), err)
	if op.Kind == UpdateService && errors.Is(err, ErrSchedulerNotFound) {
		if _, gerr := c.Service(ctx, *op.Service); errors.Is(gerr, ErrServiceNotFound) {
			return fmt.Errorf("%w: %w", ErrServiceNotFound, errors.Unwrap(err))
		}
	}
	return err
}

func isKernel(err error) bool {
	var ge *gnl.Error
	return errors.As(err, &ge)
}

// Destinations lists the destinations of a service. A missing service gives
// [ErrServiceNotFound] (the kernel itself answers with an empty list).
func (c *Client) Destinations(ctx context.Context, s Service) ([]Destination, error) {
	k, err := s.wireKey()
	if err != nil {
		return nil, fmt.Errorf("ipvs: list destinations of %s: %w", &s, err)
	}
	var out []Destination
	for attempt := 0; ; attempt++ {
		out = out[:0]
		err = dumpDests.Dump(ctx, c.conn, &svcKeyMsg{Service: k}, func(m *destReply) error {
			if m.Dest == nil {
				return nil
			}
			d, err := destFrom(m.Dest, Family(k.AF))
			if err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
		if errors.Is(err, gnl.ErrDumpInterrupted) && attempt < maxDumpRetries {
			continue
		}
		break
	}
	if err != nil {
		return nil, classify(opGetService, "ipvs: list destinations of "+s.String(), err)
	}
	if len(out) == 0 {
		if _, err := c.Service(ctx, s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Flush deletes every service and destination.
func (c *Client) Flush(ctx context.Context) error {
	return classify(opOther, "ipvs: flush", flush.Exec(ctx, c.conn, &empty{}))
}

// Zero zeroes the counters of every service and destination.
func (c *Client) Zero(ctx context.Context) error {
	return classify(opOther, "ipvs: zero", zero.Exec(ctx, c.conn, &svcKeyMsg{}))
}

// ZeroService zeroes the counters of one service and its destinations.
func (c *Client) ZeroService(ctx context.Context, s Service) error {
	k, err := s.wireKey()
	if err != nil {
		return fmt.Errorf("ipvs: zero %s: %w", &s, err)
	}
	return classify(opGetService, "ipvs: zero "+s.String(), zero.Exec(ctx, c.conn, &svcKeyMsg{Service: k}))
}

// Timeouts reads the global TCP, TCP FIN and UDP timeouts.
func (c *Client) Timeouts(ctx context.Context) (Timeouts, error) {
	var rep configMsg
	if err := getConfig.Do(ctx, c.conn, &empty{}, &rep); err != nil {
		return Timeouts{}, classify(opOther, "ipvs: get timeouts", err)
	}
	return Timeouts{TCPSeconds: rep.TCP, TCPFinSeconds: rep.TCPFin, UDPSeconds: rep.UDP}, nil
}

// SetTimeouts sets the global timeouts; zero fields are left unchanged.
func (c *Client) SetTimeouts(ctx context.Context, t Timeouts) error {
	if t == (Timeouts{}) {
		return nil
	}
	m := configMsg{TCP: t.TCPSeconds, TCPFin: t.TCPFinSeconds, UDP: t.UDPSeconds}
	return classify(opOther, "ipvs: set timeouts", setConfig.Exec(ctx, c.conn, &m))
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
		return nil, classify(opOther, "ipvs: list sync daemons", err)
	}
	return out, nil
}

// StartDaemon starts a connection-sync daemon. One of that state already running gives
// [ErrDaemonRunning].
func (c *Client) StartDaemon(ctx context.Context, d Daemon) error {
	w, err := d.wire()
	if err != nil {
		return fmt.Errorf("ipvs: start sync daemon: %w", err)
	}
	return classify(opDaemon, "ipvs: start "+d.State.String()+" sync daemon", newDaemon.Exec(ctx, c.conn, &daemonMsg{Daemon: w}))
}

// StopDaemon stops the sync daemon of that state.
func (c *Client) StopDaemon(ctx context.Context, state DaemonState) error {
	if state != DaemonMaster && state != DaemonBackup {
		return fmt.Errorf("ipvs: stop sync daemon: %w: state %d", ErrInvalid, state)
	}
	m := daemonStateMsg{Daemon: &wireDaemonState{State: uint32(state)}}
	return classify(opDaemon, "ipvs: stop "+state.String()+" sync daemon", delDaemon.Exec(ctx, c.conn, &m))
}
