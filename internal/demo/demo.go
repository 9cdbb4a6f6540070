package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/kubeletcg"
	"github.com/kubelvs/kubelvs/internal/testenv"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Options configures a demo.
type Options struct {
	// Kubeconfig reaches the API server (the CRDs installed); the agents and the controller use it.
	Kubeconfig string
	// Kubelvs is the kubelvs binary.
	Kubelvs string
	// Samples is the directory of config/samples.
	Samples string
	// Out receives the narration.
	Out io.Writer
	// Requests is the number of requests of the spread step (default 1,000).
	Requests int
}

// The demo's fixed names: nodes n1 (zone a, lb=true) and n2 (zone b), and the web VIP of
// config/samples/web.yaml.
var (
	nodeNames  = []string{"n1", "n2"}
	nodeLabels = map[string]map[string]string{"n1": {"zone": "a", "lb": "true"}, "n2": {"zone": "b"}}
	webVIP     = netip.MustParseAddr("192.0.2.10")
)

// Demo is a running demo cluster.
type Demo struct {
	opts       Options
	out        io.Writer
	cfg        *rest.Config
	c          client.Client
	logDir     string
	nodes      []*node
	controller *proc
	backends   map[string]*backend
	ipvs       map[string]*ipvs.Client
	netns      []string // created, deleted by Close in reverse
	cg         *kubeletcg.Tree
	podProcs   []*proc // every process started in a pod's cgroup
	step, of   int
	mu         sync.Mutex // guards res.Sent
	res        Result
}

// Result is what the steps observed (the ipvsvm test asserts it).
type Result struct {
	// Applied lists the sample objects applied, as kubectl names them.
	Applied []string
	// Nodes is each VirtualService's status.nodes.summary once programmed.
	Nodes map[string]string
	// Tables is the `kubectl get lvs,ipvsnodes -A` output.
	Tables string
	// IPVS is `kubelvs ipvs list` of node n1.
	IPVS string
	// Weights are n1's destinations of the web VIP and their weights after the canary step.
	Weights map[string]uint32
	// Spread is the spread of the requests over the web backends.
	Spread []Share
	Drain  DrainResult
	// Connections is kubelvs_ipvs_real_server_connections_total of web's real servers on n1.
	Connections map[string]float64
	// Metrics are the metric lines shown.
	Metrics []string
	// TaskDelays are the kubelvs.io/TaskDelays conditions of the CPU-starved pod (Starved) and
	// of the other (Calm) as the task delays step read them.
	TaskDelays TaskDelaysResult
	// Sent counts the HTTP responses by the pod that answered (every connection the demo made
	// through the VIP).
	Sent map[string]int
}

// TaskDelaysResult is what the task delays step saw.
type TaskDelaysResult struct {
	Starved, Calm         string // the pods' names
	Probe                 string // `kubelvs taskstats --probe`
	StarvedCond, CalmCond corev1.PodCondition
}

// DrainResult is what the drain step saw.
type DrainResult struct {
	Backend string
	// Want and Got are the download's size and what arrived.
	Want, Got int64
	// Weight and ActiveConns are the draining destination's while the download ran.
	Weight, ActiveConns uint32
	// NewToDraining counts the new requests during the drain that reached the draining backend.
	NewToDraining, NewRequests int
	// Removed: the destination left n1's table after the download; After is how long that took.
	Removed bool
	After   time.Duration
}

// Start makes the two nodes (network namespaces, Node objects), starts the controller and an
// agent per node. Close undoes it, also after an error.
func Start(ctx context.Context, opts Options) (*Demo, error) {
	if opts.Requests == 0 {
		opts.Requests = 1000
	}
	d := &Demo{opts: opts, out: opts.Out, backends: map[string]*backend{}, ipvs: map[string]*ipvs.Client{}, of: 10}
	if d.out == nil {
		d.out = io.Discard
	}
	var err error
	if d.cfg, err = clientcmd.BuildConfigFromFlags("", opts.Kubeconfig); err != nil {
		return d, fmt.Errorf("demo: kubeconfig: %w", err)
	}
	if d.c, err = client.New(d.cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return d, fmt.Errorf("demo: client: %w", err)
	}
	if d.logDir, err = os.MkdirTemp("", "kubelvs-demo-"); err != nil {
		return d, err
	}
	d.begin("A two-node cluster on one machine",
		"Two network namespaces are the nodes n1 (zone=a, lb=true) and n2 (zone=b), each with its own IPVS\n"+
			"table and its own `kubelvs agent`; `kubelvs controller` resolves backends and writes status.\n"+
			"The API server is envtest's kube-apiserver and etcd: no kubelet, so the demo registers its\n"+
			"pods and EndpointSlices itself, as the kubelet and the EndpointSlice controller would.")
	for i, name := range nodeNames {
		n := &node{name: name, netns: "lvsdemo-" + name, labels: nodeLabels[name], metrics: 9760 + 10*i, probe: 9761 + 10*i}
		d.nodes = append(d.nodes, n)
		if err := d.addNetns(n.netns); err != nil {
			return d, err
		}
		if err := ensureNode(ctx, d.c, name, n.labels); err != nil {
			return d, err
		}
		if err := d.openIPVS(ctx, n); err != nil {
			return d, err
		}
	}
	if d.cg, err = kubeletcg.New("kubelvs-demo"); err != nil {
		return d, err
	}
	if err := d.startController(); err != nil {
		return d, err
	}
	for _, n := range d.nodes {
		if err := d.startAgent(n); err != nil {
			return d, err
		}
		d.printf("  node %s: netns %s, agent ready (metrics on 127.0.0.1:%d)\n", n.name, n.netns, n.metrics)
	}
	d.printf("  controller running; logs in %s\n", d.logDir)
	d.printf("  pod cgroups under %s (the agents' --cgroup-root)\n", d.cg.Root)
	return d, nil
}

func (d *Demo) addNetns(name string) error {
	if err := addNetns(name); err != nil {
		return err
	}
	d.netns = append(d.netns, name)
	return nil
}

func (d *Demo) openIPVS(ctx context.Context, n *node) error {
	f, err := os.Open(n.netnsPath())
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer f.Close()
	c, err := ipvs.New(ctx, &ipvs.Config{NetNS: int(f.Fd())})
	if err != nil {
		return fmt.Errorf("demo: IPVS in %s: %w", n.netns, err)
	}
	d.ipvs[n.name] = c
	return nil
}

// Close stops the agents and the controller, the backends' servers, and deletes every network
// namespace the demo made. The API objects stay (the API server is the caller's).
func (d *Demo) Close() error {
	for _, b := range d.backends {
		b.stop()
	}
	for _, n := range d.nodes {
		n.agent.stop()
	}
	d.controller.stop()
	for _, c := range d.ipvs {
		_ = c.Close()
	}
	var errs []error
	for _, p := range d.podProcs {
		p.stop()
	}
	if err := d.cg.Close(); err != nil {
		errs = append(errs, err)
	}
	for i := len(d.netns) - 1; i >= 0; i-- {
		if err := ipcmd("netns", "del", d.netns[i]); err != nil {
			errs = append(errs, err)
		}
	}
	d.netns = nil
	return errors.Join(errs...)
}

// Netns lists the network namespaces the demo made and has not deleted yet.
func (d *Demo) Netns() []string { return append([]string(nil), d.netns...) }

// Procs lists the pids of the demo's child processes: the controller, the agents and the pods'
// processes.
func (d *Demo) Procs() []int {
	var pids []int
	for _, p := range append(append([]*proc{d.controller}, d.agents()...), d.podProcs...) {
		if p != nil && p.cmd.Process != nil {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return pids
}

func (d *Demo) agents() []*proc {
	var ps []*proc
	for _, n := range d.nodes {
		ps = append(ps, n.agent)
	}
	return ps
}

// Run runs the steps after Start and returns what they saw.
func (d *Demo) Run(ctx context.Context) (*Result, error) {
	steps := []func(context.Context) error{
		d.stepSamples, d.stepBackends, d.stepGet, d.stepIPVS, d.stepWeights, d.stepSpread,
		d.stepDrain, d.stepTaskDelays, d.stepMetrics,
	}
	for _, s := range steps {
		if err := s(ctx); err != nil {
			return &d.res, err
		}
		if err := d.checkProcs(); err != nil {
			return &d.res, err
		}
	}
	return &d.res, nil
}

// begin prints a step's title and what it shows.
func (d *Demo) begin(title, explain string) {
	d.step++
	d.printf("\n━━ %d/%d  %s\n", d.step, d.of, title)
	for _, l := range strings.Split(explain, "\n") {
		d.printf("   %s\n", l)
	}
	d.printf("\n")
}

func (d *Demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

// eventually retries check every 250 ms until it succeeds or timeout passes.
func eventually(ctx context.Context, what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s: not within %s: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: %s: %w", what, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// webDests reads node's destinations of the web VIP (TCP 192.0.2.10:80) from its kernel.
func (d *Demo) webDests(ctx context.Context, node string) (map[string]ipvs.Destination, error) {
	key := lvs.ServiceKey{Family: lvs.IPv4, Protocol: lvs.TCP, Address: webVIP, Port: 80}
	ds, err := d.ipvs[node].Destinations(ctx, key)
	if err != nil {
		return nil, err
	}
	out := make(map[string]ipvs.Destination, len(ds))
	for _, x := range ds {
		out[x.Address.String()] = x
	}
	return out, nil
}

// waitProgrammed waits until the VirtualService reports Programmed=True for its generation on
// the nodes wanted ("2/2") and returns it.
func (d *Demo) waitProgrammed(ctx context.Context, name, nodes string) (*v1alpha1.VirtualService, error) {
	var vs v1alpha1.VirtualService
	err := eventually(ctx, "VirtualService "+name+" programmed on "+nodes, 2*time.Minute, func() error {
		if err := d.c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: name}, &vs); err != nil {
			return err
		}
		c := meta.FindStatusCondition(vs.Status.Conditions, v1alpha1.ConditionProgrammed)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != vs.Generation {
			return fmt.Errorf("condition Programmed %+v", c)
		}
		if vs.Status.Nodes == nil || vs.Status.Nodes.Summary != nodes {
			return fmt.Errorf("nodes %+v", vs.Status.Nodes)
		}
		return nil
	})
	return &vs, err
}

// run runs a command and returns its output.
func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("demo: %s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Watch prints a node's IPVS table (`kubelvs ipvs list`) each time its configuration changes
// (services, destinations, weights; not the connection counts), until ctx ends: the user's own
// VirtualServices show up as they are programmed.
func (d *Demo) Watch(ctx context.Context) error {
	last := map[string]string{}
	for {
		if err := d.checkProcs(); err != nil {
			return err
		}
		for _, n := range d.nodes {
			conf, err := d.tableConfig(ctx, n.name)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if _, seen := last[n.name]; seen && conf != last[n.name] {
				out, err := run(d.opts.Kubelvs, "ipvs", "--netns", n.netnsPath(), "list")
				if err != nil {
					return err
				}
				d.printf("\n%s  %s's IPVS table changed:\n%s", time.Now().Format("15:04:05"), n.name, out)
			}
			last[n.name] = conf
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// tableConfig renders the configuration of a node's IPVS table (no counters), to compare.
func (d *Demo) tableConfig(ctx context.Context, node string) (string, error) {
	t, err := d.ipvs[node].Table(ctx)
	if err != nil {
		return "", fmt.Errorf("demo: read %s's IPVS table: %w", node, err)
	}
	var b strings.Builder
	for _, e := range t {
		fmt.Fprintf(&b, "%+v\n", e.Service.Service)
		for _, x := range e.Destinations {
			fmt.Fprintf(&b, "  %+v\n", x.Destination)
		}
	}
	return b.String(), nil
}
