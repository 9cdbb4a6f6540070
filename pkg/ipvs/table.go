package ipvs

import (
	"context"
	"errors"
	"os"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Table reads the whole table: one service dump, then one destination dump per service
// (IPVS has no dump of services with their destinations), on a second socket with a small read
// buffer (see [Config.DumpConn]); interrupted dumps are retried.
// Entries are in the kernel's service order.
//
// What it guarantees: the kernel has no transaction spanning several dumps, so the table is
// not one instant's. Each entry is a service of the service dump with the destinations it had
// when they were read (one destination dump, consistent in itself). A service deleted before
// its destinations were read is left out, never reported without destinations: the kernel
// answers the destination dump of a missing service as that of an empty one, so Table asks for
// each service that came back empty, and drops it when it is gone. A service added after the
// service dump is missing; the next Table sees it.
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
		if keys[i], err = wireKey(svcs[i].ServiceKey); err != nil {
			return nil, opErr(ListServices, svcs[i].Key().String(), err)
		}
	}
	if len(svcs) == 0 {
		return out, nil
	}
	if err := c.dests(ctx, c.dumpConn(), keys, out); err != nil {
		return nil, err
	}
	return c.dropVanished(ctx, out)
}

// dropVanished removes the services that came back without destinations and no longer exist:
// they were deleted between the service dump and their destination dump.
func (c *Client) dropVanished(ctx context.Context, out []TableEntry) ([]TableEntry, error) {
	kept := out[:0]
	for _, e := range out {
		if len(e.Destinations) == 0 {
			_, err := c.Service(ctx, e.Key())
			if errors.Is(err, ErrServiceNotFound) {
				continue
			}
			if err != nil {
				return nil, err // an *OpError naming the service
			}
		}
		kept = append(kept, e)
	}
	clear(out[len(kept):])
	return kept, nil
}

// dumpConn is the connection Table runs destination dumps on: Config.DumpConn, else the second
// socket New opened, else (a client made on a given connection) the client's own.
func (c *Client) dumpConn() *gnl.Conn {
	switch {
	case c.cfg.DumpConn != nil:
		return c.cfg.DumpConn
	case c.dconn != nil:
		return c.dconn
	}
	return c.conn
}

// dialDumpConn opens the dump socket, in the client's namespace, with a page-sized read buffer:
// the kernel sizes dump messages after it (order-0 allocations), and one recvmmsg takes a
// dump's data and its NLMSG_DONE.
func dialDumpConn(cfg *Config) (*gnl.Conn, error) {
	return gnl.Dial(&gnl.Config{NetNS: cfg.NetNS, Timeout: cfg.Timeout, MessageBuffer: dumpBufSize(), ReceiveBuffer: 8 << 20, SendBuffer: 1 << 20})
}

// dests reads the destinations of each service, one dump per service, retrying interrupted
// dumps.
func (c *Client) dests(ctx context.Context, conn *gnl.Conn, keys []*wireServiceKey, out []TableEntry) error {
	// The destinations of all services share one backing array, grown as needed.
	arena := make([]Destination, 0, 8*len(keys))
	for i, k := range keys {
		var err error
		for attempt := 0; ; attempt++ {
			start := len(arena)
			err = dumpDestsRaw.Dump(ctx, conn, &svcKeyMsg{Service: k}, func(m *destRawReply) error {
				if m.Dest == nil {
					return nil
				}
				arena = append(arena, Destination{})
				return decodeDestNest(m.Dest, lvs.Family(k.AF), &arena[len(arena)-1])
			})
			if err == nil {
				out[i].Destinations = arena[start:len(arena):len(arena)]
				if start == len(arena) {
					out[i].Destinations = nil
				}
			} else {
				arena = arena[:start]
			}
			if !errors.Is(err, gnl.ErrDumpInterrupted) || attempt >= maxDumpRetries {
				break
			}
		}
		if err != nil {
			return opErr(ListDestinations, out[i].Key().String(), err)
		}
	}
	return nil
}

// dumpBufSize is the read buffer of the dump socket. The kernel sizes each dump skb to the
// largest buffer the reader ever passed to recvmsg (up to 32 KiB), but never below NLMSG_GOODSIZE
// (a page less the skb overhead, at most 8 KiB). A page-sized buffer keeps every skb an
// order-0/1 allocation, which measured faster than 32 KiB ones (order-4 pages for every dump);
// ten destinations (356 bytes each) still fit in one.
func dumpBufSize() int {
	return min(max(os.Getpagesize(), 4096), 8192)
}
