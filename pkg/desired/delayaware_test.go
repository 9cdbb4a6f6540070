package desired

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// withPods gives a slice's endpoints Pod targetRefs, in order (namespace left empty: the slice's).
func withPods(s *discoveryv1.EndpointSlice, pods ...string) *discoveryv1.EndpointSlice {
	for i, p := range pods {
		s.Endpoints[i].TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: p}
	}
	return s
}

func TestDelayAwareWeights(t *testing.T) {
	delayAware := spec(func(s *v1alpha1.VirtualServiceSpec) { s.Weighting = v1alpha1.WeightingDelayAware })
	eps := func() []*discoveryv1.EndpointSlice {
		return []*discoveryv1.EndpointSlice{withPods(slice("web-1", "web", v4, "", 8080,
			readyEP("10.1.0.1", ""), readyEP("10.1.0.2", ""), readyEP("10.1.0.3", "")), "a", "b", "c")}
	}
	levels := map[types.NamespacedName]int{key("a"): 0, key("b"): 3, key("c"): 9}
	tests := []struct {
		name    string
		vs      *v1alpha1.VirtualService
		levels  map[types.NamespacedName]int
		weights []uint32
	}{
		{"static (unset) ignores the levels", vs("web", 0), levels, []uint32{1, 1, 1}},
		{"explicitly static", vs("web", 0, spec(func(s *v1alpha1.VirtualServiceSpec) { s.Weighting = v1alpha1.WeightingStatic })), levels, []uint32{1, 1, 1}},
		{"delay-aware scales by level, never to 0", vs("web", 0, delayAware), levels, []uint32{100, 70, 10}},
		{"delay-aware without levels is the scaled static weight", vs("web", 0, delayAware), nil, []uint32{100, 100, 100}},
		{"delay-aware keeps the backendRef's weight ratio", vs("web", 0, delayAware, refs(v1alpha1.BackendRef{Name: "web", Weight: ptrInt32(3)})),
			levels, []uint32{300, 210, 30}},
		{"delay-aware with a backendRef weight of 0 stays 0", vs("web", 0, delayAware, refs(v1alpha1.BackendRef{Name: "web", Weight: ptrInt32(0)})),
			levels, []uint32{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := ForNode(&Cluster{VirtualServices: []*v1alpha1.VirtualService{tt.vs}, Services: []*corev1.Service{svc("web")},
				EndpointSlices: eps(), DelayLevels: tt.levels}, Node{Name: "node-1"})
			if len(tab.Services) != 1 {
				t.Fatalf("services %+v", tab.Services)
			}
			var got []uint32
			for _, d := range tab.Services[0].Destinations {
				got = append(got, d.Weight)
			}
			if d := cmp.Diff(tt.weights, got); d != "" {
				t.Errorf("weights -want +got:\n%s", d)
			}
		})
	}
}

func ptrInt32(v int32) *int32 { return &v }
