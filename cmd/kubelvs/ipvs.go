package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

func init() { subcommands = append(subcommands, newIPVSCommand) }

func newIPVSCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ipvs",
		Short: "Inspect the kernel's IPVS tables",
	}
	var netns string
	cmd.PersistentFlags().StringVar(&netns, "netns", "", "network namespace file (/var/run/netns/NAME, /proc/PID/ns/net)")
	cmd.AddCommand(newIPVSListCommand(&netns), newIPVSInfoCommand(&netns))
	return cmd
}

func newIPVSListCommand(netns *string) *cobra.Command {
	var opts listOptions
	list := &cobra.Command{
		Use:   "list",
		Short: "List virtual services and their destinations, like ipvsadm -Ln",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(opts.format); err != nil {
				return err
			}
			return withIPVS(cmd.Context(), *netns, func(c *ipvs.Client) error {
				info, err := c.Info(cmd.Context())
				if err != nil {
					return err
				}
				table, err := c.Table(cmd.Context())
				if err != nil {
					return err
				}
				return printIPVS(cmd.OutOrStdout(), opts, info, table)
			})
		},
	}
	list.Flags().StringVarP(&opts.format, "output", "o", "table", "output format: table or json")
	list.Flags().BoolVar(&opts.stats, "stats", false, "show the 64-bit counters (connections, packets, bytes)")
	list.Flags().BoolVar(&opts.rate, "rate", false, "show the rate estimates (per second)")
	return list
}

func newIPVSInfoCommand(netns *string) *cobra.Command {
	var format string
	info := &cobra.Command{
		Use:   "info",
		Short: "Show the IPVS version, connection table size and timeouts, like ipvsadm -L --timeout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return withIPVS(cmd.Context(), *netns, func(c *ipvs.Client) error {
				info, err := c.Info(cmd.Context())
				if err != nil {
					return err
				}
				to, err := c.Timeouts(cmd.Context())
				if err != nil {
					return err
				}
				return printInfo(cmd.OutOrStdout(), format, info, to)
			})
		},
	}
	info.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	return info
}

func checkFormat(f string) error {
	if f != "table" && f != "json" {
		return fmt.Errorf("unknown output format %q (table or json)", f)
	}
	return nil
}

// withIPVS runs do with a client in the network namespace netns (a file; empty: this one).
func withIPVS(ctx context.Context, netns string, do func(*ipvs.Client) error) error {
	cfg := &ipvs.Config{}
	if netns != "" {
		f, err := os.Open(netns)
		if err != nil {
			return fmt.Errorf("network namespace: %w", err)
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	c, err := ipvs.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return do(c)
}

// jsonInfo is kubelvs ipvs info -o json.
type jsonInfo struct {
	Version              string `json:"version"`
	ConnectionTableSize  uint32 `json:"connectionTableSize"`
	TCPTimeoutSeconds    uint32 `json:"tcpTimeoutSeconds"`
	TCPFinTimeoutSeconds uint32 `json:"tcpFinTimeoutSeconds"`
	UDPTimeoutSeconds    uint32 `json:"udpTimeoutSeconds"`
}

func printInfo(w io.Writer, format string, info ipvs.Info, to ipvs.Timeouts) error {
	if format == "json" {
		return writeJSON(w, jsonInfo{Version: info.VersionString(), ConnectionTableSize: info.ConnTableSize,
			TCPTimeoutSeconds: to.TCPSeconds, TCPFinTimeoutSeconds: to.TCPFinSeconds, UDPTimeoutSeconds: to.UDPSeconds})
	}
	_, err := fmt.Fprintf(w, "IP Virtual Server version %s (size=%d)\nTimeout (tcp tcpfin udp): %d %d %d\n",
		info.VersionString(), info.ConnTableSize, to.TCPSeconds, to.TCPFinSeconds, to.UDPSeconds)
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type listOptions struct {
	format      string
	stats, rate bool
}

// sortTable orders services as ipvsadm -Ln does (its ipvs_cmp_services): services with an
// address first, firewall marks after them by mark; then by family, protocol, address and
// port. Destinations go by family, address and port.
func sortTable(table []ipvs.TableEntry) {
	slices.SortStableFunc(table, func(a, b ipvs.TableEntry) int {
		return cmp.Or(
			cmp.Compare(a.FirewallMark, b.FirewallMark),
			cmp.Compare(a.Family, b.Family),
			cmp.Compare(a.Protocol, b.Protocol),
			a.Address.Compare(b.Address),
			cmp.Compare(a.Port, b.Port))
	})
	for i := range table {
		slices.SortStableFunc(table[i].Destinations, func(a, b ipvs.Destination) int {
			return cmp.Or(cmp.Compare(a.Family, b.Family), a.Address.Compare(b.Address), cmp.Compare(a.Port, b.Port))
		})
	}
}

// JSON shapes of kubelvs ipvs list -o json. They keep their own names and words (ipvsadm's,
// lower case) whatever pkg/ipvs's and pkg/lvs's types are called.
type (
	jsonService struct {
		Family            string            `json:"family"`
		Address           string            `json:"address,omitempty"`
		Port              uint16            `json:"port"`
		Protocol          string            `json:"protocol,omitempty"`
		FWMark            uint32            `json:"fwmark"`
		Scheduler         string            `json:"scheduler"`
		Flags             []string          `json:"flags"`
		TimeoutSeconds    uint32            `json:"timeoutSeconds"`
		Netmask           uint8             `json:"netmask"`
		PersistenceEngine string            `json:"persistenceEngine,omitempty"`
		Destinations      []jsonDestination `json:"destinations"`
		Stats             ipvs.Stats        `json:"stats"`
	}
	jsonDestination struct {
		Address         string      `json:"address"`
		Port            uint16      `json:"port"`
		Forward         string      `json:"forward"`
		Weight          uint32      `json:"weight"`
		UpperThreshold  uint32      `json:"upperThreshold"`
		LowerThreshold  uint32      `json:"lowerThreshold"`
		ActiveConns     uint32      `json:"activeConns"`
		InactiveConns   uint32      `json:"inactiveConns"`
		PersistentConns uint32      `json:"persistentConns"`
		TunnelType      string      `json:"tunnelType,omitempty"`
		TunnelPort      uint16      `json:"tunnelPort,omitempty"`
		TunnelFlags     string      `json:"tunnelFlags,omitempty"` // nocsum, csum, remcsum
		Stats           *ipvs.Stats `json:"stats,omitempty"`
	}
)

func familyName(f lvs.Family) string { return strings.ToLower(f.String()) }

var forwardNames = map[lvs.Forwarding]string{lvs.Masquerade: "masq", lvs.Local: "local", lvs.Tunnel: "tunnel",
	lvs.DirectRouting: "route", lvs.Bypass: "bypass"}

func forwardName(m lvs.Forwarding) string {
	if n, ok := forwardNames[m]; ok {
		return n
	}
	return strings.ToLower(m.String())
}

// flagList names a service's flags as ipvsadm does, the scheduler flags by their meaning for sh
// and mh (sh-fallback, mh-port, ...). The kernel's own "hashed" is not a user's flag: left out.
func flagList(f lvs.ServiceFlags, sched string) []string {
	out := []string{}
	named := map[lvs.ServiceFlags]string{}
	if sched == "sh" || sched == "mh" {
		named[lvs.FlagSched1], named[lvs.FlagSched2] = sched+"-fallback", sched+"-port"
	}
	f &^= lvs.FlagHashed
	for bit := lvs.ServiceFlags(1); bit != 0 && f != 0; bit <<= 1 {
		if f&bit == 0 {
			continue
		}
		f &^= bit
		if n, ok := named[bit]; ok {
			out = append(out, n)
		} else {
			out = append(out, bit.String())
		}
	}
	return out
}

func printIPVS(w io.Writer, opts listOptions, info ipvs.Info, table []ipvs.TableEntry) error {
	sortTable(table)
	if opts.format == "json" {
		out := make([]jsonService, 0, len(table))
		for i := range table {
			out = append(out, jsonEntry(&table[i], opts.stats || opts.rate))
		}
		return writeJSON(w, out)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "IP Virtual Server version %s (size=%d)\n", info.VersionString(), info.ConnTableSize)
	switch {
	case opts.stats:
		fmt.Fprintf(&b, "%-33s %12s %12s %12s %15s %15s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case opts.rate:
		fmt.Fprintf(&b, "%-33s %12s %12s %12s %15s %15s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	default:
		b.WriteString("Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
	for i := range table {
		writeEntry(&b, opts, &table[i])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func jsonEntry(e *ipvs.TableEntry, stats bool) jsonService {
	js := jsonService{Family: familyName(e.Family), Port: e.Port, Protocol: strings.ToLower(e.Protocol.String()), FWMark: e.FirewallMark,
		Scheduler: e.Scheduler, Flags: flagList(e.Flags, e.Scheduler), TimeoutSeconds: e.TimeoutSeconds, Netmask: e.PersistencePrefixLength,
		PersistenceEngine: e.PersistenceEngine, Destinations: []jsonDestination{}, Stats: e.Stats}
	if e.Address.IsValid() {
		js.Address = e.Address.String()
	}
	for _, d := range e.Destinations {
		jd := jsonDestination{Address: d.Address.String(), Port: d.Port, Forward: forwardName(d.Forwarding), Weight: d.Weight,
			UpperThreshold: d.UpperThreshold, LowerThreshold: d.LowerThreshold, ActiveConns: d.ActiveConns,
			InactiveConns: d.InactiveConns, PersistentConns: d.PersistentConns}
		if d.Forwarding == lvs.Tunnel {
			jd.TunnelType, jd.TunnelPort, jd.TunnelFlags = strings.ToLower(d.TunnelType.String()), d.TunnelPort, d.TunnelFlags.String()
		}
		if stats {
			st := d.Stats
			jd.Stats = &st
		}
		js.Destinations = append(js.Destinations, jd)
	}
	return js
}

func counters(opts listOptions, s ipvs.Stats) string {
	if opts.stats {
		return fmt.Sprintf(" %12d %12d %12d %15d %15d", s.Conns, s.InPackets, s.OutPackets, s.InBytes, s.OutBytes)
	}
	return fmt.Sprintf(" %12d %12d %12d %15d %15d", s.CPS, s.InPPS, s.OutPPS, s.InBPS, s.OutBPS)
}

func writeEntry(b *strings.Builder, opts listOptions, e *ipvs.TableEntry) {
	name := fmt.Sprintf("%s  %s", e.Protocol, netip.AddrPortFrom(e.Address, e.Port))
	if e.FirewallMark != 0 {
		name = fmt.Sprintf("FWM  %d", e.FirewallMark)
		if e.Family == lvs.IPv6 {
			name += " IPv6"
		}
	}
	if opts.stats || opts.rate {
		fmt.Fprintf(b, "%-33s%s\n", name, counters(opts, e.Stats))
	} else {
		b.WriteString(name + " " + e.Scheduler + serviceFlags(&e.Service.Service) + "\n")
	}
	for _, d := range e.Destinations {
		dn := netip.AddrPortFrom(d.Address, d.Port).String()
		if opts.stats || opts.rate {
			fmt.Fprintf(b, "  -> %-28s%s\n", dn, counters(opts, d.Stats))
			continue
		}
		fwd := forwardName(d.Forwarding)
		fwd = strings.ToUpper(fwd[:1]) + fwd[1:]
		fmt.Fprintf(b, "  -> %-28s %-7s %-6d %-10d %d%s\n", dn, fwd, d.Weight, d.ActiveConns, d.InactiveConns, tunnel(&d.Destination))
	}
}

// serviceFlags is what ipvsadm -Ln prints after the scheduler: persistence with its timeout, a
// netmask that is not the full length (dotted for IPv4, a prefix length for IPv6) and the
// engine, one-packet scheduling, the scheduler flags.
func serviceFlags(s *lvs.Service) string {
	var b strings.Builder
	if s.Flags&lvs.FlagPersistent != 0 {
		fmt.Fprintf(&b, " persistent %d", s.TimeoutSeconds)
		if n := int(s.PersistencePrefixLength); n != s.Family.Bits() {
			if s.Family == lvs.IPv4 {
				mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-n))
				b.WriteString(" mask " + netip.AddrFrom4([4]byte(mask)).String())
			} else {
				fmt.Fprintf(&b, " mask %d", n)
			}
		}
		if s.PersistenceEngine != "" {
			b.WriteString(" pe " + s.PersistenceEngine)
		}
	}
	if s.Flags&lvs.FlagOnePacket != 0 {
		b.WriteString(" ops")
	}
	if f := s.Flags & (lvs.FlagSched1 | lvs.FlagSched2 | lvs.FlagSched3); f != 0 {
		b.WriteString(" (" + strings.Join(flagList(f, s.Scheduler), ",") + ")")
	}
	return b.String()
}

// tunnel describes a tunnelled destination's encapsulation after its counters: type, GUE's
// port, checksum flags ("gue 6080 csum"); nothing for other forwarding methods.
func tunnel(d *lvs.Destination) string {
	if d.Forwarding != lvs.Tunnel {
		return ""
	}
	s := " " + strings.ToLower(d.TunnelType.String())
	if d.TunnelType == lvs.TunnelGUE {
		s += fmt.Sprintf(" %d", d.TunnelPort)
	}
	return s + " " + d.TunnelFlags.String()
}
