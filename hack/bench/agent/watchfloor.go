package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// watchFloor watches the benchmark's EndpointSlices from the guest, as the agent's informer
// does, and records when it sees each change: the floor of any agent in this guest (the API
// update, the API server's watch, the guest's network stack and the decode), which the agent's
// change latency includes.
type watchFloor struct {
	mu   sync.Mutex
	seen map[string]time.Time // slice name/endpoint 0's address: when first seen
	w    watch.Interface
	done chan struct{}
}

func seenKey(slice, addr string) string { return slice + "/" + addr }

// startWatchFloor starts the watch at the slices' current resource version (no initial events).
func startWatchFloor(ctx context.Context, o *options) (*watchFloor, error) {
	cfg, err := clientcmd.BuildConfigFromFlags(o.server, o.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	ctrllog.SetLogger(logr.Discard()) // controller-runtime's client asks for one
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme()})
	if err != nil {
		return nil, err
	}
	var l discoveryv1.EndpointSliceList
	if err := c.List(ctx, &l, client.InNamespace(benchNS), client.Limit(1)); err != nil {
		return nil, fmt.Errorf("watch floor: list: %w", err)
	}
	w, err := c.Watch(ctx, &discoveryv1.EndpointSliceList{}, client.InNamespace(benchNS),
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: l.ResourceVersion}})
	if err != nil {
		return nil, fmt.Errorf("watch floor: watch: %w", err)
	}
	f := &watchFloor{seen: map[string]time.Time{}, w: w, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for ev := range w.ResultChan() {
			es, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok || ev.Type != watch.Modified || len(es.Endpoints) == 0 || len(es.Endpoints[0].Addresses) == 0 {
				continue
			}
			now := time.Now()
			k := seenKey(es.Name, es.Endpoints[0].Addresses[0])
			f.mu.Lock()
			if _, ok := f.seen[k]; !ok {
				f.seen[k] = now
			}
			f.mu.Unlock()
		}
	}()
	return f, nil
}

// at returns when the watch first saw slice with endpoint 0 at addr, if it did.
func (f *watchFloor) at(slice, addr string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.seen[seenKey(slice, addr)]
	return t, ok
}

// forget drops what was seen of slice at addr (a slice swaps between two addresses: the next
// change back must be seen anew).
func (f *watchFloor) forget(slice, addr string) {
	f.mu.Lock()
	delete(f.seen, seenKey(slice, addr))
	f.mu.Unlock()
}

func (f *watchFloor) stop() {
	f.w.Stop()
	<-f.done
}
