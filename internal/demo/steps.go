package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// sampleNotes says, per VirtualService of config/samples, what the demo shows of it and what
// it lacks for real traffic. All of them are applied and programmed.
var sampleNotes = map[string]string{
	"web":    "real backends below: traffic, weights and a drain",
	"api":    "Maglev, dual-stack, nodeSelector lb=true: programmed on n1 only; no api pods here, so no real servers",
	"legacy": "IPIP tunnels to servers outside the cluster (documentation addresses): programmed, no traffic (they do not exist)",
	"dns":    "UDP one-packet scheduling: programmed; no DNS pods here, so no real servers",
	"marked": "firewall mark 16, direct routing to web's pods: programmed; traffic would need nftables marking and DSR backends",
}

// The nodes each sample's VirtualService is programmed on ("programmed/selected").
var sampleNodes = map[string]string{"web": "2/2", "api": "1/1", "legacy": "2/2", "dns": "2/2", "marked": "2/2"}

func (d *Demo) stepSamples(ctx context.Context) error {
	d.begin("Apply config/samples",
		"The sample VirtualServices (and the Services and BackendPool they reference) go in as\n"+
			"`kubectl apply --server-side` would send them: server-side apply, field manager kubectl.")
	d.printf("$ kubectl apply --server-side -f config/samples/\n")
	files, err := filepath.Glob(filepath.Join(d.opts.Samples, "*.yaml"))
	if err != nil {
		return fmt.Errorf("demo: samples: %w", err)
	}
	if len(files) == 0 {
		return fmt.Errorf("demo: no samples in %s", d.opts.Samples)
	}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		objs, err := readObjects(f)
		if err != nil {
			return err
		}
		for _, u := range objs {
			u.SetNamespace(Namespace)
			if err := d.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kubectl"), client.ForceOwnership); err != nil {
				return fmt.Errorf("demo: apply %s %s from %s: %w", u.GetKind(), u.GetName(), f, err)
			}
			name := strings.ToLower(u.GetKind())
			if g := u.GroupVersionKind().Group; g != "" {
				name += "." + g
			}
			name += "/" + u.GetName()
			d.res.Applied = append(d.res.Applied, name)
			d.printf("%s serverside-applied\n", name)
		}
	}
	d.printf("\n")
	names := make([]string, 0, len(sampleNotes))
	for n := range sampleNotes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d.printf("  %-7s %s\n", n, sampleNotes[n])
	}
	return nil
}

// readObjects decodes the YAML documents of a file.
func readObjects(file string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("demo: decode %s: %w", file, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func (d *Demo) stepBackends(ctx context.Context) error {
	d.begin("Real backends for the web sample",
		"Two pods web-1 and web-2 on n1: each a network namespace behind a veth, with an HTTP server\n"+
			"on :8080. The demo registers them as the kubelet would (Pod, bound to n1, Running, Ready) and\n"+
			"writes the Service web's EndpointSlice as the EndpointSlice controller would. The web VIP\n"+
			"192.0.2.10 goes on n1's lo, so clients on n1 reach IPVS (binding VIPs is issue #11).")
	if err := ensureServiceAccount(ctx, d.c); err != nil {
		return err
	}
	var eps []*backend
	for i, name := range []string{"web-1", "web-2"} {
		b, err := d.addBackend(ctx, name, "web", i+1)
		if err != nil {
			return err
		}
		eps = append(eps, b)
	}
	if err := setSlice(ctx, d.c, "web", eps[0].endpoint(true, false), eps[1].endpoint(true, false)); err != nil {
		return err
	}
	d.printf("  endpointslice/web-demo: web-1 %s:8080, web-2 %s:8080 (ready, node n1)\n", eps[0].addr(), eps[1].addr())
	if err := ipcmd("-n", d.nodes[0].netns, "addr", "add", webVIP.String()+"/32", "dev", "lo"); err != nil {
		return err
	}
	d.printf("  192.0.2.10/32 on n1's lo\n")
	return nil
}

// addBackend starts a backend on n1 and registers its Pod.
func (d *Demo) addBackend(ctx context.Context, name, app string, index int) (*backend, error) {
	b := &backend{name: name, app: app, node: d.nodes[0], index: index}
	d.backends[name] = b
	d.netns = append(d.netns, "lvsdemo-"+name)
	if err := b.start(); err != nil {
		return nil, err
	}
	if err := b.register(ctx, d.c); err != nil {
		return nil, err
	}
	// The HTTP server runs in the demo's process; the pod's cgroup holds its sandbox's process
	// (as containerd's pause), which pod taskstats finds and samples.
	if _, err := d.startPodProc(b, "pause", "pause-"+name, "sleep", "86400"); err != nil {
		return nil, err
	}
	d.printf("  pod/%s on n1: netns %s, %s:8080\n", name, b.netns, b.addr())
	return b, nil
}

func (d *Demo) stepGet(ctx context.Context) error {
	d.begin("What kubectl shows",
		"The controller resolves each VirtualService's backends, the agents program their node and\n"+
			"report it in their IPVSNode; the controller sums that up in status.nodes (\"programmed/selected\").\n"+
			"api selects lb=true nodes: only n1. The tables are the ones the API server renders for\n"+
			"kubectl (the CRDs' printer columns), fetched and printed by the demo in kubectl's layout.")
	d.res.Nodes = map[string]string{}
	names := make([]string, 0, len(sampleNodes))
	for n := range sampleNodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		vs, err := d.waitProgrammed(ctx, n, sampleNodes[n])
		if err != nil {
			return err
		}
		d.res.Nodes[n] = vs.Status.Nodes.Summary
	}
	if err := d.waitWebBackends(ctx, 2); err != nil {
		return err
	}
	d.printf("$ kubectl get lvs,ipvsnodes -A\n")
	var buf bytes.Buffer
	if err := d.writeGet(ctx, &buf); err != nil {
		return err
	}
	d.res.Tables = buf.String()
	d.printf("%s\n", d.res.Tables)
	return d.printNodeEntries(ctx)
}

// waitWebBackends waits until web reports n ready backends.
func (d *Demo) waitWebBackends(ctx context.Context, n int32) error {
	return eventually(ctx, fmt.Sprintf("web with %d ready backends", n), time.Minute, func() error {
		var vs v1alpha1.VirtualService
		if err := d.c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: "web"}, &vs); err != nil {
			return err
		}
		if vs.Status.Backends == nil || vs.Status.Backends.Ready != n {
			return fmt.Errorf("backends %+v", vs.Status.Backends)
		}
		return nil
	})
}

func (d *Demo) writeGet(ctx context.Context, w io.Writer) error {
	vs, err := fetchTable(ctx, d.cfg, "/apis/kubelvs.io/v1alpha1/virtualservices")
	if err != nil {
		return err
	}
	nodes, err := fetchTable(ctx, d.cfg, "/apis/kubelvs.io/v1alpha1/ipvsnodes")
	if err != nil {
		return err
	}
	return writeTables(w, []kindTable{{Prefix: "virtualservice.kubelvs.io/", Table: vs}, {Prefix: "ipvsnode.kubelvs.io/", Table: nodes}})
}

// printNodeEntries prints each node's IPVSNode entries (status.virtualServices).
func (d *Demo) printNodeEntries(ctx context.Context) error {
	d.printf("Per node (IPVSNode status.virtualServices of the demo's namespace):\n")
	for _, n := range d.nodes {
		var in v1alpha1.IPVSNode
		if err := d.c.Get(ctx, client.ObjectKey{Name: n.name}, &in); err != nil {
			return fmt.Errorf("demo: IPVSNode %s: %w", n.name, err)
		}
		var parts []string
		for _, e := range in.Status.VirtualServices {
			if e.Namespace != Namespace {
				continue
			}
			p := e.Name + " " + string(e.State)
			if e.RealServers != nil {
				p += fmt.Sprintf(" (%d active, %d draining)", e.RealServers.Active, e.RealServers.Draining)
			}
			parts = append(parts, p)
		}
		slices.Sort(parts)
		d.printf("  %s: %s\n", n.name, strings.Join(parts, "; "))
	}
	return nil
}

func (d *Demo) stepIPVS(context.Context) error {
	d.begin("The kernel's IPVS table on n1",
		"What the agent programmed, read back from the kernel over generic netlink (n2's is the same\n"+
			"without api, which selects lb=true nodes). legacy's servers are IPIP tunnels, marked's direct\n"+
			"routing; the rest masquerade (NAT).")
	d.printf("$ kubelvs ipvs --netns %s list\n", d.nodes[0].netnsPath())
	out, err := run(d.opts.Kubelvs, "ipvs", "--netns", d.nodes[0].netnsPath(), "list")
	if err != nil {
		return err
	}
	d.res.IPVS = out
	d.printf("%s", out)
	return nil
}
