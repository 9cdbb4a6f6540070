package demo

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/internal/netns"
)

// Namespace is where the demo applies the samples and runs its pods (kubectl's default).
const Namespace = "default"

// managedBy marks the EndpointSlices the demo writes in place of the EndpointSlice controller.
const managedBy = "demo.kubelvs.io"

// backend is a "pod": a network namespace behind a veth from its node's namespace, address
// 10.244.<index>.2 with a default route to the node (10.244.<index>.1), running an HTTP server on
// port 8080 in the demo's process (its listener was made in the pod's namespace).
type backend struct {
	name, app string
	node      *node
	index     int
	netns     string
	srv       *http.Server
	uid       string  // the Pod's, once registered
	procs     []*proc // the pod's processes, in its cgroups
}

func (b *backend) addr() string    { return fmt.Sprintf("10.244.%d.2", b.index) }
func (b *backend) gateway() string { return fmt.Sprintf("10.244.%d.1", b.index) }
func (b *backend) veth() string    { return "v-" + b.name }

// handler answers "/" with the pod's name and streams "/download?kib=N&ms=M" as N KiB in 16 KiB
// chunks M milliseconds apart (a long download to drain under). Every answer names the pod in
// the X-Pod header.
func (b *backend) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Pod", b.name)
		fmt.Fprintf(w, "hello from %s (%s)\n", b.name, b.addr())
	})
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		kib, _ := strconv.Atoi(r.URL.Query().Get("kib"))
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		w.Header().Set("X-Pod", b.name)
		w.Header().Set("Content-Length", strconv.Itoa(kib*1024))
		chunk := make([]byte, 16*1024)
		for sent := 0; sent < kib*1024; sent += len(chunk) {
			if _, err := w.Write(chunk[:min(len(chunk), kib*1024-sent)]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Duration(ms) * time.Millisecond):
			}
		}
	})
	return mux
}

// start makes the pod's namespace and link and starts its server.
func (b *backend) start() error {
	b.netns = "lvsdemo-" + b.name
	steps := [][]string{
		{"-n", b.node.netns, "link", "add", b.veth(), "type", "veth", "peer", "name", "eth0", "netns", b.netns},
		{"-n", b.node.netns, "addr", "add", b.gateway() + "/24", "dev", b.veth()},
		{"-n", b.node.netns, "link", "set", b.veth(), "up"},
		{"-n", b.netns, "addr", "add", b.addr() + "/24", "dev", "eth0"},
		{"-n", b.netns, "link", "set", "eth0", "up"},
		{"-n", b.netns, "route", "add", "default", "via", b.gateway()},
	}
	if err := addNetns(b.netns); err != nil {
		return err
	}
	for _, s := range steps {
		if err := ipcmd(s...); err != nil {
			return err
		}
	}
	var ln net.Listener
	if err := netns.Do(b.netns, func() (err error) { ln, err = net.Listen("tcp", ":8080"); return err }); err != nil {
		return fmt.Errorf("demo: listen in %s: %w", b.netns, err)
	}
	b.srv = &http.Server{Handler: b.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return nil
}

func (b *backend) stop() {
	if b.srv != nil {
		_ = b.srv.Close()
	}
	for _, p := range b.procs {
		p.stop()
	}
}

// register does what the kubelet does for a running pod: the Pod object, bound to its node,
// with its IP and Ready condition in its status.
func (b *backend) register(ctx context.Context, c client.Client) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: b.name, Labels: map[string]string{"app": b.app}},
		Spec: corev1.PodSpec{
			NodeName:                     b.node.name,
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "http", Image: "demo.kubelvs.io/http:in-process",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
		},
	}
	if err := c.Create(ctx, pod); err != nil {
		return fmt.Errorf("demo: create pod %s: %w", b.name, err)
	}
	b.uid = string(pod.UID)
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: b.addr(), PodIPs: []corev1.PodIP{{IP: b.addr()}}, StartTime: &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
	}
	if err := c.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("demo: pod %s status: %w", b.name, err)
	}
	return nil
}

// endpoint is the backend's entry in its Service's EndpointSlice.
func (b *backend) endpoint(ready, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses: []string{b.addr()},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(true),
			Terminating: ptr.To(terminating)},
		NodeName:  ptr.To(b.node.name),
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: Namespace, Name: b.name},
	}
}

// serviceSlice is the EndpointSlice the EndpointSlice controller would keep for a Service
// whose pods serve on 8080 (port name "http", as in config/samples/web.yaml).
func serviceSlice(svc string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: svc + "-demo", Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: managedBy}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

// setSlice creates or replaces the endpoints of a Service's demo EndpointSlice.
func setSlice(ctx context.Context, c client.Client, svc string, eps ...discoveryv1.Endpoint) error {
	want := serviceSlice(svc, eps...)
	var cur discoveryv1.EndpointSlice
	err := c.Get(ctx, client.ObjectKeyFromObject(want), &cur)
	switch {
	case apierrors.IsNotFound(err):
		err = c.Create(ctx, want)
	case err == nil:
		cur.Endpoints = want.Endpoints
		err = c.Update(ctx, &cur)
	}
	if err != nil {
		return fmt.Errorf("demo: EndpointSlice of %s: %w", svc, err)
	}
	return nil
}

// ensureService creates a Service with port "http" 80 to 8080 selecting app=name, unless it
// exists.
func ensureService(ctx context.Context, c client.Client, name string) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": name},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	if err := c.Create(ctx, svc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("demo: create service %s: %w", name, err)
	}
	return nil
}

// ensureServiceAccount creates the namespace's "default" ServiceAccount: envtest runs no
// controller that would, and Pod admission wants it.
func ensureServiceAccount(ctx context.Context, c client.Client) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "default"}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("demo: create service account: %w", err)
	}
	return nil
}

// deletePod deletes a pod with the grace period given; with a period and no kubelet to confirm,
// the Pod stays Terminating (deletionTimestamp set) until deleted again with 0.
func deletePod(ctx context.Context, c client.Client, name string, grace int64) error {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name}}
	err := c.Delete(ctx, pod, client.GracePeriodSeconds(grace))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("demo: delete pod %s: %w", name, err)
	}
	return nil
}
