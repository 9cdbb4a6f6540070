package podstats

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
)

// agentCache is a cache like the agent's (every pod, trimmed; the indexes Selected reads
// through), started and synced.
func agentCache(t *testing.T, ctx context.Context) client.Reader {
	t.Helper()
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Transform: TrimPod}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.SetupIndexes(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := SetupIndexes(ctx, c); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	return c
}

// TestSelected runs pod selection on a cache like the agent's (every pod, trimmed; indexed by
// node) over the envtest API server: the node's endpoints of a
// Service a VirtualService uses, and annotated pods; not a pod of another node, not an endpoint of
// a Service no VirtualService uses, not a pod that is not running.
func TestSelected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const node, ns = "node-select", "default"
	running := func(name, node string, annotated bool) *corev1.Pod {
		p := makePod(t, ctx, name, node)
		if !annotated {
			delete(p.Annotations, AnnotationTaskstats)
			if err := env.Client.Update(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	running("sel-backend", node, false)
	running("sel-backend-elsewhere", "node-other", false)
	running("sel-annotated", node, true)
	running("sel-unused-service", node, false)
	running("sel-plain", node, false)
	pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sel-pending", Annotations: map[string]string{AnnotationTaskstats: "true"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if err := env.Client.Create(ctx, pending); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pending) })

	vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sel-web"},
		Spec: v1alpha1.VirtualServiceSpec{Addresses: []string{"192.0.2.77"},
			Ports:       []v1alpha1.VirtualServicePort{{Name: "http", Port: 80, Protocol: "TCP"}},
			BackendRefs: []v1alpha1.BackendRef{{Name: "sel-web"}}}}
	if err := env.Client.Create(ctx, vs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), vs) })
	slice := func(name, svc string, eps ...discoveryv1.Endpoint) {
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps}
		if err := env.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), es) })
	}
	ep := func(ip, pod, node string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: &node,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod}}
	}
	slice("sel-web-1", "sel-web", ep("10.1.0.1", "sel-backend", node), ep("10.1.0.2", "sel-backend-elsewhere", "node-other"))
	slice("sel-unused-1", "sel-unused", ep("10.1.0.3", "sel-unused-service", node))

	c := agentCache(t, ctx)
	want := []string{"sel-annotated", "sel-backend"}
	var got []string
	for range 100 { // the informers see the objects created just before they started
		pods, err := Selected(ctx, c, node)
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, p := range pods {
			if len(p.Spec.Containers) != 0 {
				t.Errorf("pod %s not trimmed", p.Name)
			}
			got = append(got, p.Name)
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("selected pods -want +got:\n%s", d)
	}
}
