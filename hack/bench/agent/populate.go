package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

const (
	benchNS   = "bench"
	benchNode = "bench"
)

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

func newClient(o *options) (client.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags(o.server, o.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 5000, 10000
	return client.New(cfg, client.Options{Scheme: scheme()})
}

func endpointSlice(i, dests int) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: benchNS, Name: sliceName(i), Labels: map[string]string{discoveryv1.LabelServiceName: svcName(i)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for j := range dests {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{epAddr(i, j).String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return es
}

// objects returns VirtualService i's three objects, in creation order.
func objects(i, dests int) []client.Object {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: svcName(i)}, Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, // headless: envtest's service CIDR has too few addresses
		Ports:     []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: vsName(i)}, Spec: v1alpha1.VirtualServiceSpec{
		Addresses: []string{vsAddr(i).String()}, Ports: []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
		BackendRefs: []v1alpha1.BackendRef{{Name: svcName(i)}}}}
	return []client.Object{svc, endpointSlice(i, dests), vs}
}

// populate creates the namespace, the Node and every VirtualService's objects with a bounded
// worker pool (objects that exist are left as they are), printing progress.
func populate(o *options) error {
	c, err := newClient(o)
	if err != nil {
		return err
	}
	ctx := context.Background()
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: benchNode}},
	} {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s: %w", obj.GetName(), err)
		}
	}
	start := time.Now()
	var done atomic.Int64
	var firstErr error
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				for _, obj := range objects(i, o.dests) {
					var err error
					for try := 0; try < 5; try++ {
						if err = c.Create(ctx, obj); err == nil || apierrors.IsAlreadyExists(err) {
							err = nil
							break
						}
						time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
					}
					if err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = fmt.Errorf("create %s: %w", obj.GetName(), err)
						}
						mu.Unlock()
					}
				}
				if n := done.Add(1); n%int64(max(1, o.vs/10)) == 0 {
					fmt.Printf("populate: %d/%d VirtualServices (+Service, EndpointSlice) in %.1f s\n", n, o.vs, time.Since(start).Seconds())
				}
			}
		}()
	}
	for i := range o.vs {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("populate: %d objects created in %.1f s\n", 3*o.vs, time.Since(start).Seconds())
	return nil
}
