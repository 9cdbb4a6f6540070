package ipvs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// Table reads the whole table: one service dump, then one destination dump per service
// (IPVS has no dump of services with their destinations), on a second socket that reads them
// back to back with as little per-dump work as possible; interrupted dumps are retried.
// Entries are in the kernel's service order.
//
// The destination dumps are not pipelined because the kernel cannot run them so: a netlink
// socket runs one dump at a time, a dump ends only when its callback returns nothing (on the
// recvmsg after its last data), and a dump request that arrives while one runs is refused with
// EBUSY. Measured in the VM: with 128 requests per sendmsg, every request after the first
// non-empty dump of each sendmsg was refused. The minimum is one sendmsg and two recvmsg per
// service, which is what this does.
func (c *Client) Table(ctx context.Context) ([]TableEntry, error) {
	svcs, err := c.Services(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]TableEntry, len(svcs))
	keys := make([]*wireServiceKey, len(svcs))
	for i := range svcs {
		out[i].Service = svcs[i]
		if keys[i], err = svcs[i].wireKey(); err != nil {
			return nil, fmt.Errorf("ipvs: table: service %s from the kernel: %w", &svcs[i], err)
		}
	}
	if len(svcs) == 0 {
		return out, nil
	}
	fi, err := c.conn.Family(ctx, family.Name)
	if err != nil {
		return nil, classify(opOther, "ipvs: table", err)
	}
	if err := c.dumps.dests(ctx, fi.ID, keys, out); err != nil {
		return nil, fmt.Errorf("ipvs: table: %w", err)
	}
	return out, nil
}

// dumper reads the destinations of many services into out[i].Destinations.
type dumper interface {
	dests(ctx context.Context, familyID uint16, keys []*wireServiceKey, out []TableEntry) error
	Close() error
}

// seqDumper dumps one service at a time through the client's connection.
type seqDumper struct{ c *Client }

func (s seqDumper) Close() error { return nil }

func (s seqDumper) dests(ctx context.Context, _ uint16, keys []*wireServiceKey, out []TableEntry) error {
	for i, k := range keys {
		var err error
		for attempt := 0; ; attempt++ {
			out[i].Destinations = out[i].Destinations[:0]
			err = dumpDests.Dump(ctx, s.c.conn, &svcKeyMsg{Service: k}, func(m *destReply) error {
				if m.Dest == nil {
					return nil
				}
				d, err := destFrom(m.Dest, Family(k.AF))
				out[i].Destinations = append(out[i].Destinations, d)
				return err
			})
			if !errors.Is(err, gnl.ErrDumpInterrupted) || attempt >= maxDumpRetries {
				break
			}
		}
		if err != nil {
			return classify(opOther, "destinations of "+out[i].Service.String(), err)
		}
	}
	return nil
}

func newDumper(c *Client) dumper {
	if c.cfg.DumpTransport != nil {
		return &pipeDumper{c: c, t: c.cfg.DumpTransport, seq: uint32(time.Now().UnixNano())}
	}
	if c.owned {
		return &pipeDumper{c: c, seq: uint32(time.Now().UnixNano())}
	}
	return seqDumper{c}
}

// pipeDumper runs destination dumps over its own transport, in windows of dumpWindow requests
// per sendmsg; requests the kernel refuses with EBUSY (a dump still running) are sent again.
// It exists because a gnl.Conn dump costs a context registration and two read-deadline changes
// per dump; here the deadline is set once per window.
type pipeDumper struct {
	c     *Client
	mu    sync.Mutex
	t     gnl.Transport // opened on first use when nil
	seq   uint32
	wbuf  []byte
	rbufs [][]byte // receive buffers: recvmmsg fills several at once
	lens  []int
	fail  error     // the transport could not be opened: fall back to sequential dumps
	dl    time.Time // the socket's read deadline
	// arena holds the destinations of one dests call: each service's are a sub-slice of it,
	// which saves a growing slice per service.
	arena []Destination
}

// dumpWindow is how many dump requests go in one sendmsg: 1, because the kernel refuses a dump
// request while another dump on the socket has not ended (see Table).
const dumpWindow = 1

func (p *pipeDumper) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.t != nil {
		err := p.t.Close()
		p.t = nil
		return err
	}
	return nil
}

// reqState tracks one pipelined request.
type reqState uint8

const (
	reqPending reqState = iota
	reqDone
	reqRetry
)

func (p *pipeDumper) dests(ctx context.Context, famID uint16, keys []*wireServiceKey, out []TableEntry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.t == nil && p.fail == nil {
		p.t, p.fail = openDumpTransport(&p.c.cfg)
	}
	if p.fail != nil {
		return seqDumper{p.c}.dests(ctx, famID, keys, out)
	}
	if p.rbufs == nil {
		p.rbufs = [][]byte{make([]byte, dumpBufSize()), make([]byte, dumpBufSize())}
		p.lens = make([]int, len(p.rbufs))
	}
	// A cancelled context interrupts a blocked read; the next call re-arms the deadline.
	p.dl = time.Time{}
	stop := context.AfterFunc(ctx, func() { _ = p.t.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	p.arena = make([]Destination, 0, 8*len(keys))
	defer func() { p.arena = nil }()
	todo := make([]int, len(keys))
	for i := range todo {
		todo[i] = i
	}
	attempts := make([]uint8, len(keys))
	for len(todo) > 0 {
		var retry []int
		for start := 0; start < len(todo); start += dumpWindow {
			win := todo[start:min(start+dumpWindow, len(todo))]
			states, err := p.window(ctx, famID, keys, out, win)
			if err != nil {
				return err
			}

			for j, i := range win {
				if states[j] == reqRetry {
					attempts[i]++
					if attempts[i] > 100 {
						return fmt.Errorf("destinations of %s: the kernel refused the dump %d times", out[i].Service.String(), attempts[i]-1)
					}
					retry = append(retry, i)
				}
			}
		}
		todo = retry
	}
	return nil
}

// window sends the dump requests of services win in one sendmsg and reads every reply.
func (p *pipeDumper) window(ctx context.Context, famID uint16, keys []*wireServiceKey, out []TableEntry, win []int) ([]reqState, error) {
	seq0 := p.seq + 1
	b := p.wbuf[:0]
	var err error
	for _, i := range win {
		p.seq++
		off := len(b)
		b = binary.NativeEndian.AppendUint32(b, 0) // length, below
		b = binary.NativeEndian.AppendUint16(b, famID)
		b = binary.NativeEndian.AppendUint16(b, 0x1|0x300) // NLM_F_REQUEST|NLM_F_DUMP
		b = binary.NativeEndian.AppendUint32(b, p.seq)
		b = binary.NativeEndian.AppendUint32(b, p.t.PortID())
		b = append(b, cmdGetDest, family.Version, 0, 0)
		if b, err = gnl.AppendMarshal(b, &svcKeyMsg{Service: keys[i]}); err != nil {
			return nil, err
		}
		binary.NativeEndian.PutUint32(b[off:], uint32(len(b)-off))
		out[i].Destinations = nil
	}
	p.wbuf = b
	if err := p.t.Send(b); err != nil {
		return nil, fmt.Errorf("send dump requests: %w", err)
	}
	states := make([]reqState, len(win))
	starts := make([]int, len(win))
	for j := range starts {
		starts[j] = -1
	}
	left := len(win)
	for left > 0 {
		p.armDeadline(ctx)
		ndg, err := p.receive()
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				// A reply was dropped: every request still pending is retried; stale replies
				// to them are ignored by sequence number.
				for j := range states {
					if states[j] == reqPending {
						states[j] = reqRetry
					}
				}
				return states, p.drain()
			}
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			return nil, fmt.Errorf("receive dump replies: %w", err)
		}
		for k := range ndg {
			dg := p.rbufs[k][:p.lens[k]]
			for len(dg) >= 16 {
				l := int(binary.NativeEndian.Uint32(dg))
				if l < 16 || l > len(dg) {
					return nil, fmt.Errorf("%w: netlink message of %d bytes in a %d-byte datagram", gnl.ErrMalformed, l, len(dg))
				}
				typ := binary.NativeEndian.Uint16(dg[4:])
				flags := binary.NativeEndian.Uint16(dg[6:])
				seq := binary.NativeEndian.Uint32(dg[8:])
				msg := dg[16:l]
				dg = dg[min((l+3)&^3, len(dg)):]
				j := int(seq - seq0)
				if seq-seq0 >= uint32(len(win)) || states[j] != reqPending {
					continue // a reply to a request given up on earlier
				}
				i := win[j]
				if flags&0x10 != 0 { // NLM_F_DUMP_INTR
					states[j], left = reqRetry, left-1
					continue
				}
				switch typ {
				case 0x3: // NLMSG_DONE
					states[j], left = reqDone, left-1
					if starts[j] >= 0 {
						// One dump runs at a time, so its destinations are contiguous in the arena.
						out[i].Destinations = p.arena[starts[j]:len(p.arena):len(p.arena)]
					}
					if len(msg) >= 4 {
						if errno := int32(binary.NativeEndian.Uint32(msg)); errno < 0 {
							return nil, &gnl.Error{Family: family.Name, Command: dumpDests.Name, Errno: syscall.Errno(-errno)}
						}
					}
				case 0x2: // NLMSG_ERROR
					if len(msg) < 4 {
						return nil, fmt.Errorf("%w: short NLMSG_ERROR", gnl.ErrMalformed)
					}
					errno := syscall.Errno(-int32(binary.NativeEndian.Uint32(msg)))
					switch errno {
					case 0:
						continue
					case syscall.EBUSY, syscall.ENOBUFS, syscall.EINTR:

						states[j], left = reqRetry, left-1
					default:
						return nil, classify(opOther, "destinations of "+out[i].Service.String(),
							&gnl.Error{Family: family.Name, Command: dumpDests.Name, Errno: errno})
					}
				case famID:
					if len(msg) < 4 {
						return nil, fmt.Errorf("%w: generic netlink message of %d bytes", gnl.ErrMalformed, len(msg))
					}
					var dst Destination
					found, err := decodeDestMsg(msg[4:], Family(keys[i].AF), &dst)
					if err != nil {
						return nil, fmt.Errorf("destinations of %s: %w", out[i].Service.String(), err)
					}
					if !found {
						continue
					}
					if starts[j] < 0 {
						starts[j] = len(p.arena)
					}
					p.arena = append(p.arena, dst)
				}
			}
		}
	}
	return states, nil
}

// armDeadline bounds the next receive by the context's deadline and the client's timeout. The
// socket's deadline is only moved when less than half the timeout is left, so that reading
// thousands of dumps does not cost a timer change per read.
func (p *pipeDumper) armDeadline(ctx context.Context) {
	if ctx.Err() != nil {
		_ = p.t.SetReadDeadline(time.Unix(1, 0))
		return
	}
	now, timeout := time.Now(), p.c.timeout()
	if !p.dl.IsZero() && p.dl.Sub(now) > timeout/2 {
		return
	}
	d := now.Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	p.dl = d
	_ = p.t.SetReadDeadline(d)
}

// multiReceiver is a transport that reads several queued datagrams in one system call.
type multiReceiver interface {
	receiveMany(bufs [][]byte, lens []int) (int, error)
}

// receive reads one or more datagrams into p.rbufs and returns how many.
func (p *pipeDumper) receive() (int, error) {
	if m, ok := p.t.(multiReceiver); ok {
		return m.receiveMany(p.rbufs, p.lens)
	}
	n, err := p.t.Receive(p.rbufs[0])
	if err != nil {
		return 0, err
	}
	p.lens[0] = n
	return 1, nil
}

// drain reads whatever the kernel still has queued after an overflow.
func (p *pipeDumper) drain() error {
	p.dl = time.Time{}
	for {
		_ = p.t.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := p.t.Receive(p.rbufs[0]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			if !errors.Is(err, syscall.ENOBUFS) {
				return fmt.Errorf("drain dump replies: %w", err)
			}
		}
	}
}

// dumpBufSize is the receive buffer of the dump socket. The kernel sizes each dump skb to the
// largest buffer the reader ever passed to recvmsg (up to 32 KiB), but never below NLMSG_GOODSIZE
// (a page less the skb overhead, at most 8 KiB). A page-sized buffer keeps every skb an
// order-0/1 allocation, which measured faster than 32 KiB ones (order-4 pages for every dump);
// ten destinations (356 bytes each) still fit in one.
func dumpBufSize() int {
	return min(max(os.Getpagesize(), 4096), 8192)
}

func (c *Client) timeout() time.Duration {
	if c.cfg.Timeout > 0 {
		return c.cfg.Timeout
	}
	return 30 * time.Second
}
