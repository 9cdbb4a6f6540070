package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of ds; 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// median is percentile 50.
func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels string // between the braces, as written
	value  float64
}

// parseMetrics reads the samples of the Prometheus text format (comments skipped).
func parseMetrics(r io.Reader) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("metrics: bad line %q", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: bad value in %q: %w", line, err)
		}
		s := sample{name: line[:sp], value: v}
		if b := strings.IndexByte(s.name, '{'); b >= 0 {
			s.name, s.labels = line[:b], strings.TrimSuffix(line[b+1:sp], "}")
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// sum adds the values of name's samples whose labels contain every filter.
func sum(ss []sample, name string, filters ...string) float64 {
	var t float64
	for _, s := range ss {
		if s.name != name {
			continue
		}
		ok := true
		for _, f := range filters {
			ok = ok && strings.Contains(s.labels, f)
		}
		if ok {
			t += s.value
		}
	}
	return t
}

// histQuantile returns the upper bound of the bucket of histogram name holding quantile q
// (0 < q <= 1), and the count of observations; +Inf when it is in the overflow bucket.
func histQuantile(ss []sample, name string, q float64) (float64, float64) {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for _, s := range ss {
		if s.name != name+"_bucket" {
			continue
		}
		i := strings.Index(s.labels, `le="`)
		if i < 0 {
			continue
		}
		v := s.labels[i+4:]
		v = v[:strings.IndexByte(v, '"')]
		le, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, s.value})
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0, 0
	}
	total := bs[len(bs)-1].n
	rank := math.Ceil(q * total)
	for _, b := range bs {
		if b.n >= rank {
			return b.le, total
		}
	}
	return math.Inf(1), total
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// markdown formats a table as GitHub markdown; columns after the first are right-aligned.
func markdown(header []string, rows [][]string) string {
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---:"
		if i == 0 {
			sep[i] = "---"
		}
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

// secs formats a duration in seconds, ms below one second.
func secs(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// ratio formats a/b as "N×".
func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	r := float64(a) / float64(b)
	if r >= 100 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

// verdict is "met" or "MISSED".
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// The benchmark's objects: VirtualService i has address vsAddr(i):80 and backends
// Service "svc-i" whose EndpointSlice has endpoints epAddr(i, 0..dests-1) on port 8080; a
// change swaps endpoint 0 between epAddr(i, 0) and epAddr(i, altSlot).
const (
	vsBase  = 0xac100000 // 172.16.0.0
	epBase  = 0x0a000000 // 10.0.0.0
	epSpan  = 16         // addresses per VirtualService's endpoints
	altSlot = 15         // endpoint 0's alternate address
)

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func vsAddr(i int) netip.Addr    { return addr4(vsBase + uint32(i)) }
func epAddr(i, j int) netip.Addr { return addr4(epBase + uint32(i)*epSpan + uint32(j) + 1) }
func vsName(i int) string        { return fmt.Sprintf("vs-%05d", i) }
func svcName(i int) string       { return fmt.Sprintf("svc-%05d", i) }
func sliceName(i int) string     { return svcName(i) + "-ipv4" }
func changeTarget(k, n int) int  { return int((uint64(k) * 7919) % uint64(n)) }
