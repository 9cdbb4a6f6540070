package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

var created = metav1.NewTime(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))

// fullMeta is object metadata as the API server returns it, with everything set.
func fullMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: "ns", Name: name, UID: "uid-1", ResourceVersion: "42",
		Generation: 3, CreationTimestamp: created, GenerateName: "gen-",
		Labels:          map[string]string{"app.kubernetes.io/name": "web", discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
		Annotations:     map[string]string{AnnotationTriggerTime: "2026-12-01T10:00:00Z", "other": "x", corev1.LastAppliedConfigAnnotation: "{}"},
		OwnerReferences: []metav1.OwnerReference{{Kind: "Service", Name: "web"}},
		Finalizers:      []string{"example.com/f"},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}}}
}

func fullSlice() *discoveryv1.EndpointSlice {
	ep := func(addr, pod string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{
			Addresses: []string{addr, "10.9.9.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(!ready)},
			Hostname: ptr.To(pod), NodeName: ptr.To("n1"), Zone: ptr.To("a"),
			Hints:              &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "a"}}},
			DeprecatedTopology: map[string]string{"k": "v"},
			TargetRef:          &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: pod, UID: "u", ResourceVersion: "7"},
		}
	}
	noPod := ep("10.1.0.3", "", true)
	noPod.TargetRef = &corev1.ObjectReference{Kind: "Node", Name: "n1"}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  fullMeta("web-1"),
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP), AppProtocol: ptr.To("http")}},
		Endpoints:   []discoveryv1.Endpoint{ep("10.1.0.1", "web-0", true), ep("10.1.0.2", "web-1", false), noPod},
	}
}

// The cache keeps of an EndpointSlice what the agent reads: the Service label, the trigger
// time, its ports, and per endpoint its first address, conditions, node and pod.
func TestTrimObjectSlice(t *testing.T) {
	ep := func(addr, pod string, ready bool) discoveryv1.Endpoint {
		e := discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr.To("n1"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(!ready)}}
		if pod != "" {
			e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: pod}
		}
		return e
	}
	want := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", ResourceVersion: "42", Generation: 3, CreationTimestamp: created,
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}, Annotations: map[string]string{AnnotationTriggerTime: "2026-12-01T10:00:00Z"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{ep("10.1.0.1", "web-0", true), ep("10.1.0.2", "web-1", false), ep("10.1.0.3", "", true)},
	}
	got, err := TrimObject(fullSlice())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trimmed (-want +got):\n%s", diff)
	}
	// What many endpoints repeat is shared, not allocated for each.
	a, _ := TrimObject(fullSlice())
	b, _ := TrimObject(fullSlice())
	ea, eb := a.(*discoveryv1.EndpointSlice).Endpoints, b.(*discoveryv1.EndpointSlice).Endpoints
	if ea[0].NodeName != eb[2].NodeName || ea[0].Conditions.Ready != eb[2].Conditions.Ready ||
		a.(*discoveryv1.EndpointSlice).Ports[0].Name != b.(*discoveryv1.EndpointSlice).Ports[0].Name {
		t.Errorf("node names, conditions and port names are not shared between trimmed slices")
	}
}

func TestTrimObjectServiceAndVirtualService(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: fullMeta("web"), Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP, NodePort: 30080, AppProtocol: ptr.To("http")}}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}}}}
	meta := metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-1", ResourceVersion: "42", Generation: 3, CreationTimestamp: created}
	wantSvc := &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP}}}}
	got, err := TrimObject(svc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantSvc, got); diff != "" {
		t.Errorf("Service trimmed (-want +got):\n%s", diff)
	}

	spec := v1alpha1.VirtualServiceSpec{Addresses: []string{"192.0.2.1"}, Ports: []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
		BackendRefs: []v1alpha1.BackendRef{{Name: "web"}}, NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "edge"}}}
	vs := &v1alpha1.VirtualService{ObjectMeta: fullMeta("web"), Spec: *spec.DeepCopy(),
		Status: v1alpha1.VirtualServiceStatus{ObservedGeneration: 3, Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}}}}
	got, err = TrimObject(vs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&v1alpha1.VirtualService{ObjectMeta: meta, Spec: spec}, got); diff != "" {
		t.Errorf("VirtualService trimmed (-want +got):\n%s", diff)
	}

	// Other kinds (the Node) lose only managed fields and the last-applied annotation.
	node := &corev1.Node{ObjectMeta: fullMeta("n1"), Spec: corev1.NodeSpec{PodCIDRs: []string{"10.1.0.0/24"}}}
	wantNode := node.DeepCopy()
	wantNode.ManagedFields = nil
	delete(wantNode.Annotations, corev1.LastAppliedConfigAnnotation)
	got, err = TrimObject(node)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantNode, got); diff != "" {
		t.Errorf("Node trimmed (-want +got):\n%s", diff)
	}
}

// The node's table computed from trimmed objects is the one computed from whole objects:
// the transform keeps everything pkg/desired reads.
func TestTrimObjectKeepsTheDesiredTable(t *testing.T) {
	mkVS := func(name string, age time.Duration, addr string, port int32, opts ...func(*v1alpha1.VirtualService)) *v1alpha1.VirtualService {
		v := &v1alpha1.VirtualService{ObjectMeta: fullMeta(name), Spec: v1alpha1.VirtualServiceSpec{
			Addresses: []string{addr}, Ports: []v1alpha1.VirtualServicePort{{Port: port, Protocol: v1alpha1.ProtocolTCP}},
			BackendRefs: []v1alpha1.BackendRef{{Name: "web"}}}}
		v.CreationTimestamp = metav1.NewTime(created.Add(age))
		v.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse}}
		for _, o := range opts {
			o(v)
		}
		return v
	}
	svc := &corev1.Service{ObjectMeta: fullMeta("web"), Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10",
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	cluster := func() *desired.Cluster {
		return &desired.Cluster{
			VirtualServices: []*v1alpha1.VirtualService{
				mkVS("a", 0, "192.0.2.1", 80),
				mkVS("b", time.Minute, "192.0.2.1", 80), // younger: loses the key to a
				mkVS("c", 0, "192.0.2.3", 80, func(v *v1alpha1.VirtualService) {
					v.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "other"}}
				}),
				mkVS("d", 0, "192.0.2.4", 80, func(v *v1alpha1.VirtualService) { v.Spec.Scheduler = v1alpha1.SchedulerMaglev }),
				// Weights from the pods' delay levels: the endpoints' pods are read.
				mkVS("e", 0, "192.0.2.5", 80, func(v *v1alpha1.VirtualService) { v.Spec.Weighting = v1alpha1.WeightingDelayAware }),
			},
			Services:       []*corev1.Service{svc},
			EndpointSlices: []*discoveryv1.EndpointSlice{fullSlice()},
			DelayLevels:    map[types.NamespacedName]int{{Namespace: "ns", Name: "web-0"}: 5},
		}
	}
	trimmed := cluster()
	for i, v := range trimmed.VirtualServices {
		o, _ := TrimObject(v)
		trimmed.VirtualServices[i] = o.(*v1alpha1.VirtualService)
	}
	for i, s := range trimmed.Services {
		o, _ := TrimObject(s)
		trimmed.Services[i] = o.(*corev1.Service)
	}
	for i, s := range trimmed.EndpointSlices {
		o, _ := TrimObject(s)
		trimmed.EndpointSlices[i] = o.(*discoveryv1.EndpointSlice)
	}
	node := desired.Node{Name: "n1", Labels: map[string]string{"pool": "edge"}}
	want := desired.ForNode(cluster(), node)
	if len(want.Services) != 3 {
		t.Fatalf("the whole objects give %d services, want 3 (a's, d's and e's): the test's cluster is wrong", len(want.Services))
	}
	if w := want.Services[2].Destinations; len(w) != 3 || w[0].Weight == w[1].Weight {
		t.Fatalf("e's destinations %+v: want three, the pod at delay level 5 weighted apart", w)
	}
	if diff := cmp.Diff(want, desired.ForNode(trimmed, node), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("table from trimmed objects (-whole +trimmed):\n%s", diff)
	}
}
