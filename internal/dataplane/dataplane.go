package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/nftables"
	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Config configures a Dataplane.
type Config struct {
	// NetNS is a descriptor of the network namespace to work in; 0: the agent's own.
	NetNS int
	// Interface is the VIP interface's name (--vip-interface); empty: bind nothing.
	Interface string
	// Filter: keep the nftables table (filter and masquerade); false: no table.
	Filter     bool
	Masquerade Masquerade
	// Sysctls are the dataplane's sysctls as set (reported in Info).
	Sysctls []v1alpha1.Sysctl
	Log     logr.Logger
	Metrics *Metrics
	// Events, when set, is told when programming starts failing (warning) and when it works
	// again (the agent records them as Kubernetes events on its IPVSNode).
	Events func(warning bool, reason, message string)
}

// Dataplane keeps the VIP routes and the nftables table equal to what the
// node's IPVS services need. Set, Remove and Program are called from one goroutine; Info from
// any.
type Dataplane struct {
	cfg Config

	rt   *rtnetlink.Conn
	nft  *nftables.Conn
	link *link

	index *Index

	vips map[netip.Addr]struct{} // the VIPs the agent routes through the interface
	// migrated: the legacy VIP addresses of earlier agents are gone (checked once).
	migrated bool
	nftEl    Elements // the table's elements
	sets     map[string]*nftables.Set
	synced   bool // vips and nftEl are known to match the kernel (else the next Program reads it)
	// genConn asks for the nftables ruleset generation; gen is the one after the agent's last
	// transaction or table read, when genKnown (see gen.go).
	genConn  *netlink.Conn
	gen      uint32
	genKnown bool

	mu   sync.Mutex
	info v1alpha1.DataplaneInfo
	err  error
}

// New returns a Dataplane; nothing is changed on the node before Program.
func New(cfg Config) *Dataplane {
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Masquerade == "" {
		cfg.Masquerade = MasqueradeRemote
	}
	d := &Dataplane{cfg: cfg, index: NewIndex(),
		vips: map[netip.Addr]struct{}{}, nftEl: NewElements()}
	d.index.SetNoMasq(NoMasqBounds(cfg.Masquerade, nil))
	d.info = v1alpha1.DataplaneInfo{VIPInterface: cfg.Interface, Masquerade: string(cfg.Masquerade), Sysctls: cfg.Sysctls}
	return d
}

func (d *Dataplane) open() error {
	if d.rt == nil && d.cfg.Interface != "" {
		c, err := rtnetlink.Dial(&netlink.Config{NetNS: d.cfg.NetNS, Strict: true})
		if err != nil {
			return fmt.Errorf("dataplane: open rtnetlink: %w", err)
		}
		d.rt = c
		d.link = &link{c: c, name: d.cfg.Interface}
		raw, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: d.cfg.NetNS})
		if err != nil {
			return fmt.Errorf("dataplane: open rtnetlink: %w", err)
		}
		// The ACKs of a window fill the receive buffer: make room (FORCE needs CAP_NET_ADMIN).
		_ = bigBuffers(raw)
		d.link.raw = raw
	}
	if d.nft == nil && d.cfg.Filter {
		opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}
		if d.cfg.NetNS != 0 {
			opts = append(opts, nftables.WithNetNSFd(d.cfg.NetNS))
		}
		c, err := nftables.New(opts...)
		if err != nil {
			return fmt.Errorf("dataplane: open nftables: %w", err)
		}
		d.nft = c
	}
	if d.genConn == nil && d.cfg.Filter {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: d.cfg.NetNS})
		if err != nil {
			return fmt.Errorf("dataplane: open nfnetlink: %w", err)
		}
		d.genConn = c
	}
	return nil
}

// Close closes the netlink sockets.
func (d *Dataplane) Close() error {
	var errs []error
	if d.rt != nil {
		errs = append(errs, d.rt.Close())
	}
	if d.link != nil && d.link.raw != nil {
		errs = append(errs, d.link.raw.Close())
	}
	if d.nft != nil {
		errs = append(errs, d.nft.CloseLasting())
	}
	if d.genConn != nil {
		errs = append(errs, d.genConn.Close())
	}
	return errors.Join(errs...)
}

// Set records the IPVS service k (Program makes it so). Its destinations do not matter:
// which are masqueraded is decided by their addresses (SetLocalPrefixes).
func (d *Dataplane) Set(k lvs.ServiceKey) {
	if p, ok := PortOf(k); ok {
		d.index.Set(k, p)
	}
}

// Remove forgets the IPVS service k.
func (d *Dataplane) Remove(k lvs.ServiceKey) { d.index.Remove(k) }

// SetLocalPrefixes sets the node's local prefixes (its pod CIDRs: destinations there are not
// masqueraded with MasqueradeRemote). The same prefixes again change nothing (the index
// compares the bounds).
func (d *Dataplane) SetLocalPrefixes(p []netip.Prefix) {
	d.index.SetNoMasq(NoMasqBounds(d.cfg.Masquerade, p))
}

// Audit makes the next Program read the kernel's state and repair any drift.
func (d *Dataplane) Audit() { d.synced = false }

// Program brings the interface and the table to what the services need: the changes since
// the last Program only, or, after an error or an Audit, everything that differs from what
// the kernel holds. The table changes in one transaction.
func (d *Dataplane) Program(ctx context.Context) error {
	_ = ctx // netlink calls here are short; the sockets have no deadline support in the libraries
	start := time.Now()
	touched := d.index.Touched()
	err := d.program(&touched)
	d.cfg.Metrics.ProgramDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		d.synced = false
	}
	d.mu.Lock()
	prev := d.err
	d.err = err
	d.info.BoundVIPs = int32(len(d.vips))
	d.info.Table = ""
	if d.sets != nil {
		d.info.Table = "inet " + TableName
	}
	events := d.cfg.Events
	d.mu.Unlock()
	d.cfg.Metrics.BoundVIPs.Set(float64(len(d.vips)))
	switch {
	case events == nil:
	case err != nil && (prev == nil || prev.Error() != err.Error()):
		events(true, "DataplaneError", err.Error())
	case err == nil && prev != nil:
		events(false, "DataplaneProgrammed", "the VIP interface and the nftables table match the node's IPVS services again")
	}
	return err
}

// SetEvents sets Config.Events (the recorder exists only once the agent's manager does).
func (d *Dataplane) SetEvents(f func(warning bool, reason, message string)) {
	d.mu.Lock()
	d.cfg.Events = f
	d.mu.Unlock()
}

func (d *Dataplane) program(touched *Elements) error {
	if err := d.open(); err != nil {
		return err
	}
	full := !d.synced
	if full {
		touched = nil
	}
	var errs []error
	if d.link != nil {
		errs = append(errs, d.programLink(full, touched))
	}
	if d.nft != nil {
		errs = append(errs, d.programTable(full, touched))
	}
	err := errors.Join(errs...)
	if err == nil {
		d.synced = true
	}
	return err
}

func (d *Dataplane) programLink(full bool, touched *Elements) error {
	var legacy []legacyAddr
	if full {
		created, err := d.link.ensure()
		d.cfg.Metrics.op("link_ensure", err)
		if err != nil {
			return err
		}
		if created {
			d.cfg.Log.Info("created the VIP interface", "interface", d.cfg.Interface)
		}
		vips, stale, err := d.link.vips()
		for range stale {
			d.cfg.Metrics.op("route_delete", nil)
		}
		if err != nil {
			return err
		}
		d.vips = vips
		if !d.migrated {
			if legacy, err = d.link.legacyAddresses(); err != nil {
				return err
			}
		}
	}
	var cand map[netip.Addr]struct{}
	if touched != nil {
		cand = touched.VIPs
	}
	add, del := diffSet(d.vips, d.index.Want().VIPs, cand, netip.Addr.Compare)
	var errs []error
	for _, a := range del {
		err := d.link.del(a)
		d.cfg.Metrics.op("route_delete", err)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		delete(d.vips, a)
	}
	// A VIP that is still a legacy address is routed beside the address's own local route,
	// then the address goes: it stays local throughout.
	add, viaAddr := splitLegacy(add, legacy)
	errs = append(errs, d.addRoutes(add, false), d.addRoutes(viaAddr, true))
	if err := errors.Join(errs...); err != nil {
		return err // the legacy addresses stay until their VIPs are routes
	}
	if err := d.link.delLegacy(legacy); err != nil {
		return err
	}
	if full && !d.migrated {
		d.migrated = true
		for _, la := range legacy {
			if la.index == d.link.index {
				// The interface routed through may have lost its last IPv4 address, and then
				// the kernel dropped every route through it: route again (a dummy; lo keeps
				// 127.0.0.1).
				return d.programLink(true, nil)
			}
		}
	}
	return nil
}

// addRoutes routes vips and records the ones added.
func (d *Dataplane) addRoutes(vips []netip.Addr, appendTo bool) error {
	if len(vips) == 0 {
		return nil
	}
	added, errs := d.link.addMany(vips, appendTo)
	for _, a := range added {
		d.vips[a] = struct{}{}
		d.cfg.Metrics.op("route_add", nil)
	}
	for _, err := range errs {
		d.cfg.Metrics.op("route_add", err)
	}
	return errors.Join(errs...)
}

// splitLegacy splits add into the VIPs that are not legacy addresses and those that are.
func splitLegacy(add []netip.Addr, legacy []legacyAddr) (plain, viaAddr []netip.Addr) {
	if len(legacy) == 0 {
		return add, nil
	}
	was := make(map[netip.Addr]struct{}, len(legacy))
	for _, la := range legacy {
		was[la.addr] = struct{}{}
	}
	for _, a := range add {
		if _, ok := was[a]; ok {
			viaAddr = append(viaAddr, a)
		} else {
			plain = append(plain, a)
		}
	}
	return plain, viaAddr
}

// generation returns the nftables ruleset generation.
func (d *Dataplane) generation() (uint32, error) {
	g, err := rulesetGen(d.genConn)
	d.cfg.Metrics.op("nftables_generation", err)
	return g, err
}

func (d *Dataplane) programTable(full bool, touched *Elements) error {
	created := false
	if full && d.sets != nil && d.genKnown {
		// No commit by anyone since the agent's last: the table is what the agent holds.
		if g, err := d.generation(); err == nil && g == d.gen {
			full = false
		}
	}
	if full {
		// The generation before the read: a commit during the read makes the next audit read again.
		g, gerr := d.generation()
		d.gen, d.genKnown = g, gerr == nil
		el, sets, exists, err := readTable(d.nft, d.genConn)
		d.cfg.Metrics.op("nftables_read", err)
		switch {
		case errors.Is(err, errTableShape):
			d.cfg.Log.Info("replacing the nftables table (it is not the one this agent writes)", "reason", err.Error())
			d.nft.DelTable(table())
			exists = false
		case err != nil:
			return err
		}
		if !exists {
			if sets, err = addTable(d.nft); err != nil {
				return err
			}
			el, created = NewElements(), true
		}
		d.sets = sets
		d.nftEl = el
	}
	delta := Diff(d.nftEl, d.index.Want(), touched)
	if delta.Empty() && !created {
		return nil // nothing to send: an idle agent sends no netlink request
	}
	if err := queueDelta(d.nft, d.sets, &delta); err != nil {
		return err
	}
	err := d.nft.Flush()
	d.cfg.Metrics.op("nftables_transaction", err)
	if err != nil {
		if full {
			d.sets = nil
		}
		d.genKnown = false
		return fmt.Errorf("dataplane: nftables transaction: %w", err)
	}
	d.nftEl.Apply(&delta)
	// The transaction is the only commit since the generation known: the table is the agent's.
	g, gerr := d.generation()
	d.genKnown = d.genKnown && gerr == nil && g == d.gen+1
	d.gen = g
	return nil
}

// Info returns what IPVSNode reports, and the last Program's error.
func (d *Dataplane) Info() (v1alpha1.DataplaneInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	info := d.info
	info.Sysctls = append([]v1alpha1.Sysctl(nil), d.info.Sysctls...)
	return info, d.err
}

// Uninstall removes what the agent made on the node: the nftables table, the VIP routes
// and the agent's dummy interfaces, each only when it is the agent's. It reports what it
// removed.
func Uninstall(cfg Config) ([]string, error) {
	cfg.Filter = true // the table goes whatever the agent ran with
	if cfg.Interface == "" {
		cfg.Interface = "lo" // the routes and interfaces go whatever the agent ran with too
	}
	d := New(cfg)
	if err := d.open(); err != nil {
		return nil, err
	}
	defer d.Close()
	var removed []string
	var errs []error
	if d.nft != nil {
		_, _, exists, err := readTable(d.nft, d.genConn)
		if exists && (err == nil || errors.Is(err, errTableShape)) {
			d.nft.DelTable(table())
			if err = d.nft.Flush(); err == nil {
				removed = append(removed, "nftables table inet "+TableName)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("dataplane: remove nftables table: %w", err))
		}
	}
	if d.link != nil {
		r, err := d.link.remove()
		removed = append(removed, r...)
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}
