package agent

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/podstats"
)

// CacheOptions are the agent's informer caches: every object trimmed (TrimObject), only its
// own Node, and pods trimmed to what pod taskstats and delay-aware weights need
// (podstats.TrimPod): every node's agent reads the weight levels of every backend pod.
func CacheOptions(node string) cache.Options {
	return cache.Options{
		DefaultTransform: TrimObject,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Node{}: {Field: fields.OneTermEqualSelector("metadata.name", node)},
			&corev1.Pod{}:  {Transform: podstats.TrimPod},
		},
	}
}

// ClientOptions make the objects the agent writes but does not watch bypass the cache: read
// through it, they would start informers on every node's Lease and IPVSNode.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{
		DisableFor: []client.Object{&coordinationv1.Lease{}, &v1alpha1.IPVSNode{}},
	}}
}
