//go:build ipvsvm

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/netns"
)

func ipcmd(t *testing.T, args ...string) {
	t.Helper()
	sh(t, "/sbin/ip", args...)
}

// backendPod makes a "pod": namespace pod behind a veth from node, address 10.20.<n>.2, default
// route to the node (10.20.<n>.1), serving TCP 8080: each connection gets "<pod>\n" and then
// its lines echoed.
func backendPod(t *testing.T, node, pod string, n int) string {
	t.Helper()
	addr := podNetns(t, node, pod, n)
	serve(t, pod, ":8080", pod)
	return addr
}

// podNetns makes the network of a "pod": namespace pod behind a veth from node, address
// 10.20.<n>.2 (returned), default route to the node (10.20.<n>.1).
func podNetns(t *testing.T, node, pod string, n int) string {
	t.Helper()
	_, addr := vethNS(t, node, pod, "v-"+pod, fmt.Sprintf("10.20.%d", n))
	return addr
}

// vethNS makes namespace ns behind a veth from node (the node's end is link): ns is
// <net>.2/24 with its default route to the node's <net>.1. It returns both addresses.
func vethNS(t *testing.T, node, ns, link, net string) (nodeAddr, nsAddr string) {
	t.Helper()
	nodeAddr, nsAddr = net+".1", net+".2"
	ipcmd(t, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("/sbin/ip", "netns", "del", ns).Run() })
	ipcmd(t, "-n", node, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
	ipcmd(t, "-n", node, "addr", "add", nodeAddr+"/24", "dev", link)
	ipcmd(t, "-n", node, "link", "set", link, "up")
	ipcmd(t, "-n", ns, "link", "set", "lo", "up")
	ipcmd(t, "-n", ns, "addr", "add", nsAddr+"/24", "dev", "eth0")
	ipcmd(t, "-n", ns, "link", "set", "eth0", "up")
	ipcmd(t, "-n", ns, "route", "add", "default", "via", nodeAddr)
	return nodeAddr, nsAddr
}

// vipOnNode puts a VIP on the node namespace's lo, so that clients in the node reach IPVS.
func vipOnNode(t *testing.T, node, vip string) {
	t.Helper()
	ipcmd(t, "-n", node, "addr", "add", vip+"/32", "dev", "lo")
	t.Cleanup(func() { _ = exec.Command("/sbin/ip", "-n", node, "addr", "del", vip+"/32", "dev", "lo").Run() })
}

// dial connects from inside node to addr and returns the connection and the backend's name.
func dial(node, addr string) (c net.Conn, who string, err error) {
	err = netns.Do(node, func() (err error) {
		c, who, err = dialHere(addr)
		return err
	})
	return c, who, err
}

// dialHere connects from the calling thread's namespace to addr and returns the connection and
// the backend's name.
func dialHere(addr string) (net.Conn, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("read greeting: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, strings.TrimSpace(line), nil
}

// echo sends a line on c and waits for it back.
func echo(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != msg {
		return fmt.Errorf("echo %q came back as %q", msg, line)
	}
	return nil
}

func podSlice(ns, name string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

// 9. Real TCP traffic to a VIP reaches the backends in proportion to their weights and moves
// the metrics.
func TestTrafficFollowsWeights(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	a1, a2 := backendPod(t, "n1", "w1", 1), backendPod(t, "n1", "w2", 2)
	vipOnNode(t, "n1", "192.0.2.90")
	must(t, k8s.Create(ctx, &v1alpha1.BackendPool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool"}, Spec: v1alpha1.BackendPoolSpec{
		Servers: []v1alpha1.RealServer{{Address: a1, Weight: ptr.To[int32](1)}, {Address: a2, Weight: ptr.To[int32](3)}}}}))
	vs := virtualService(ns, "weighted", []string{"192.0.2.90"}, 80, v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: "pool", Port: ptr.To[int32](8080)})
	vs.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}
	must(t, k8s.Create(ctx, vs))
	waitTable(t, "n1", []string{
		"-A -t 192.0.2.90:80 -s wrr",
		"-a -t 192.0.2.90:80 -r 10.20.1.2:8080 -m -w 1",
		"-a -t 192.0.2.90:80 -r 10.20.2.2:8080 -m -w 3",
	}, "192.0.2.90")
	const n = 400
	got := map[string]int{}
	for i := 0; i < n; i++ {
		c, who, err := dial("n1", "192.0.2.90:80")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.Close()
		got[who]++
	}
	// Weighted round robin is exact over whole rounds: 1 of every 4 to w1. Allow 2 % for
	// connections the scheduler saw before a weight took effect.
	if got["w1"] < n/4-8 || got["w1"] > n/4+8 || got["w1"]+got["w2"] != n {
		t.Errorf("spread %v over %d connections, want w1:w2 = 1:3 within 2%%", got, n)
	}
	eventually(t, "the connection metrics", 15*time.Second, func() error {
		c1 := nodes["n1"].metric(t, "kubelvs_ipvs_real_server_connections_total", `real_server="10.20.1.2:8080"`)
		c2 := nodes["n1"].metric(t, "kubelvs_ipvs_real_server_connections_total", `real_server="10.20.2.2:8080"`)
		if int(c1) != got["w1"] || int(c2) != got["w2"] {
			return fmt.Errorf("metrics say %v and %v, traffic %v", c1, c2, got)
		}
		if b := nodes["n1"].metric(t, "kubelvs_ipvs_service_bytes_out_total", `name="weighted"`); b == 0 {
			return errors.New("no bytes out counted")
		}
		return nil
	})
}

// 6. A backend removed while a TCP connection is open: the connection keeps carrying data until
// it closes, then the destination goes; a stuck connection is cut off at the drain timeout.
func TestDrainKeepsConnections(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	a1, a2 := backendPod(t, "n1", "d1", 3), backendPod(t, "n1", "d2", 4)
	vipOnNode(t, "n1", "192.0.2.91")
	backendsSvc(t, ns, "web")
	es := podSlice(ns, "web", readyEP(a1), readyEP(a2))
	must(t, k8s.Create(ctx, es))
	vs := virtualService(ns, "drain", []string{"192.0.2.91"}, 80, v1alpha1.BackendRef{Name: "web"})
	vs.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}
	vs.Spec.Drain = &v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](25)}
	must(t, k8s.Create(ctx, vs))
	waitTable(t, "n1", []string{
		"-A -t 192.0.2.91:80 -s wrr",
		"-a -t 192.0.2.91:80 -r 10.20.3.2:8080 -m -w 1",
		"-a -t 192.0.2.91:80 -r 10.20.4.2:8080 -m -w 1",
	}, "192.0.2.91")
	// Open connections until one lands on d2 (round robin: within two).
	held := connTo(t, "n1", "192.0.2.91:80", "d2")
	defer held.Close()
	// d2 goes from the EndpointSlice.
	es.Endpoints = es.Endpoints[:1]
	must(t, k8s.Update(ctx, es))
	waitTable(t, "n1", []string{
		"-A -t 192.0.2.91:80 -s wrr",
		"-a -t 192.0.2.91:80 -r 10.20.3.2:8080 -m -w 1",
		"-a -t 192.0.2.91:80 -r 10.20.4.2:8080 -m -w 0",
	}, "192.0.2.91")
	for i := 0; i < 3; i++ {
		if err := echo(held, fmt.Sprintf("still here %d", i)); err != nil {
			t.Fatalf("the draining connection stopped carrying data: %v", err)
		}
		c, who, err := dial("n1", "192.0.2.91:80")
		must(t, err)
		c.Close()
		if who != "d1" {
			t.Errorf("a new connection went to the draining %s", who)
		}
		time.Sleep(time.Second)
	}
	// The connection closes (reset: no TIME_WAIT entry to wait for): the destination goes
	// before the 25 s deadline, once IPVS drops the closed connection's entry.
	if tc, ok := held.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	held.Close()
	closed := time.Now()
	waitTable(t, "n1", []string{"-A -t 192.0.2.91:80 -s wrr", "-a -t 192.0.2.91:80 -r 10.20.3.2:8080 -m -w 1"}, "192.0.2.91")
	t.Logf("the destination went %s after its last connection closed", time.Since(closed).Round(time.Second))

	// A stuck connection: d1 drains with a connection that never closes; at the deadline the
	// destination goes, and expire_nodest_conn cuts the connection off.
	stuck, who, err := dial("n1", "192.0.2.91:80")
	must(t, err)
	defer stuck.Close()
	if who != "d1" {
		t.Fatalf("connected to %s, want d1", who)
	}
	vs2 := &v1alpha1.VirtualService{}
	must(t, k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "drain"}, vs2))
	vs2.Spec.Drain.TimeoutSeconds = ptr.To[int32](5)
	must(t, k8s.Update(ctx, vs2))
	es.Endpoints = nil
	must(t, k8s.Update(ctx, es))
	start := time.Now()
	waitTable(t, "n1", []string{"-A -t 192.0.2.91:80 -s wrr"}, "192.0.2.91")
	if d := time.Since(start); d < 4*time.Second {
		t.Errorf("the stuck destination went after %s, before its 5 s drain timeout", d)
	}
	if err := echo(stuck, "anyone?"); err == nil {
		t.Errorf("the stuck connection still carries data after its destination was removed")
	}
}

func readyEP(addr string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
}

// 7. The API server unreachable: the table stays, traffic flows and a drain in progress ends;
// when the server is back, changes are programmed again.
func TestAPIServerUnreachable(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	a1, a2 := backendPod(t, "n1", "u1", 5), backendPod(t, "n1", "u2", 6)
	vipOnNode(t, "n1", "192.0.2.92")
	backendsSvc(t, ns, "web")
	es := podSlice(ns, "web", readyEP(a1), readyEP(a2))
	must(t, k8s.Create(ctx, es))
	vs := virtualService(ns, "outage", []string{"192.0.2.92"}, 80, v1alpha1.BackendRef{Name: "web"})
	vs.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}
	vs.Spec.Drain = &v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](8)}
	must(t, k8s.Create(ctx, vs))
	both := []string{
		"-A -t 192.0.2.92:80 -s wrr",
		"-a -t 192.0.2.92:80 -r 10.20.5.2:8080 -m -w 1",
		"-a -t 192.0.2.92:80 -r 10.20.6.2:8080 -m -w 1",
	}
	waitTable(t, "n1", both, "192.0.2.92")
	// A drain starts (u2 terminates) with a connection held open, then the API server goes away.
	held := connTo(t, "n1", "192.0.2.92:80", "u2")
	defer held.Close()
	es.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	must(t, k8s.Update(ctx, es))
	waitTable(t, "n1", []string{both[0], both[1], "-a -t 192.0.2.92:80 -r 10.20.6.2:8080 -m -w 0"}, "192.0.2.92")
	ipcmd(t, "link", "set", "eth0", "down")
	down := true
	defer func() {
		if down {
			_ = exec.Command("/sbin/ip", "link", "set", "eth0", "up").Run()
		}
	}()
	for i := 0; i < 5; i++ {
		c, who, err := dial("n1", "192.0.2.92:80")
		if err != nil {
			t.Fatalf("traffic stopped while the API server is unreachable: %v", err)
		}
		c.Close()
		if who != "u1" {
			t.Errorf("a new connection went to the draining %s", who)
		}
	}
	// The drain ends at its deadline although the agent cannot reach the API server.
	waitTable(t, "n1", both[:2], "192.0.2.92")
	ipcmd(t, "link", "set", "eth0", "up")
	down = false
	// Back: u2 is ready again and is programmed at its weight.
	eventually(t, "the API server reachable again", waitLong, func() error {
		es.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(true)}
		var cur discoveryv1.EndpointSlice
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: es.Name}, &cur); err != nil {
			return err
		}
		cur.Endpoints = es.Endpoints
		return k8s.Update(ctx, &cur)
	})
	waitTable(t, "n1", both, "192.0.2.92")
}

// connTo opens connections from node to vip until one lands on backend (round robin: within
// a few) and returns it; the others are closed.
func connTo(t *testing.T, node, vip, backend string) net.Conn {
	t.Helper()
	for range 4 {
		c, who, err := dial(node, vip)
		must(t, err)
		if who == backend {
			return c
		}
		c.Close()
	}
	t.Fatalf("no connection from %s to %s reached %s", node, vip, backend)
	return nil
}
