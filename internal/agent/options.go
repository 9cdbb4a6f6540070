package agent

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// ErrUnmanaged is matched by the refusal of a service outside the managed CIDRs.
var ErrUnmanaged = fmt.Errorf("agent: address outside --managed-cidrs")

// ManagedCIDRs parses --managed-cidrs (comma-separated prefixes, possibly given several
// times) and returns the check Plan uses; no prefixes allow every address. Firewall-mark
// services have no address and are always allowed.
func ManagedCIDRs(values []string) (func(lvs.ServiceKey) error, error) {
	var prefixes []netip.Prefix
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("--managed-cidrs: %q is not a CIDR prefix: %w", s, err)
			}
			if p != p.Masked() {
				return nil, fmt.Errorf("--managed-cidrs: %q has host bits set (did you mean %s?)", s, p.Masked())
			}
			prefixes = append(prefixes, p)
		}
	}
	if len(prefixes) == 0 {
		return nil, nil
	}
	return func(k lvs.ServiceKey) error {
		if k.FirewallMark != 0 {
			return nil
		}
		a := k.Address.Unmap()
		for _, p := range prefixes {
			if p.Contains(a) {
				return nil
			}
		}
		return fmt.Errorf("%w: %s is in none of %v", ErrUnmanaged, a, prefixes)
	}, nil
}
