package gitops

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	scripts "github.com/kubelvs/kubelvs/config/gitops"
)

// Live runs config/gitops' health script of kind (a kubelvs.io kind) on the object as r
// returns it: Argo CD reads the live object the same way.
func Live(ctx context.Context, r client.Reader, kind string, key types.NamespacedName) (Health, error) {
	script, err := scripts.HealthScript(kind)
	if err != nil {
		return Health{}, err
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
	if err := r.Get(ctx, key, u); err != nil {
		return Health{}, err
	}
	return Evaluate(script, u.Object)
}
