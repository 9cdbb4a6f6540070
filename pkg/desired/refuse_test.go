package desired

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// TestRefused: a VirtualService that bypassed the schema's validation (created before a rule
// existed, or written straight to etcd) is not accepted, and says why; it claims no key and
// yields no IPVS service. This file uses only API that predates the lvs vocabulary, so it
// also runs against older versions of the package.
func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		vs   *v1alpha1.VirtualService
		want string // the Accepted message
	}{
		{"backendRef of an unknown kind", vs("x", 0, refs(v1alpha1.BackendRef{Kind: "Pod", Name: "web"})),
			`backendRefs[0]: unknown kind "Pod" (want Service or BackendPool)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Cluster{VirtualServices: []*v1alpha1.VirtualService{tt.vs}, Services: []*corev1.Service{svc("web")}}
			m := NewModel(c)
			ev, _ := m.Evaluate(key("x"))
			want := Verdict{Reason: v1alpha1.ReasonInvalid, Message: tt.want}
			if diff := cmp.Diff(want, ev.Accepted); diff != "" {
				t.Errorf("Accepted (-want +got):\n%s", diff)
			}
			if n := len(m.ForNode(node1).Services); n != 0 {
				t.Errorf("ForNode yields %d services for a refused VirtualService", n)
			}
		})
	}
}
