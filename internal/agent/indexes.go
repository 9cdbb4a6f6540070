package agent

import (
	"context"
	"fmt"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/controllers"
	"github.com/kubelvs/kubelvs/internal/podstats"
)

// indexScope is how the agent looks a field index up.
type indexScope int

const (
	// inNamespace: always within one namespace (client.InNamespace).
	inNamespace indexScope = iota + 1
	// allNamespaces: never within one namespace.
	allNamespaces
	// unread: the agent never looks it up.
	unread
)

// indexScopes are the field indexes the agent registers (controllers.SetupIndexes and
// podstats.SetupIndexes), by how it reads them. A lookup in the other scope finds nothing: a
// new lookup must be added here (the agent's tests against the API server exercise these).
var indexScopes = map[string]indexScope{
	controllers.IndexServiceRef:   inNamespace,
	controllers.IndexPoolRef:      inNamespace,
	controllers.IndexSliceService: inNamespace,
	controllers.IndexConflictKey:  allNamespaces,
	controllers.IndexNodeSelector: unread,
	podstats.IndexPodNode:         allNamespaces,
	podstats.IndexSliceNode:       allNamespaces,
}

// The keys controller-runtime's cache looks field indexes up by (its List with
// client.MatchingFields, sigs.k8s.io/controller-runtime/pkg/cache/internal): index
// "field:NAME", value "NAMESPACE/VALUE", or "__all_namespaces/VALUE" for every namespace.
const (
	fieldIndexPrefix  = "field:"
	allNamespacesKey  = "__all_namespaces"
	namespaceKeySplit = "/"
)

// Indexer returns the agent's client.FieldIndexer over c: each field index holds every value
// once, in the scope the agent reads it (indexScopes), where controller-runtime's IndexField
// holds a namespaced object's value twice, for its namespace and for all. At 10,000
// VirtualServices, EndpointSlices and their one-value-per-object indexes that is ~8 MB of sets.
// Indexes it does not know are registered by c itself.
func Indexer(c cache.Cache) client.FieldIndexer { return indexer{c} }

type indexer struct{ c cache.Cache }

func (x indexer) IndexField(ctx context.Context, obj client.Object, field string, extract client.IndexerFunc) error {
	scope, ok := indexScopes[field]
	switch {
	case !ok:
		return x.c.IndexField(ctx, obj, field, extract)
	case scope == unread:
		return nil
	}
	inf, err := x.c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("agent: index %T by %s: %w", obj, field, err)
	}
	fn := func(raw any) ([]string, error) {
		o, ok := raw.(client.Object)
		if !ok {
			return nil, fmt.Errorf("agent: index %s: %T is not an object", field, raw)
		}
		vals := extract(o)
		ns := o.GetNamespace()
		if scope == allNamespaces || ns == "" {
			ns = allNamespacesKey
		}
		out := make([]string, len(vals))
		for i, v := range vals {
			out[i] = ns + namespaceKeySplit + v
		}
		return out, nil
	}
	if err := inf.AddIndexers(toolscache.Indexers{fieldIndexPrefix + field: fn}); err != nil {
		return fmt.Errorf("agent: index %T by %s: %w", obj, field, err)
	}
	return nil
}
