package gitops

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	scripts "github.com/kubelvs/kubelvs/config/gitops"
)

func TestEvaluate(t *testing.T) {
	obj := map[string]any{"metadata": map[string]any{"generation": int64(3)},
		"status": map[string]any{"observedGeneration": float64(3), "conditions": []any{map[string]any{"type": "A", "ok": true}}}}
	for _, c := range []struct {
		script string
		want   Health
		err    error
	}{
		{`return {status = "Healthy", message = obj.status.conditions[1].type .. tostring(obj.status.conditions[1].ok)}`, Health{"Healthy", "Atrue"}, nil},
		{`if obj.metadata.generation == obj.status.observedGeneration then return {status = "Degraded"} end`, Health{Status: "Degraded"}, nil},
		{`return {status = "Fine"}`, Health{Status: "Fine"}, ErrBadResult},
		{`return "Healthy"`, Health{}, ErrBadResult},
		{`return {status = os.time()}`, Health{}, nil}, // no os library, as in Argo CD
	} {
		got, err := Evaluate(c.script, obj)
		if c.script == `return {status = os.time()}` {
			if err == nil {
				t.Errorf("%s: the os library is open", c.script)
			}
			continue
		}
		if !errors.Is(err, c.err) || (c.err == nil && err != nil) || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", c.script, got, err, c.want, c.err)
		}
	}
}

// TestArgoCDConfigMap checks that the ready-to-paste argocd-cm snippet carries exactly the
// scripts that the tests run.
func TestArgoCDConfigMap(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "config", "gitops", "argocd-cm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Kind     string
		Metadata struct{ Name, Namespace string }
		Data     map[string]string
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-cm" || len(cm.Data) != 2 {
		t.Fatalf("not the argocd-cm ConfigMap with two keys: %+v", cm)
	}
	for _, kind := range []string{"VirtualService", "IPVSNode"} {
		want, err := scripts.HealthScript(kind)
		if err != nil {
			t.Fatal(err)
		}
		key := "resource.customizations.health.kubelvs.io_" + kind
		if got := cm.Data[key]; got != want {
			t.Errorf("%s differs from resource_customizations/kubelvs.io/%s/health.lua:\n%s", key, kind, got)
		}
		if _, err := Evaluate(want, map[string]any{"metadata": map[string]any{}}); err != nil {
			t.Errorf("%s on an object without status: %v", kind, err)
		}
		if !strings.HasPrefix(want, "--") {
			t.Errorf("%s: the script should start with its comment", kind)
		}
	}
}
