//go:build ipvsvm

package ipvs

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// This file reads and writes ipvsadm's rule syntax (ipvsadm -Sn, ipvsadm -R) for the
// cross-checks with ipvsadm. Parsing is strict: an option it does not know fails the test, so an
// ipvsadm output the library does not reproduce cannot go unnoticed.

func ipvsadm(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ipvsadm", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ipvsadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// parseRules parses ipvsadm -A/-a rules (as -Sn prints them and -R reads them) into a table.
func parseRules(t *testing.T, rules string) []TableEntry {
	t.Helper()
	var out []TableEntry
	index := map[lvs.ServiceKey]int{}
	for _, line := range strings.Split(rules, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		var (
			s       lvs.Service
			d       lvs.Destination
			persist bool
			mask    string
			isDest  bool
		)
		d.Weight = 1
		s.Scheduler = "wlc"
		for i := 0; i < len(f); i++ {
			arg := func() string {
				i++
				if i >= len(f) {
					t.Fatalf("rule %q: %s needs a value", line, f[i-1])
				}
				return f[i]
			}
			num := func() int {
				n, err := strconv.Atoi(arg())
				if err != nil {
					t.Fatalf("rule %q: %v", line, err)
				}
				return n
			}
			switch f[i] {
			case "-A":
			case "-a":
				isDest = true
			case "-t", "-u", "--sctp-service":
				s.Protocol = map[string]lvs.Protocol{"-t": lvs.TCP, "-u": lvs.UDP, "--sctp-service": lvs.SCTP}[f[i]]
				ap := netip.MustParseAddrPort(arg())
				s.Address, s.Port = ap.Addr(), ap.Port()
				s.Family = lvs.FamilyOf(s.Address)
			case "-f":
				s.FirewallMark = uint32(num())
				s.Family = lvs.IPv4
			case "-6":
				s.Family = lvs.IPv6
			case "-s":
				s.Scheduler = arg()
			case "-p":
				persist = true
				s.TimeoutSeconds = 300
				if i+1 < len(f) && !strings.HasPrefix(f[i+1], "-") {
					s.TimeoutSeconds = uint32(num())
				}
			case "-M":
				mask = arg()
			case "--pe":
				s.PersistenceEngine = arg()
			case "-b":
				for _, fl := range strings.Split(arg(), ",") {
					switch fl {
					case "sh-fallback", "mh-fallback", "flag-1":
						s.Flags |= lvs.FlagSched1
					case "sh-port", "mh-port", "flag-2":
						s.Flags |= lvs.FlagSched2
					case "flag-3":
						s.Flags |= lvs.FlagSched3
					default:
						t.Fatalf("rule %q: scheduler flag %q", line, fl)
					}
				}
			case "-o":
				s.Flags |= lvs.FlagOnePacket
			case "-r":
				v := arg()
				if ap, err := netip.ParseAddrPort(v); err == nil {
					d.Address, d.Port = ap.Addr(), ap.Port()
				} else {
					d.Address = netip.MustParseAddr(v)
				}
				d.Family = lvs.FamilyOf(d.Address)
			case "-g":
				d.Forwarding = lvs.DirectRouting
			case "-m":
				d.Forwarding = lvs.Masquerade
			case "-i":
				d.Forwarding = lvs.Tunnel
			case "-w":
				d.Weight = uint32(num())
			case "-x":
				d.UpperThreshold = uint32(num())
			case "-y":
				d.LowerThreshold = uint32(num())
			case "--tun-type":
				d.TunnelType = map[string]lvs.TunnelType{"ipip": lvs.TunnelIPIP, "gue": lvs.TunnelGUE, "gre": lvs.TunnelGRE}[arg()]
			case "--tun-port":
				d.TunnelPort = uint16(num())
			case "--tun-nocsum":
			case "--tun-csum":
				d.TunnelFlags |= lvs.TunnelChecksum
			case "--tun-remcsum":
				d.TunnelFlags |= lvs.TunnelRemoteChecksum
			default:
				t.Fatalf("rule %q: unknown option %q", line, f[i])
			}
		}
		if persist {
			s.Flags |= lvs.FlagPersistent
		}
		s.PersistencePrefixLength = uint8(s.Family.Bits())
		if mask != "" {
			if s.Family == lvs.IPv6 {
				n, _ := strconv.Atoi(mask)
				s.PersistencePrefixLength = uint8(n)
			} else {
				m := netip.MustParseAddr(mask).As4()
				s.PersistencePrefixLength = uint8(maskBits(m))
			}
		}
		if isDest && d.Port == 0 && s.FirewallMark == 0 {
			d.Port = s.Port // ipvsadm's default: the service's port
		}
		k := s.Key()
		if !isDest {
			index[k] = len(out)
			out = append(out, TableEntry{Service: Service{Service: s}})
			continue
		}
		j, ok := index[k]
		if !ok {
			t.Fatalf("rule %q: destination of an unknown service", line)
		}
		out[j].Destinations = append(out[j].Destinations, Destination{Destination: d})
	}
	return out
}

func maskBits(m [4]byte) int {
	n := 0
	for _, b := range m {
		for i := 7; i >= 0; i-- {
			if b&(1<<i) == 0 {
				return n
			}
			n++
		}
	}
	return n
}

// canon renders a table as sorted lines of what both ipvsadm and the library can express:
// no counters, "hashed" dropped, local forwarding shown as ipvsadm shows it (-g).
func canon(entries []TableEntry) []string {
	var lines []string
	for _, e := range entries {
		s := e.Service
		k := s.Key()
		lines = append(lines, fmt.Sprintf("S %s sched=%s flags=%s timeout=%d mask=%d pe=%q",
			k, s.Scheduler, s.Flags&^lvs.FlagHashed, s.TimeoutSeconds, s.PersistencePrefixLength, s.PersistenceEngine))
		for _, d := range e.Destinations {
			fwd := d.Forwarding
			if fwd == lvs.Local {
				fwd = lvs.DirectRouting
			}
			tun := ""
			if fwd == lvs.Tunnel {
				tun = fmt.Sprintf(" tun=%s/%d/%d", d.TunnelType, d.TunnelPort, d.TunnelFlags)
			}
			// Thresholds are compared with ipvsadm -Ln --thresholds: -Sn does not save them.
			lines = append(lines, fmt.Sprintf("D %s -> %s %s/%s w=%d%s",
				k, destFamily(&d.Destination, k.Family), netip.AddrPortFrom(d.Address, d.Port), fwd, d.Weight, tun))
		}
	}
	slices.Sort(lines)
	return lines
}

// statLine is one line of ipvsadm -Ln --exact --stats.
type statLine struct {
	name  string // "TCP 10.0.0.1:80" or "-> 10.1.0.1:80"
	stats [5]uint64
}

func parseStats(t *testing.T, out string) []statLine {
	t.Helper()
	var lines []statLine
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 7 || f[0] == "Prot" {
			continue
		}
		var sl statLine
		sl.name = f[0] + " " + f[1]
		nums := f[len(f)-5:]
		for i, n := range nums {
			v, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				t.Fatalf("stats line %q: %v", l, err)
			}
			sl.stats[i] = v
		}
		lines = append(lines, sl)
	}
	return lines
}

// thresholds parses ipvsadm -Ln --thresholds into "SERVICE -> DEST" → [upper, lower, active,
// inactive], SERVICE being the first two fields of ipvsadm's service line ("TCP 10.0.0.1:80").
func thresholds(t *testing.T, out string) map[string][4]uint64 {
	t.Helper()
	m := map[string][4]uint64{}
	svc := ""
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && slices.Contains([]string{"TCP", "UDP", "SCTP", "FWM"}, f[0]):
			svc = f[0] + " " + f[1]
		case len(f) == 6 && f[0] == "->" && svc != "":
			var v [4]uint64
			for i := range v {
				n, err := strconv.ParseUint(f[2+i], 10, 64)
				if err != nil {
					t.Fatalf("thresholds line %q: %v", l, err)
				}
				v[i] = n
			}
			m[svc+" -> "+f[1]] = v
		}
	}
	return m
}

// tableThresholds renders a table the way thresholds parses ipvsadm's.
func tableThresholds(table []TableEntry) map[string][4]uint64 {
	m := map[string][4]uint64{}
	for _, e := range table {
		s := e.Service
		hdr := s.Protocol.String() + " " + netip.AddrPortFrom(s.Address, s.Port).String()
		if s.FirewallMark != 0 {
			hdr = fmt.Sprintf("FWM %d", s.FirewallMark)
		}
		for _, d := range e.Destinations {
			m[hdr+" -> "+netip.AddrPortFrom(d.Address, d.Port).String()] = [4]uint64{
				uint64(d.UpperThreshold), uint64(d.LowerThreshold), uint64(d.ActiveConns), uint64(d.InactiveConns)}
		}
	}
	return m
}
