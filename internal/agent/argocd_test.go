package agent

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/gitops"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// TestArgoCDHealthOfIPVSNode runs config/gitops' IPVSNode health script on the IPVSNode the
// agent writes against the real API server (fake kernel): Healthy once it programmed its
// VirtualService, Degraded when a service kubelvs did not create holds a key another
// VirtualService wants. (test/deploy covers Progressing and IPVS missing with the binary.)
func TestArgoCDHealthOfIPVSNode(t *testing.T) {
	ctx := t.Context()
	c := env.Client
	node := "argo-node"
	// Its VirtualServices select only this node: the other tests' agents share the API server.
	must(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{"test": node}}}))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "argo-"}}
	must(t, c.Create(ctx, ns))
	must(t, c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}))
	must(t, c.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns.Name, Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{endpoint("10.1.0.1", true)},
	}))
	vs := func(name, addr string) *v1alpha1.VirtualService {
		return &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}, Spec: v1alpha1.VirtualServiceSpec{
			Addresses: []string{addr}, Ports: []v1alpha1.VirtualServicePort{{Name: "http", Port: 80, Protocol: v1alpha1.ProtocolTCP}},
			BackendRefs:  []v1alpha1.BackendRef{{Name: "web"}},
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test": node}}}}
	}
	must(t, c.Create(ctx, vs("web", "192.0.2.40")))
	fk := newFakeKernel()
	fk.hand(ipvs.Op{Kind: ipvs.AddService, Service: &lvs.Service{ServiceKey: key(lvs.TCP, "192.0.2.41", 80), Scheduler: "rr"}})
	startAgent(t, node, fk)

	health := func(status, msg string) {
		t.Helper()
		eventually(t, "IPVSNode health "+status, func() error {
			h, err := gitops.Live(ctx, c, "IPVSNode", types.NamespacedName{Name: node})
			if err != nil {
				return err
			}
			if h.Status != status || !strings.Contains(h.Message, msg) {
				return fmt.Errorf("%+v, want %s with %q", h, status, msg)
			}
			return nil
		})
	}
	health("Healthy", "matches its VirtualServices")
	must(t, c.Create(ctx, vs("taken", "192.0.2.41")))
	health("Degraded", "192.0.2.41:80")
}
