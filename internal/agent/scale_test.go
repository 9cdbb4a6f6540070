package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/dataplane"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// BenchmarkEndpointChange measures, against the real API server and a fake kernel, the time
// from one EndpointSlice update to its new destination being applied, with
// KUBELVS_BENCH_VS VirtualServices (default 1,000) of 10 endpoints each on the node. Each
// iteration swaps one endpoint address of one VirtualService: the agent must send exactly
// two kernel operations (the new destination's add and the old one's drain to weight 0).
// Run it with -cpuprofile to see where a change's time goes.
func BenchmarkEndpointChange(b *testing.B) {
	n := benchSize(b)
	ctx := context.Background()
	c := env.Client
	node := "bench-node-" + strconv.Itoa(n)
	must(b, client.IgnoreAlreadyExists(c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}
	must(b, c.Create(ctx, ns))
	createScale(b, ns.Name, n)

	fk := newFakeKernel()
	// The real dataplane, binding nothing and keeping no table (the host has no dummy
	// interfaces), keeps its index of the services: its memory is in the live heap.
	startAgentB(b, node, fk, dataplane.New(dataplane.Config{}))
	fk.waitWrites(b, n*11, 5*time.Minute)
	fk.resetCounts()
	// Measured once the first batch is committed and reported (when the kernel has the last
	// write, the agent is still committing it to its model).
	reportIPVSNode(b, node, n)
	heap := liveHeap(b)

	b.ResetTimer()
	i := 0
	var sinceAck time.Duration
	for b.Loop() {
		vs := (i * 7919) % n
		i++
		var es discoveryv1.EndpointSlice
		must(b, c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: fmt.Sprintf("svc-%05d", vs)}, &es))
		next := scaleAddr(n, vs, 10+i) // never an address a previous iteration used
		es.Endpoints[0].Addresses[0] = next.String()
		key := lvs.ServiceKey{Family: lvs.IPv4, Protocol: lvs.TCP, Address: scaleVIP(vs), Port: 80}
		dk := lvs.DestinationKey{Address: next, Port: 8080}
		must(b, c.Update(ctx, &es))
		acked := time.Now()
		fk.waitDest(b, key, dk, time.Minute)
		sinceAck += time.Since(acked)
	}
	b.StopTimer()
	// The API server's own time (its etcd write) is in ns/op; the agent's part starts when the
	// update is acknowledged.
	b.ReportMetric(float64(sinceAck.Microseconds())/1000/float64(b.N), "ms-after-ack/op")
	writes, _ := fk.counts()
	b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
	b.ReportMetric(heap, "live-heap-MiB")
	reportIPVSNode(b, node, n)
}

// reportIPVSNode reports the size of the node's IPVSNode, and fails when its status does not
// list every VirtualService (its writes failed).
func reportIPVSNode(b *testing.B, node string, n int) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var in v1alpha1.IPVSNode
		err := env.Client.Get(context.Background(), types.NamespacedName{Name: node}, &in)
		if err == nil && len(in.Status.VirtualServices) >= n {
			raw, err := json.Marshal(&in)
			must(b, err)
			b.ReportMetric(float64(len(raw))/1024, "IPVSNode-KiB")
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the IPVSNode lists %d of %d VirtualServices (%v): its status writes fail", len(in.Status.VirtualServices), n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkRestart measures an agent's start, with KUBELVS_BENCH_VS VirtualServices (default
// 1,000) of 10 endpoints in the API server and their table already in the kernel, until it is
// ready (caches synced, table adopted, first sync done); it must write nothing.
func BenchmarkRestart(b *testing.B) {
	n := benchSize(b)
	ctx := context.Background()
	node := "restart-node-" + strconv.Itoa(n)
	must(b, client.IgnoreAlreadyExists(env.Client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "restart-"}}
	must(b, env.Client.Create(ctx, ns))
	createScale(b, ns.Name, n)
	fk := newFakeKernel()
	dir := b.TempDir()
	first := make(chan struct{})
	stop := startAgentDir(b, node, fk, dir, func() { close(first) })
	<-first
	fk.waitWrites(b, n*11, 5*time.Minute)
	stop()
	fk.resetCounts()
	b.ResetTimer()
	for b.Loop() {
		ready := make(chan struct{})
		stop := startAgentDir(b, node, fk, dir, func() { close(ready) })
		<-ready
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	b.StopTimer()
	writes, _ := fk.counts()
	b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
}

// liveHeap returns the test process's live heap in MiB (after a collection): the agent's
// caches, model and dataplane index, with the test's own small client. With
// KUBELVS_BENCH_HEAPPROFILE set it writes the heap profile there.
func liveHeap(b *testing.B) float64 {
	b.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if path := os.Getenv("KUBELVS_BENCH_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		must(b, err)
		must(b, pprof.WriteHeapProfile(f))
		must(b, f.Close())
	}
	return float64(ms.HeapAlloc) / (1 << 20)
}

func benchSize(b *testing.B) int {
	if v := os.Getenv("KUBELVS_BENCH_VS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("KUBELVS_BENCH_VS: %v", err)
		}
		return n
	}
	return 1000
}

func scaleVIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }

// scaleAddr is endpoint j of VirtualService i of n: unique while j*n+i < 2^24.
func scaleAddr(n, i, j int) netip.Addr {
	v := uint32(j*n + i)
	return netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)})
}

// createScale creates n VirtualServices with a headless Service and an EndpointSlice of 10
// endpoints each, with a few workers.
func createScale(b *testing.B, ns string, n int) {
	b.Helper()
	ctx := context.Background()
	work := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				for _, o := range scaleObjects(ns, n, i) {
					if err := env.Client.Create(ctx, o); err != nil {
						select {
						case errs <- err:
						default:
						}
					}
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

func scaleObjects(ns string, n, i int) []client.Object {
	name := fmt.Sprintf("svc-%05d", i)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, // envtest's service CIDR is too small for thousands
		Ports:     []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for j := range 10 {
		es.Endpoints = append(es.Endpoints, endpoint(scaleAddr(n, i, j).String(), true))
	}
	vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.VirtualServiceSpec{
		Addresses: []string{scaleVIP(i).String()}, Ports: []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
		BackendRefs: []v1alpha1.BackendRef{{Name: name}}}}
	return []client.Object{svc, es, vs}
}

func (w *fakeKernel) waitWrites(b *testing.B, n int, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if writes, _ := w.counts(); writes >= n {
			return
		}
		if time.Now().After(deadline) {
			writes, _ := w.counts()
			b.Fatalf("%d kernel writes after %v, want %d", writes, timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *fakeKernel) waitDest(b *testing.B, k lvs.ServiceKey, dk lvs.DestinationKey, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		s := w.services[k]
		ok := false
		if s != nil {
			_, ok = s.dests[dk]
		}
		w.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("destination %v of %v not applied after %v", dk, k, timeout)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
