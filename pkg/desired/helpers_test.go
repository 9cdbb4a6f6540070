package desired

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

var addrComparer = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const ns = "default"

// vsOpt edits a VirtualService under construction.
type vsOpt func(*v1alpha1.VirtualService)

func vs(name string, age int, opts ...vsOpt) *v1alpha1.VirtualService {
	v := &v1alpha1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, Generation: 1,
			CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Minute)),
		},
		Spec: v1alpha1.VirtualServiceSpec{
			Addresses:   []string{"10.0.0.1"},
			Ports:       []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
			BackendRefs: []v1alpha1.BackendRef{{Name: "web"}},
		},
	}
	for _, o := range opts {
		o(v)
	}
	return v
}

func addrs(a ...string) vsOpt { return func(v *v1alpha1.VirtualService) { v.Spec.Addresses = a } }

func ports(p ...v1alpha1.VirtualServicePort) vsOpt {
	return func(v *v1alpha1.VirtualService) { v.Spec.Ports = p }
}

func refs(r ...v1alpha1.BackendRef) vsOpt {
	return func(v *v1alpha1.VirtualService) { v.Spec.BackendRefs = r }
}

func spec(f func(*v1alpha1.VirtualServiceSpec)) vsOpt {
	return func(v *v1alpha1.VirtualService) { f(&v.Spec) }
}

func tcp(p int32) v1alpha1.VirtualServicePort {
	return v1alpha1.VirtualServicePort{Port: p, Protocol: v1alpha1.ProtocolTCP}
}

func udp(p int32) v1alpha1.VirtualServicePort {
	return v1alpha1.VirtualServicePort{Port: p, Protocol: v1alpha1.ProtocolUDP}
}

// svc is a Service with unnamed or named TCP ports ("http:80").
func svc(name string, ports ...corev1.ServicePort) *corev1.Service {
	if len(ports) == 0 {
		ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: ports},
	}
}

// ep describes an endpoint: address, node and conditions.
type ep struct {
	addr                        string
	node                        string
	ready, serving, terminating *bool
}

func readyEP(addr, node string) ep { return ep{addr: addr, node: node} }

func termEP(addr, node string, serving bool) ep {
	return ep{addr: addr, node: node, ready: ptr.To(false), serving: ptr.To(serving), terminating: ptr.To(true)}
}

func notReadyEP(addr, node string) ep {
	return ep{addr: addr, node: node, ready: ptr.To(false), serving: ptr.To(false), terminating: ptr.To(false)}
}

// slice is an EndpointSlice of service with one port (name, number) and endpoints.
func slice(name, service string, family discoveryv1.AddressType, portName string, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		d := discoveryv1.Endpoint{Addresses: []string{e.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.node != "" {
			d.NodeName = ptr.To(e.node)
		}
		s.Endpoints = append(s.Endpoints, d)
	}
	return s
}

func pool(name string, servers ...v1alpha1.RealServer) *v1alpha1.BackendPool {
	return &v1alpha1.BackendPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.BackendPoolSpec{Servers: servers},
	}
}

func key(name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

// tsvc is the expected TCP service on addr:port owned by owner, wrr, with dests.
func tsvc(owner, addr string, port uint16, dests ...Destination) Service {
	ad := a(addr)
	return Service{
		Service: lvs.Service{
			ServiceKey: lvs.ServiceKey{Family: lvs.FamilyOf(ad), Protocol: lvs.TCP, Address: ad, Port: port},
			Scheduler:  "wrr",
		},
		Owner: key(owner), Generation: 1, DrainTimeout: DefaultDrainTimeout, Destinations: dests,
	}
}

func dest(addr string, port uint16, weight uint32) Destination {
	return ld(lvs.Destination{Address: a(addr), Port: port, Weight: weight})
}

func draining(addr string, port uint16) Destination {
	return Destination{Destination: lvs.Destination{Address: a(addr), Port: port}, Draining: true, DrainTimeout: DefaultDrainTimeout}
}

// ld is an active destination with the kernel configuration d.
func ld(d lvs.Destination) Destination {
	return Destination{Destination: d}
}

func sel(name string, n int) []Selected {
	return []Selected{{Key: key(name), Generation: 1, Services: n}}
}

func ip4(i int) string { return fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255) }

func labelsOf(m map[string]string) labels.Set { return labels.Set(m) }

// withDrainTimeout sets the service's drain timeout (tsvc gives the default).
func withDrainTimeout(d time.Duration, s Service) Service {
	s.DrainTimeout = d
	return s
}
