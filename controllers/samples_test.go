package controllers

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/testenv"
)

// TestSamples applies config/samples with kubectl (server-side dry run, then for real) and
// checks what `kubectl get lvs` shows once the controller has written status.
func TestSamples(t *testing.T) {
	ns := newNamespace(t)
	samples := filepath.Join(testenv.RepoRoot(), "config", "samples")
	out, err := env.Kubectl("apply", "--dry-run=server", "-n", ns, "-k", samples)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"virtualservice.kubelvs.io/web created (server dry run)", "backendpool.kubelvs.io/legacy created (server dry run)"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if _, err := env.Kubectl("apply", "-n", ns, "-k", samples); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, types.NamespacedName{Namespace: ns, Name: "web"}, expect{conds: conds(v1alpha1.ConditionAccepted, T+"/Accepted")})
	waitStatus(t, types.NamespacedName{Namespace: ns, Name: "marked"}, expect{conds: conds(v1alpha1.ConditionAccepted, T+"/Accepted")})

	out, err = env.Kubectl("get", "lvs", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NAME ADDRESSES PORTS READY NODES BACKENDS AGE" {
		t.Fatalf("kubectl get lvs header %q", lines[0])
	}
	rows := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[0]] = strings.Join(f[1:len(f)-1], " ") // without AGE
	}
	// No nodes exist in this namespace's selectors except those other tests made; the samples
	// select all nodes (web) or lb=true nodes (api): check the stable columns.
	for name, want := range map[string]string{
		"web":    `^192\.0\.2\.10 80/TCP False \d+/\d+ 0$`,
		"api":    `^192\.0\.2\.20,2001:db8::20 443/TCP False 0/0 0$`,
		"legacy": `^192\.0\.2\.30 80/TCP,443/TCP False \d+/\d+ 2$`,
		"dns":    `^192\.0\.2\.53 53/UDP False \d+/\d+ 0$`,
		"marked": `^fwmark:16 False \d+/\d+ 0$`, // no ports: an empty column
	} {
		if !regexp.MustCompile(want).MatchString(rows[name]) {
			t.Errorf("kubectl get lvs row %s = %q, want %s\n%s", name, rows[name], want, out)
		}
	}
	if out, err := env.Kubectl("get", "kubelvs", "-n", ns, "-o", "name"); err != nil || !strings.Contains(out, "backendpool.kubelvs.io/legacy") {
		t.Errorf("kubectl get kubelvs (category): %v\n%s", err, out)
	}
}

// TestDeployManifests applies config/default (CRDs, RBAC, the controller Deployment) with a
// server-side dry run, so the manifests are checked by the real API server.
func TestDeployManifests(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubelvs-system"}}
	if err := k8s.Create(context.Background(), ns); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	out, err := env.Kubectl("apply", "--dry-run=server", "-k", filepath.Join(testenv.RepoRoot(), "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"deployment.apps/kubelvs-controller", "clusterrole.rbac.authorization.k8s.io/kubelvs-controller",
		"customresourcedefinition.apiextensions.k8s.io/virtualservices.kubelvs.io"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if _, err := env.Kubectl("apply", "--dry-run=server", "-k", filepath.Join(testenv.RepoRoot(), "config", "agent")); err != nil {
		t.Error(err)
	}
}
