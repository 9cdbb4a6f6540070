package main

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}, {0.1, time.Millisecond}} {
		if got := percentile(ds, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("percentile sorted its input")
	}
	if percentile(nil, 50) != 0 || median([]time.Duration{3, 1, 2}) != 2 {
		t.Error("empty or odd median")
	}
}

const metricsText = `# HELP kubelvs_agent_netlink_requests_total x
# TYPE kubelvs_agent_netlink_requests_total counter
kubelvs_agent_netlink_requests_total{kind="dump"} 10001
kubelvs_agent_netlink_requests_total{kind="write"} 3
h_bucket{le="0.001"} 0
h_bucket{le="0.002"} 40
h_bucket{le="0.004"} 98
h_bucket{le="0.008"} 100
h_bucket{le="+Inf"} 100
h_sum 0.3
h_count 100
`

func TestParseMetrics(t *testing.T) {
	ss, err := parseMetrics(strings.NewReader(metricsText))
	if err != nil {
		t.Fatal(err)
	}
	if got := sum(ss, "kubelvs_agent_netlink_requests_total"); got != 10004 {
		t.Errorf("sum = %v", got)
	}
	if got := sum(ss, "kubelvs_agent_netlink_requests_total", `kind="write"`); got != 3 {
		t.Errorf("writes = %v", got)
	}
	if got := sum(ss, "h_count"); got != 100 {
		t.Errorf("h_count = %v", got)
	}
	if q, n := histQuantile(ss, "h", 0.5); q != 0.004 || n != 100 {
		t.Errorf("p50 bucket %v of %v", q, n)
	}
	if q, _ := histQuantile(ss, "h", 0.99); q != 0.008 {
		t.Errorf("p99 bucket %v", q)
	}
	if q, _ := histQuantile(ss, "h", 0.3); q != 0.002 {
		t.Errorf("p30 bucket %v", q)
	}
	if q, n := histQuantile(ss, "missing", 0.5); q != 0 || n != 0 {
		t.Errorf("missing histogram: %v %v", q, n)
	}
	over, _ := parseMetrics(strings.NewReader("o_bucket{le=\"1\"} 1\no_bucket{le=\"+Inf\"} 10\n"))
	if q, _ := histQuantile(over, "o", 0.99); !math.IsInf(q, 1) {
		t.Errorf("overflow bucket: %v", q)
	}
	if _, err := parseMetrics(strings.NewReader("novalue\n")); err == nil {
		t.Error("bad line accepted")
	}
}

func TestMarkdown(t *testing.T) {
	got := markdown([]string{"a", "b"}, [][]string{{"x", "1"}, {"y", "22"}})
	want := "| a | b |\n| --- | ---: |\n| x | 1 |\n| y | 22 |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{secs(1500 * time.Microsecond), "1.5 ms"}, {secs(2500 * time.Millisecond), "2.50 s"},
		{ratio(3*time.Second, 2*time.Second), "1.50×"}, {ratio(5*time.Second, 10*time.Millisecond), "500×"},
		{ratio(1, 0), "n/a"}, {verdict(true), "met"}, {verdict(false), "MISSED"},
		{mib(150 << 20), "150 MiB"}, {bound(0.016), "≤ 16.0 ms"}, {bound(math.Inf(1)), "> max bucket"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestNames(t *testing.T) {
	if vsAddr(0) != netip.MustParseAddr("172.16.0.0") || vsAddr(257) != netip.MustParseAddr("172.16.1.1") {
		t.Error("vsAddr")
	}
	if vsIndex(vsAddr(9999)) != 9999 {
		t.Error("vsIndex")
	}
	if epAddr(0, 0) != netip.MustParseAddr("10.0.0.1") || epAddr(1, 9) != netip.MustParseAddr("10.0.0.26") {
		t.Errorf("epAddr %v %v", epAddr(0, 0), epAddr(1, 9))
	}
	if swap(3, epAddr(3, 0)) != epAddr(3, altSlot) || swap(3, epAddr(3, altSlot)) != epAddr(3, 0) {
		t.Error("swap")
	}
	seen := map[int]bool{}
	for k := range 1000 {
		seen[changeTarget(k, 1000)] = true
	}
	if len(seen) != 1000 {
		t.Errorf("changeTarget hits %d of 1000", len(seen))
	}
	if sliceName(7) != "svc-00007-ipv4" || vsName(7) != "vs-00007" {
		t.Error("names")
	}
}

func TestReport(t *testing.T) {
	r := &results{
		changes: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, resyncs: []time.Duration{5 * time.Second},
		converge: 10 * time.Second, apply: 5 * time.Second, informers: 3 * time.Second, tableRead: 4 * time.Second,
		restartReady: 4 * time.Second, auditTime: 4 * time.Second, idleWindow: time.Minute, rssConverged: 100 << 20,
	}
	out := report(&options{vs: 10, dests: 10}, r)
	for _, want := range []string{"| one EndpointSlice change to kernel, p99 | 20.0 ms | full resync 5.00 s | 250× faster | p99 < 50 ms; ≥ 100× faster | met |",
		"| 1.25× | ≤ 1.5× | met |", "| idle: netlink requests over 1m0s (audit period 0s) | 0 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
