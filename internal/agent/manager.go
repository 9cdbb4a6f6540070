package agent

import (
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/internal/vswatch"
)

// CacheOptions are the agent's informer caches: every object trimmed (TrimObject), only its
// own Node, and pods trimmed to what pod taskstats and delay-aware weights need
// (podstats.TrimPod): every node's agent reads the weight levels of every backend pod.
//
// The objects the desired state is computed from are read without a deep copy: the agent
// only reads them (pkg/desired is pure), and copying every object a sync reads made the
// first sync of a node with thousands of VirtualServices spend most of its time copying.
//
// vsList, when not nil, is how the VirtualServices are listed and watched
// (vswatch.ListWatch: a cheaper decoder of their watch).
func CacheOptions(node string, vsList toolscache.ListerWatcher) cache.Options {
	shared := cache.ByObject{UnsafeDisableDeepCopy: ptr.To(true)}
	return cache.Options{
		NewInformer:      newInformer(vsList),
		DefaultTransform: TrimObject,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Node{}:               {Field: fields.OneTermEqualSelector("metadata.name", node)},
			&v1alpha1.VirtualService{}:   shared,
			&corev1.Service{}:            shared,
			&discoveryv1.EndpointSlice{}: shared,
			&v1alpha1.BackendPool{}:      shared,
			&corev1.Pod{}:                {Transform: podstats.TrimPod},
		},
	}
}

// ClusterOptions are the agent's cache and client options for the API server of cfg: the
// VirtualServices listed and watched through vswatch, and the caches and the client on one
// HTTP client (one connection), the VirtualServices' list and watch included.
func ClusterOptions(cfg *rest.Config, scheme *runtime.Scheme, node string) (cache.Options, client.Options, error) {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return cache.Options{}, client.Options{}, fmt.Errorf("agent: the Kubernetes HTTP client: %w", err)
	}
	vsList, err := vswatch.ListWatch(cfg, httpClient, scheme, nil)
	if err != nil {
		return cache.Options{}, client.Options{}, err
	}
	co, cl := CacheOptions(node, vsList), ClientOptions()
	co.HTTPClient, cl.HTTPClient = httpClient, httpClient
	return co, cl, nil
}

// ClientOptions make the objects the agent writes but does not watch bypass the cache: read
// through it, they would start informers on every node's Lease and IPVSNode.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{
		DisableFor: []client.Object{&coordinationv1.Lease{}, &v1alpha1.IPVSNode{}},
	}}
}

// newInformer is the caches' informer constructor: client-go's, with the VirtualServices'
// list and watch replaced by vsList.
func newInformer(vsList toolscache.ListerWatcher) func(toolscache.ListerWatcher, runtime.Object, time.Duration, toolscache.Indexers) toolscache.SharedIndexInformer {
	return func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, idx toolscache.Indexers) toolscache.SharedIndexInformer {
		if _, ok := obj.(*v1alpha1.VirtualService); ok && vsList != nil {
			lw = vsList
		}
		return toolscache.NewSharedIndexInformer(lw, obj, resync, idx)
	}
}
