package main

import (
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
	var (
		opts  listOptions
		netns string
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List virtual services and their destinations, like ipvsadm -Ln",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.format != "table" && opts.format != "json" {
				return fmt.Errorf("unknown output format %q (table or json)", opts.format)
			}
			cfg := &ipvs.Config{}
			if netns != "" {
				f, err := os.Open(netns)
				if err != nil {
					return fmt.Errorf("network namespace: %w", err)
				}
				defer f.Close()
				cfg.NetNS = int(f.Fd())
			}
			c, err := ipvs.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.Info(cmd.Context())
			if err != nil {
				return err
			}
			table, err := c.Table(cmd.Context())
			if err != nil {
				return err
			}
			return printIPVS(cmd.OutOrStdout(), opts, info, table)
		},
	}
	list.Flags().StringVarP(&opts.format, "output", "o", "table", "output format: table or json")
	list.Flags().BoolVar(&opts.stats, "stats", false, "show the 64-bit counters (connections, packets, bytes)")
	list.Flags().BoolVar(&opts.rate, "rate", false, "show the rate estimates (per second)")
	list.Flags().StringVar(&netns, "netns", "", "network namespace file (/var/run/netns/NAME, /proc/PID/ns/net)")
	cmd.AddCommand(list)
	return cmd
}

type listOptions struct {
	format      string
	stats, rate bool
}

// sortTable orders services and destinations as ipvsadm -Ln does: by protocol, address and
// port (firewall marks last), destinations by address and port.
func sortTable(table []ipvs.TableEntry) {
	key := func(s *ipvs.Service) (int, netip.Addr, uint16, uint32) {
		if s.FirewallMark != 0 {
			return 1 << 16, netip.Addr{}, 0, s.FirewallMark
		}
		return int(s.Protocol), s.Address, s.Port, 0
	}
	slices.SortStableFunc(table, func(a, b ipvs.TableEntry) int {
		ap, aa, apt, am := key(&a.Service)
		bp, ba, bpt, bm := key(&b.Service)
		if ap != bp {
			return ap - bp
		}
		if c := aa.Compare(ba); c != 0 {
			return c
		}
		if apt != bpt {
			return int(apt) - int(bpt)
		}
		return int(am) - int(bm)
	})
	for i := range table {
		slices.SortStableFunc(table[i].Destinations, func(a, b ipvs.Destination) int {
			if c := a.Address.Compare(b.Address); c != 0 {
				return c
			}
			return int(a.Port) - int(b.Port)
		})
	}
}

// JSON shapes of kubelvs ipvs list -o json.
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
		Stats           *ipvs.Stats `json:"stats,omitempty"`
	}
)

// familyName, forwardName keep kubelvs ipvs list's words (ipvsadm's, lower case) whatever
// pkg/lvs's String methods say.
func familyName(f lvs.Family) string { return strings.ToLower(f.String()) }

var forwardNames = map[lvs.Forwarding]string{lvs.Masquerade: "masq", lvs.Local: "local", lvs.Tunnel: "tunnel",
	lvs.DirectRouting: "route", lvs.Bypass: "bypass"}

func forwardName(m lvs.Forwarding) string {
	if n, ok := forwardNames[m]; ok {
		return n
	}
	return strings.ToLower(m.String())
}

// flagList names a service's flags, the scheduler flags by their meaning for sh and mh
// (sh-fallback, mh-port, ...) as ipvsadm does.
func flagList(f lvs.ServiceFlags, sched string) []string {
	out := []string{}
	named := map[lvs.ServiceFlags]string{}
	if sched == "sh" || sched == "mh" {
		named[lvs.FlagSched1], named[lvs.FlagSched2] = sched+"-fallback", sched+"-port"
	}
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
		for _, e := range table {
			s := e.Service
			js := jsonService{Family: familyName(s.Family), Port: s.Port, Protocol: strings.ToLower(s.Protocol.String()), FWMark: s.FirewallMark,
				Scheduler: s.Scheduler, Flags: flagList(s.Flags, s.Scheduler), TimeoutSeconds: s.TimeoutSeconds, Netmask: s.PersistencePrefixLength,
				PersistenceEngine: s.PersistenceEngine, Destinations: []jsonDestination{}, Stats: s.Stats}
			if s.Address.IsValid() {
				js.Address = s.Address.String()
			}
			for _, d := range e.Destinations {
				jd := jsonDestination{Address: d.Address.String(), Port: d.Port, Forward: forwardName(d.Forwarding), Weight: d.Weight,
					UpperThreshold: d.UpperThreshold, LowerThreshold: d.LowerThreshold, ActiveConns: d.ActiveConns,
					InactiveConns: d.InactiveConns, PersistentConns: d.PersistentConns}
				if d.Forwarding == lvs.Tunnel {
					jd.TunnelType, jd.TunnelPort = strings.ToLower(d.TunnelType.String()), d.TunnelPort
				}
				if opts.stats || opts.rate {
					st := d.Stats
					jd.Stats = &st
				}
				js.Destinations = append(js.Destinations, jd)
			}
			out = append(out, js)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
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
	counters := func(s ipvs.Stats) string {
		if opts.stats {
			return fmt.Sprintf(" %12d %12d %12d %15d %15d", s.Conns, s.InPackets, s.OutPackets, s.InBytes, s.OutBytes)
		}
		return fmt.Sprintf(" %12d %12d %12d %15d %15d", s.CPS, s.InPPS, s.OutPPS, s.InBPS, s.OutBPS)
	}
	for _, e := range table {
		s := e.Service
		name := fmt.Sprintf("%s  %s", s.Protocol, netip.AddrPortFrom(s.Address, s.Port))
		if s.FirewallMark != 0 {
			name = fmt.Sprintf("FWM  %d", s.FirewallMark)
			if s.Family == lvs.IPv6 {
				name += " IPv6"
			}
		}
		if opts.stats || opts.rate {
			fmt.Fprintf(&b, "%-33s%s\n", name, counters(s.Stats))
		} else {
			b.WriteString(name + " " + s.Scheduler)
			if s.Flags&lvs.FlagPersistent != 0 {
				fmt.Fprintf(&b, " persistent %d", s.TimeoutSeconds)
				if int(s.PersistencePrefixLength) != s.Family.Bits() {
					fmt.Fprintf(&b, " mask /%d", s.PersistencePrefixLength)
				}
			}
			if s.PersistenceEngine != "" {
				b.WriteString(" pe " + s.PersistenceEngine)
			}
			if s.Flags&lvs.FlagOnePacket != 0 {
				b.WriteString(" ops")
			}
			if f := s.Flags & (lvs.FlagSched1 | lvs.FlagSched2 | lvs.FlagSched3); f != 0 {
				b.WriteString(" (" + strings.Join(flagList(f, s.Scheduler), ",") + ")")
			}
			b.WriteString("\n")
		}
		for _, d := range e.Destinations {
			dn := netip.AddrPortFrom(d.Address, d.Port).String()
			if opts.stats || opts.rate {
				fmt.Fprintf(&b, "  -> %-28s%s\n", dn, counters(d.Stats))
				continue
			}
			fwd := forwardName(d.Forwarding)
			fwd = strings.ToUpper(fwd[:1]) + fwd[1:]
			fmt.Fprintf(&b, "  -> %-28s %-7s %-6d %-10d %d\n", dn, fwd, d.Weight, d.ActiveConns, d.InactiveConns)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
