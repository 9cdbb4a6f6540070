package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/netns"
)

// httpClient makes one connection per request from inside the node's namespace. Connections
// close with a reset (linger 0): no TIME_WAIT entry keeps a drained destination waiting.
func httpClient(n *node) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := netns.Do(n.netns, func() (err error) {
			dl := net.Dialer{Timeout: 5 * time.Second}
			c, err = dl.DialContext(ctx, network, addr)
			return err
		})
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		return c, err
	}}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// get sends GET url and returns the pod that answered, counted in Result.Sent.
func (d *Demo) get(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("demo: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	who := resp.Header.Get("X-Pod")
	d.sent(who)
	return who, nil
}

// webWeights are the weights of web's backends once the canary is in (reference weight 2).
var webWeights = map[string]int{"web-1": 1, "web-2": 1, "web-canary-1": 2}

func (d *Demo) stepWeights(ctx context.Context) error {
	d.begin("A canary with twice the weight",
		"A second Service web-canary (one pod, web-canary-1) joins web as a second backendRef with\n"+
			"weight 2. The agents change the table in place: one destination added per node, nothing\n"+
			"re-created.")
	if err := ensureService(ctx, d.c, "web-canary"); err != nil {
		return err
	}
	b, err := d.addBackend(ctx, "web-canary-1", "web-canary", 3)
	if err != nil {
		return err
	}
	if err := setSlice(ctx, d.c, "web-canary", b.endpoint(true, false)); err != nil {
		return err
	}
	d.printf("$ kubectl patch lvs web --type merge -p '{\"spec\":{\"backendRefs\":[{\"name\":\"web\"},{\"name\":\"web-canary\",\"weight\":2}]}}'\n")
	var vs v1alpha1.VirtualService
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: "web"}, &vs); err != nil {
		return fmt.Errorf("demo: get web: %w", err)
	}
	patch := client.MergeFrom(vs.DeepCopy())
	vs.Spec.BackendRefs = []v1alpha1.BackendRef{{Name: "web"}, {Name: "web-canary", Weight: ptr.To[int32](2)}}
	if err := d.c.Patch(ctx, &vs, patch); err != nil {
		return fmt.Errorf("demo: patch web: %w", err)
	}
	want := map[string]uint32{"10.244.1.2": 1, "10.244.2.2": 1, "10.244.3.2": 2}
	err = eventually(ctx, "n1's web destinations with the canary", time.Minute, func() error {
		ds, err := d.webDests(ctx, "n1")
		if err != nil {
			return err
		}
		got := map[string]uint32{}
		for a, x := range ds {
			got[a] = x.Weight
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("weights %v, want %v", got, want)
		}
		d.res.Weights = got
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := d.waitProgrammed(ctx, "web", "2/2"); err != nil {
		return err
	}
	d.printf("  n1: TCP 192.0.2.10:80 -> 10.244.1.2:8080 w1 (web-1), 10.244.2.2:8080 w1 (web-2), 10.244.3.2:8080 w2 (web-canary-1)\n")
	return nil
}

func (d *Demo) stepSpread(ctx context.Context) error {
	d.begin(fmt.Sprintf("%d HTTP requests through the VIP", d.opts.Requests),
		"Each request is a new TCP connection from n1 to http://192.0.2.10/, scheduled by the kernel's\n"+
			"weighted round robin; the answer names the pod. Expected: each backend's weight over the sum.")
	hc := httpClient(d.nodes[0])
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	jobs := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				who, err := d.get(ctx, hc, "http://192.0.2.10/")
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					continue
				}
				mu.Lock()
				counts[who]++
				mu.Unlock()
			}
		}()
	}
	for i := range d.opts.Requests {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	d.res.Spread = nil
	for _, name := range []string{"web-1", "web-2", "web-canary-1"} {
		d.res.Spread = append(d.res.Spread, Share{Backend: name, Weight: webWeights[name], Requests: counts[name]})
	}
	for who := range counts {
		if _, ok := webWeights[who]; !ok {
			return fmt.Errorf("demo: %d requests answered by %q, not a web backend", counts[who], who)
		}
	}
	writeSpread(d.out, d.res.Spread)
	return nil
}

// download is a long download through the VIP that landed on one backend.
type download struct {
	backend string
	want    int64
	got     chan int64
}

// startDownload starts downloads through the VIP until one lands on backend (others are cut
// off at once) and returns it running.
func (d *Demo) startDownload(ctx context.Context, hc *http.Client, backend string, kib, ms int) (*download, error) {
	url := fmt.Sprintf("http://192.0.2.10/download?kib=%d&ms=%d", kib, ms)
	for range 12 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("demo: download: %w", err)
		}
		who := resp.Header.Get("X-Pod")
		d.sent(who)
		if who != backend {
			resp.Body.Close()
			continue
		}
		dl := &download{backend: backend, want: resp.ContentLength, got: make(chan int64, 1)}
		go func() {
			defer resp.Body.Close()
			n, _ := io.Copy(io.Discard, resp.Body)
			dl.got <- n
		}()
		return dl, nil
	}
	return nil, fmt.Errorf("demo: no download reached %s in 12 tries", backend)
}

func (d *Demo) stepDrain(ctx context.Context) error {
	d.begin("Scale web-2 away while a download from it runs",
		"A 2 MiB download through the VIP lands on web-2 (about 10 s, 16 KiB every 80 ms). Then web-2\n"+
			"is deleted: the EndpointSlice marks it terminating, and the agent sets its weight to 0\n"+
			"instead of removing it: new connections go elsewhere, the download goes on. When the pod\n"+
			"is gone and its last connection closed, the destination leaves the table.")
	hc := httpClient(d.nodes[0])
	dl, err := d.startDownload(ctx, hc, "web-2", 2048, 80)
	if err != nil {
		return err
	}
	d.res.Drain = DrainResult{Backend: "web-2", Want: dl.want}
	d.printf("  download from web-2 running (%d bytes)\n", dl.want)
	d.printf("$ kubectl delete pod web-2   # the EndpointSlice controller marks its endpoint terminating\n")
	if err := deletePod(ctx, d.c, "web-2", 30); err != nil {
		return err
	}
	b1, b2 := d.backends["web-1"], d.backends["web-2"]
	if err := setSlice(ctx, d.c, "web", b1.endpoint(true, false), b2.endpoint(false, true)); err != nil {
		return err
	}
	if err := d.waitWeight(ctx, b2.addr(), 0); err != nil {
		return err
	}
	d.printf("  n1: 10.244.2.2:8080 weight 0, %d active connection (the download)\n", d.res.Drain.ActiveConns)
	if err := d.requestsWhileDraining(ctx, hc, dl); err != nil {
		return err
	}
	return d.finishDrain(ctx, dl, b1, b2)
}

// waitWeight waits until n1's web destination addr has weight w and records it.
func (d *Demo) waitWeight(ctx context.Context, addr string, w uint32) error {
	return eventually(ctx, "n1's "+addr+" at weight "+strconv.Itoa(int(w)), time.Minute, func() error {
		ds, err := d.webDests(ctx, "n1")
		if err != nil {
			return err
		}
		x, ok := ds[addr]
		if !ok || x.Weight != w {
			return fmt.Errorf("destination %s: %+v (present %v)", addr, x, ok)
		}
		d.res.Drain.Weight, d.res.Drain.ActiveConns = x.Weight, x.ActiveConns
		return nil
	})
}

// requestsWhileDraining sends new requests while the download runs and counts the ones the
// draining backend got.
func (d *Demo) requestsWhileDraining(ctx context.Context, hc *http.Client, dl *download) error {
	counts := map[string]int{}
	for range 20 {
		who, err := d.get(ctx, hc, "http://192.0.2.10/")
		if err != nil {
			return err
		}
		counts[who]++
	}
	d.res.Drain.NewRequests, d.res.Drain.NewToDraining = 20, counts[dl.backend]
	d.printf("  20 new requests meanwhile: %s\n", formatCounts(counts))
	return nil
}

func (d *Demo) finishDrain(ctx context.Context, dl *download, b1, b2 *backend) error {
	select {
	case n := <-dl.got:
		d.res.Drain.Got = n
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("demo: the download from %s did not end within 2 min", dl.backend)
	}
	d.printf("  the download finished: %d of %d bytes\n", d.res.Drain.Got, dl.want)
	// The pod's containers exit; the kubelet confirms the deletion; the endpoint goes.
	b2.stop()
	if err := deletePod(ctx, d.c, b2.name, 0); err != nil {
		return err
	}
	if err := setSlice(ctx, d.c, "web", b1.endpoint(true, false)); err != nil {
		return err
	}
	start := time.Now()
	err := eventually(ctx, "web-2 out of n1's table", 2*time.Minute, func() error {
		ds, err := d.webDests(ctx, "n1")
		if err != nil {
			return err
		}
		if _, ok := ds[b2.addr()]; ok {
			return fmt.Errorf("10.244.2.2:8080 still there: %+v", ds[b2.addr()])
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.res.Drain.Removed, d.res.Drain.After = true, time.Since(start)
	d.printf("  pod web-2 gone; 10.244.2.2:8080 left n1's table %s later (no connections left)\n", d.res.Drain.After.Round(time.Second))
	return nil
}

func formatCounts(counts map[string]int) string {
	var parts []string
	for _, name := range []string{"web-1", "web-2", "web-canary-1"} {
		parts = append(parts, fmt.Sprintf("%s %d", name, counts[name]))
	}
	return strings.Join(parts, ", ")
}

// The metrics the metrics step shows.
var shownMetrics = []string{
	"kubelvs_ipvs_real_server_connections_total", "kubelvs_ipvs_service_connections_total",
	"kubelvs_ipvs_service_bytes_out_total", "kubelvs_ipvs_real_server_weight",
}

func (d *Demo) stepMetrics(ctx context.Context) error {
	d.begin("The agent's metrics on n1",
		"The kernel's 64-bit counters of the services the agent owns, read at scrape time, and the\n"+
			"agent's own counters: the netlink requests it sent and the IPVS operations it applied.")
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", d.nodes[0].metrics)
	d.printf("$ curl -s %s | grep -E 'web|netlink_requests|ipvs_operations'\n", url)
	// IPVS counters move when its estimator runs (every 2 s): wait until the connections of
	// the spread step are counted.
	d.res.Connections = map[string]float64{}
	var lines []string
	err := eventually(ctx, "the connections in the metrics", 30*time.Second, func() error {
		var err error
		lines, err = d.scrape(ctx, url)
		if err != nil {
			return err
		}
		d.res.Connections = realServerConnections(lines)
		for _, name := range []string{"web-1", "web-canary-1"} {
			addr := d.backends[name].addr() + ":8080"
			if got, want := d.res.Connections[addr], float64(d.sentTo(name)); got != want {
				return fmt.Errorf("%s: %v connections counted, %v sent", addr, got, want)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.res.Metrics = lines
	for _, l := range lines {
		d.printf("%s\n", l)
	}
	d.printf("\n  The kernel counted every connection the demo made: web-1 %d, web-canary-1 %d (web-2 left the table).\n",
		d.sentTo("web-1"), d.sentTo("web-canary-1"))
	return nil
}

// sent counts a request answered by pod.
func (d *Demo) sent(pod string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.res.Sent == nil {
		d.res.Sent = map[string]int{}
	}
	d.res.Sent[pod]++
}

func (d *Demo) sentTo(pod string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.res.Sent[pod]
}

func (d *Demo) scrape(ctx context.Context, url string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("demo: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	lines := metricLines(strings.NewReader(string(body)), shownMetrics, `name="web"`)
	lines = append(lines, metricLines(strings.NewReader(string(body)),
		[]string{"kubelvs_agent_netlink_requests_total", "kubelvs_agent_ipvs_operations_total"})...)
	return lines, nil
}

// realServerConnections sums kubelvs_ipvs_real_server_connections_total by real_server label.
func realServerConnections(lines []string) map[string]float64 {
	out := map[string]float64{}
	for _, l := range lines {
		if !strings.HasPrefix(l, "kubelvs_ipvs_real_server_connections_total{") {
			continue
		}
		i := strings.Index(l, `real_server="`)
		if i < 0 {
			continue
		}
		rs := l[i+len(`real_server="`):]
		j := strings.IndexByte(rs, '"')
		if j < 0 {
			continue
		}
		rs = rs[:j]
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err == nil {
			out[rs] += v
		}
	}
	return out
}
