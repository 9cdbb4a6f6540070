//go:build ipvsvm

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/netns"
)

// Scenarios of the node dataplane (issue #11): the VIP interface, the packet filter, source
// NAT, direct routing with strict ARP, adoption on restart, coexistence, uninstall.

var extraNodes = 0

// newNode makes another "node": a namespace, its Node object (labels zone=zone) and, unless
// noAgent, its agent with the extra flags. It goes at the end of the test.
func newNode(t *testing.T, name, zone string, noAgent bool, extra ...string) *agentProc {
	t.Helper()
	ctx := context.Background()
	ipcmd(t, "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("/sbin/ip", "netns", "del", name).Run() })
	ipcmd(t, "-n", name, "link", "set", "lo", "up")
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"zone": zone}}}
	must(t, k8s.Create(ctx, n))
	t.Cleanup(func() { _ = k8s.Delete(ctx, n) })
	extraNodes++
	a := &agentProc{node: name, metrics: 9800 + 10*extraNodes, probe: 9801 + 10*extraNodes,
		stateDir: filepath.Join(os.TempDir(), "state-"+name), extra: extra}
	if !noAgent {
		must(t, a.start())
		t.Cleanup(a.stop)
	}
	return a
}

// clientNS makes a client namespace behind a veth from node: it is 10.30.<n>.2, the node
// 10.30.<n>.1 (its default route). The node forwards.
func clientNS(t *testing.T, node, name string, n int) string {
	t.Helper()
	nodeAddr, _ := vethNS(t, node, name, "c-"+name, fmt.Sprintf("10.30.%d", n))
	sh(t, "/sbin/ip", "netns", "exec", node, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	return nodeAddr
}

// serve accepts TCP connections on addr in namespace ns: each gets "<name>\n", then its lines
// echoed.
func serve(t *testing.T, ns, addr, name string) {
	t.Helper()
	var ln net.Listener
	must(t, netns.Do(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return err }))
	t.Cleanup(func() { ln.Close() })
	go accept(ln, name)
}

// accept serves ln until it is closed: each connection gets "<name>\n", then its lines echoed.
func accept(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "%s\n", name)
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "%s\n", sc.Text())
			}
		}()
	}
}

// vipRoutesOf lists the local routes through lo (the agent's --vip-interface) in ns, IPv4 then
// IPv6: the agent's VIPs are those of protocol 107 ("local 192.0.2.1 proto 107 scope host").
func vipRoutesOf(ns string) string {
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		out, err := exec.Command("/sbin/ip", "-n", ns, fam, "route", "show", "table", "local", "dev", "lo").CombinedOutput()
		if err == nil {
			b.Write(out)
		}
	}
	return b.String()
}

func waitBound(t *testing.T, ns, vip string, bound bool) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s routed=%v on %s", vip, bound, ns), waitLong, func() error {
		if got := strings.Contains(vipRoutesOf(ns), "local "+vip+" proto 107 "); got != bound {
			return fmt.Errorf("bound=%v:\n%s", got, vipRoutesOf(ns))
		}
		return nil
	})
}

func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return sh(t, "/sbin/ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
}

// segment makes one network segment: a bridge br in node at prefix.1/24 with a namespace per
// name on it, at prefix.2, prefix.3, ... in order, each routing through node.
func segment(t *testing.T, node, br, prefix string, names ...string) {
	t.Helper()
	ipcmd(t, "-n", node, "link", "add", br, "type", "bridge")
	ipcmd(t, "-n", node, "addr", "add", prefix+".1/24", "dev", br)
	ipcmd(t, "-n", node, "link", "set", br, "up")
	for i, name := range names {
		ipcmd(t, "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("/sbin/ip", "netns", "del", name).Run() })
		ipcmd(t, "-n", node, "link", "add", "b-"+name, "type", "veth", "peer", "name", "eth0", "netns", name)
		ipcmd(t, "-n", node, "link", "set", "b-"+name, "master", br)
		ipcmd(t, "-n", node, "link", "set", "b-"+name, "up")
		ipcmd(t, "-n", name, "link", "set", "lo", "up")
		ipcmd(t, "-n", name, "addr", "add", fmt.Sprintf("%s.%d/24", prefix, i+2), "dev", "eth0")
		ipcmd(t, "-n", name, "link", "set", "eth0", "up")
		ipcmd(t, "-n", name, "route", "add", "default", "via", prefix+".1")
	}
}

// strictARP makes a real server that has the VIP answer ARP only for its own addresses.
func strictARP(t *testing.T, ns string) {
	t.Helper()
	sh(t, "/sbin/ip", "netns", "exec", ns, "sh", "-c",
		"echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore && echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce")
}

// notMasqueraded checks that node's masquerade rules exist and counted no packet: what
// connections of the kind went through was not source-NATed.
func notMasqueraded(t *testing.T, node, what string) {
	t.Helper()
	if out := nft(t, node, "list", "chain", "inet", "kubelvs", "postrouting"); !strings.Contains(out, "masquerade") || regexp.MustCompile(`packets [1-9]`).MatchString(out) {
		t.Errorf("%s was masqueraded:\n%s", what, out)
	}
}

func poolVS(t *testing.T, ns, name, vip string, port int32, zone string, servers ...string) *v1alpha1.VirtualService {
	t.Helper()
	ctx := context.Background()
	var rs []v1alpha1.RealServer
	for _, s := range servers {
		rs = append(rs, v1alpha1.RealServer{Address: s})
	}
	must(t, k8s.Create(ctx, &v1alpha1.BackendPool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.BackendPoolSpec{Servers: rs}}))
	vs := virtualService(ns, name, []string{vip}, port, v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: name, Port: ptr.To[int32](8080)})
	vs.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": zone}}
	vs.Spec.Drain = &v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](1)}
	return vs
}

// (1) and (2): a VIP is bound and reachable from a client, host ports are not reachable at
// the VIP (only at the node's address), ping answers, IPVSNode reports it, and the VIP leaves
// the interface when its VirtualService goes.
func TestDataplaneVIPAndFilter(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	nodeAddr := clientNS(t, "n1", "c1", 31)
	backend := backendPod(t, "n1", "f1", 31)
	const vip = "192.0.2.120"
	vs := poolVS(t, ns, "filter", vip, 80, "a", backend)
	must(t, k8s.Create(ctx, vs))
	waitTable(t, "n1", []string{"-A -t " + vip + ":80 -s wrr", "-a -t " + vip + ":80 -r " + backend + ":8080 -m -w 1"}, vip)
	waitBound(t, "n1", vip, true)
	c, who, err := dial("c1", vip+":80")
	if err != nil {
		t.Fatalf("the VIP from the client: %v", err)
	}
	c.Close()
	if who != "f1" {
		t.Errorf("reached %q, want f1", who)
	}
	// A host service on every address of the node.
	serve(t, "n1", "0.0.0.0:2222", "host")
	if c, who, err := dial("c1", nodeAddr+":2222"); err != nil || who != "host" {
		t.Fatalf("the host port at the node's address: %q %v", who, err)
	} else {
		c.Close()
	}
	if c, _, err := dial("c1", vip+":2222"); err == nil {
		c.Close()
		t.Errorf("the host port 2222 answers at the VIP %s", vip)
	}
	sh(t, "/sbin/ip", "netns", "exec", "c1", "ping", "-c", "1", "-W", "5", vip)
	if n := nodes["n1"].metric(t, "kubelvs_agent_vips_bound"); n < 1 {
		t.Errorf("kubelvs_agent_vips_bound = %v", n)
	}
	// IPVSNode reports the interface, the ARP sysctls and DataplaneReady.
	eventually(t, "n1's IPVSNode dataplane status", waitLong, func() error {
		var node v1alpha1.IPVSNode
		if err := k8s.Get(ctx, types.NamespacedName{Name: "n1"}, &node); err != nil {
			return err
		}
		dp := node.Status.Dataplane
		if dp == nil || dp.VIPInterface != "lo" || dp.BoundVIPs < 1 || dp.Table != "inet kubelvs" || dp.Masquerade != "remote" {
			return fmt.Errorf("dataplane %+v", dp)
		}
		sysctls := fmt.Sprint(dp.Sysctls)
		if !strings.Contains(sysctls, "net.ipv4.conf.all.arp_ignore 1") || !strings.Contains(sysctls, "net.ipv4.conf.all.arp_announce 2") {
			return fmt.Errorf("sysctls %s", sysctls)
		}
		if c := meta.FindStatusCondition(node.Status.Conditions, v1alpha1.NodeConditionDataplaneReady); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("DataplaneReady %+v", c)
		}
		return nil
	})
	must(t, k8s.Delete(ctx, vs))
	waitBound(t, "n1", vip, false)
	waitTable(t, "n1", nil, vip)
	if out := nft(t, "n1", "list", "set", "inet", "kubelvs", "vips4"); strings.Contains(out, vip) {
		t.Errorf("vips4 still has %s:\n%s", vip, out)
	}
}

// (3) Masquerade: real servers whose default routes do not lead back to the director serve
// through a VIP only when the director source-NATs them: with --masquerade=remote (the
// default) the one outside the node's pod CIDR is and the one inside is not, with none
// neither, with all both.
func TestDataplaneMasquerade(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	a := newNode(t, "n3", "mq", true)
	var node corev1.Node
	must(t, k8s.Get(ctx, types.NamespacedName{Name: "n3"}, &node))
	node.Spec.PodCIDR, node.Spec.PodCIDRs = "10.20.33.0/24", []string{"10.20.33.0/24"}
	must(t, k8s.Update(ctx, &node))
	clientNS(t, "n3", "c3", 33)
	local := backendPod(t, "n3", "m3", 33) // in the pod CIDR
	far := backendPod(t, "n3", "m4", 34)   // outside it, as another node's pod
	// Their replies go to a gateway that is not the director (and not there).
	ipcmd(t, "-n", "m3", "route", "replace", "default", "via", "10.20.33.3")
	ipcmd(t, "-n", "m4", "route", "replace", "default", "via", "10.20.34.3")
	must(t, a.start())
	t.Cleanup(a.stop)
	const vipLocal, vipFar = "192.0.2.121", "192.0.2.123"
	must(t, k8s.Create(ctx, poolVS(t, ns, "masq", vipLocal, 80, "mq", local)))
	must(t, k8s.Create(ctx, poolVS(t, ns, "masq-far", vipFar, 80, "mq", far)))
	waitTable(t, "n3", []string{"-A -t " + vipLocal + ":80 -s wrr", "-a -t " + vipLocal + ":80 -r " + local + ":8080 -m -w 1"}, vipLocal)
	waitTable(t, "n3", []string{"-A -t " + vipFar + ":80 -s wrr", "-a -t " + vipFar + ":80 -r " + far + ":8080 -m -w 1"}, vipFar)
	waitBound(t, "n3", vipLocal, true)
	waitBound(t, "n3", vipFar, true)
	noMasq := func(want string) {
		t.Helper()
		eventually(t, "nomasq4 = "+want, waitLong, func() error {
			out := nft(t, "n3", "list", "set", "inet", "kubelvs", "nomasq4")
			if (want == "" && strings.Contains(out, "elements")) || (want != "" && !strings.Contains(out, "elements = { "+want+" }")) {
				return fmt.Errorf("nomasq4:\n%s", out)
			}
			return nil
		})
	}
	reaches := func(vip, who string) {
		t.Helper()
		c, got, err := dial("c3", vip+":80")
		if err != nil {
			t.Fatalf("%s (%s): %v", vip, who, err)
		}
		defer c.Close()
		if got != who {
			t.Errorf("%s reached %q, want %q", vip, got, who)
		}
		must(t, echo(c, "through the director"))
	}
	fails := func(vip, why string) {
		t.Helper()
		if c, who, err := dial("c3", vip+":80"); err == nil {
			c.Close()
			t.Fatalf("%s: the reply found its way (%s), %s", vip, who, why)
		}
	}
	noMasq("10.20.33.0/24")
	reaches(vipFar, "m4")
	fails(vipLocal, "but a pod of the node's pod CIDR is not masqueraded")
	if out := nft(t, "n3", "list", "chain", "inet", "kubelvs", "postrouting"); !strings.Contains(out, "counter packets 1 ") {
		t.Errorf("the masquerade rule counted other than one connection's first packet:\n%s", out)
	}
	a.stop()
	a.extra = []string{"--masquerade=none"}
	must(t, a.start())
	noMasq("0.0.0.0/0")
	fails(vipFar, "with --masquerade=none")
	a.stop()
	a.extra = []string{"--masquerade=all"}
	must(t, a.start())
	noMasq("")
	reaches(vipLocal, "m3")
}

// (4) Direct routing: the real server has the VIP on its lo and strict ARP, and answers the
// client directly; nobody answers ARP for the VIP on the shared segment, the director
// included (its VIP is a local route, no interface's address, and arp_ignore=1).
func TestDataplaneDirectRouting(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	newNode(t, "n5", "dr", false)
	const vip = "192.0.2.122"
	// One segment: the client and the real server on a bridge in the director.
	segment(t, "n5", "br0", "10.40.1", "cdr", "dr1")
	ipcmd(t, "-n", "dr1", "addr", "add", vip+"/32", "dev", "lo")
	strictARP(t, "dr1")
	serve(t, "dr1", ":8080", "dr1")
	vs := poolVS(t, ns, "dr", vip, 8080, "dr", "10.40.1.3")
	vs.Spec.Forwarding = &v1alpha1.Forwarding{Method: v1alpha1.ForwardingDirectRouting}
	must(t, k8s.Create(ctx, vs))
	waitTable(t, "n5", []string{"-A -t " + vip + ":8080 -s wrr", "-a -t " + vip + ":8080 -r 10.40.1.3:8080 -g -w 1"}, vip)
	waitBound(t, "n5", vip, true)
	c, who, err := dial("cdr", vip+":8080")
	if err != nil {
		t.Fatalf("direct routing: %v", err)
	}
	defer c.Close()
	must(t, echo(c, "direct"))
	if who != "dr1" {
		t.Errorf("reached %q", who)
	}
	// A DR destination is not masqueraded (its packets keep the VIP as their destination).
	notMasqueraded(t, "n5", "a DR connection")
	arping := func(target string) string {
		out, _ := exec.Command("/sbin/ip", "netns", "exec", "cdr", "arping", "-c", "2", "-w", "3", "-I", "eth0", target).CombinedOutput()
		return string(out)
	}
	if out := arping("10.40.1.1"); !strings.Contains(out, "Received 2 response") && !strings.Contains(out, "Received 1 response") {
		t.Fatalf("the director does not answer ARP for its own address, so the check below proves nothing:\n%s", out)
	}
	if out := arping(vip); !strings.Contains(out, "Received 0 response") {
		t.Errorf("someone answers ARP for the VIP %s:\n%s", vip, out)
	}
}

// (4) Tunnel, beside direct routing: IPVS encapsulates the client's packets in IPIP to the
// real server, which decapsulates them onto the VIP on its lo and answers the client
// directly. The masquerade rule source-NATs connections by their conntrack mark; IPVS resets
// conntrack on the packet it encapsulates, so the outer packet (to the real server's address,
// which no prefix exempts here) carries no mark and is not masqueraded: the rule counts
// nothing.
func TestDataplaneTunnel(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	newNode(t, "n7", "tun", false)
	const vip = "192.0.2.124"
	segment(t, "n7", "br1", "10.40.2", "ctun", "tun1")
	// The real server: the ipip module's tunl0 takes in every IPIP packet; the VIP is on lo.
	ipcmd(t, "-n", "tun1", "link", "set", "tunl0", "up")
	ipcmd(t, "-n", "tun1", "addr", "add", vip+"/32", "dev", "lo")
	sh(t, "/sbin/ip", "netns", "exec", "tun1", "sh", "-c",
		"for c in all default tunl0; do echo 0 > /proc/sys/net/ipv4/conf/$c/rp_filter; done")
	strictARP(t, "tun1")
	serve(t, "tun1", ":8080", "tun1")
	vs := poolVS(t, ns, "tun", vip, 8080, "tun", "10.40.2.3")
	vs.Spec.Forwarding = &v1alpha1.Forwarding{Method: v1alpha1.ForwardingTunnel, Tunnel: &v1alpha1.Tunnel{Type: v1alpha1.TunnelIPIP}}
	must(t, k8s.Create(ctx, vs))
	waitTable(t, "n7", []string{"-A -t " + vip + ":8080 -s wrr", "-a -t " + vip + ":8080 -r 10.40.2.3:8080 -i -w 1 --tun-type ipip"}, vip)
	waitBound(t, "n7", vip, true)
	c, who, err := dial("ctun", vip+":8080")
	if err != nil {
		t.Fatalf("tunnel: %v", err)
	}
	defer c.Close()
	must(t, echo(c, "through the tunnel"))
	if who != "tun1" {
		t.Errorf("reached %q", who)
	}
	// The connection went through the tunnel: the real server's tunl0 took in its packets.
	if out := sh(t, "/sbin/ip", "-n", "tun1", "-s", "link", "show", "tunl0"); !regexp.MustCompile(`RX:[^\n]*\n\s+[1-9]`).MatchString(out) {
		t.Errorf("tunl0 of the real server received nothing:\n%s", out)
	}
	notMasqueraded(t, "n7", "a tunnelled connection")
}

// (5) and (6): a restart adopts the VIP routes and the table without removing and re-adding
// them (a long TCP connection through the VIP survives it), and someone else's address and
// local route on lo and someone else's nftables table are left alone.
func TestDataplaneRestartAndCoexistence(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	clientNS(t, "n1", "c5", 35)
	backend := backendPod(t, "n1", "r5", 35)
	const vip = "192.0.2.123"
	vs := poolVS(t, ns, "restart", vip, 80, "a", backend)
	must(t, k8s.Create(ctx, vs))
	waitBound(t, "n1", vip, true)
	var held net.Conn
	eventually(t, "a connection through "+vip, waitLong, func() (err error) {
		held, _, err = dial("c5", vip+":80")
		return err
	})
	defer held.Close()
	ipcmd(t, "-n", "n1", "addr", "add", "198.51.100.9/32", "dev", "lo")
	ipcmd(t, "-n", "n1", "route", "add", "local", "198.51.100.10", "dev", "lo", "table", "local")
	nft(t, "n1", "add", "table", "inet", "other")
	nft(t, "n1", "add", "chain", "inet", "other", "in", "{ type filter hook input priority 10 ; policy accept ; }")
	t.Cleanup(func() {
		_ = exec.Command("/sbin/ip", "netns", "exec", "n1", "nft", "delete", "table", "inet", "other").Run()
	})

	nodes["n1"].kill()
	must(t, echo(held, "while the agent is down"))
	must(t, nodes["n1"].start())
	must(t, echo(held, "after the restart"))
	if n := nodes["n1"].metric(t, "kubelvs_agent_dataplane_operations_total", `operation="route_add"`); n != 0 {
		t.Errorf("the restarted agent added %v VIP routes: it should have adopted them", n)
	}
	if n := nodes["n1"].metric(t, "kubelvs_agent_dataplane_operations_total", `operation="link_ensure"`, `result="success"`); n < 1 {
		t.Errorf("the restarted agent did not check its interface (%v)", n)
	}
	// A change and an audit later (audits every 3 s), the others' things are still there.
	must(t, k8s.Delete(ctx, vs))
	waitBound(t, "n1", vip, false)
	time.Sleep(4 * time.Second)
	if routes := vipRoutesOf("n1"); !strings.Contains(routes, "local 198.51.100.9 proto kernel") || !strings.Contains(routes, "local 198.51.100.10 scope host") {
		t.Errorf("someone else's address or route left lo:\n%s", routes)
	}
	if out := nft(t, "n1", "list", "tables"); !strings.Contains(out, "table inet other") || !strings.Contains(out, "table inet kubelvs") {
		t.Errorf("tables:\n%s", out)
	}
	ipcmd(t, "-n", "n1", "addr", "del", "198.51.100.9/32", "dev", "lo")
	ipcmd(t, "-n", "n1", "route", "del", "local", "198.51.100.10", "dev", "lo", "table", "local")
}

// (7) Uninstall leaves the node as it was before the agent: addresses, routes of every table,
// nftables ruleset and IPVS table compared; someone else's IPVS service and table stay.
func TestDataplaneUninstall(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	a := newNode(t, "n4", "un", true)
	sh(t, "/sbin/ip", "netns", "exec", "n4", "ipvsadm", "-A", "-t", "198.51.100.1:80", "-s", "rr")
	nft(t, "n4", "add", "table", "inet", "other")
	snapshot := func() [5]string {
		return [5]string{sh(t, "/sbin/ip", "-n", "n4", "-j", "addr"), sh(t, "/sbin/ip", "-n", "n4", "-4", "-j", "route", "show", "table", "all"),
			sh(t, "/sbin/ip", "-n", "n4", "-6", "-j", "route", "show", "table", "all"), nft(t, "n4", "-j", "list", "ruleset"), ipvsadm(t, "n4", "-Sn")}
	}
	before := snapshot()
	must(t, a.start())
	const vip = "192.0.2.124"
	must(t, k8s.Create(ctx, poolVS(t, ns, "un", vip, 80, "un", "10.20.40.2")))
	waitTable(t, "n4", []string{"-A -t " + vip + ":80 -s wrr", "-a -t " + vip + ":80 -r 10.20.40.2:8080 -m -w 1"}, vip)
	waitBound(t, "n4", vip, true)
	if during := snapshot(); during == before {
		t.Fatal("the agent changed nothing: the comparison below proves nothing")
	}
	a.stop()
	out, err := exec.Command(kubelvs, "agent", "--uninstall", "--netns", "/run/netns/n4", "--state-dir", a.stateDir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubelvs agent --uninstall: %v\n%s", err, out)
	}
	after := snapshot()
	for i, what := range []string{"ip -j addr", "ip -4 -j route show table all", "ip -6 -j route show table all", "nft -j list ruleset", "ipvsadm -Sn"} {
		if after[i] != before[i] {
			t.Errorf("%s after uninstall:\n%s\nbefore the agent:\n%s", what, after[i], before[i])
		}
	}
	if _, err := os.Stat(filepath.Join(a.stateDir, "agent-checkpoint.json")); err == nil {
		t.Error("the checkpoint is still there")
	}
}
