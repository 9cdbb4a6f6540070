package podstats

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/internal/testenv"
)

const policyFile = "config/agent/pod-status-policy.yaml"

// TestPolicyListsEveryPodStatusField: the policy compares every PodStatus field but conditions,
// so a field added to k8s.io/api must be added to it.
func TestPolicyListsEveryPodStatusField(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), policyFile))
	if err != nil {
		t.Fatal(err)
	}
	st := reflect.TypeFor[corev1.PodStatus]()
	for i := range st.NumField() {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		if name == "conditions" {
			continue
		}
		if !bytes.Contains(b, []byte("object.status."+name+")")) {
			t.Errorf("%s does not compare status.%s", policyFile, name)
		}
	}
}

// applyFile creates every object of a YAML file of the repository (a cluster-scoped copy of
// namespaced ones is not needed here).
func applyFile(t *testing.T, ctx context.Context, rel string, keep func(*unstructured.Unstructured) bool) {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RepoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if u.Object == nil || (keep != nil && !keep(&u)) {
			continue
		}
		if err := env.Client.Create(ctx, &u); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %s %s from %s: %v", u.GetKind(), u.GetName(), rel, err)
		}
	}
}

// TestPodStatusPolicy: the API server, with the agent's RBAC and admission policy, lets the agent's
// service account (impersonated, with the node-name claim of its bound token) patch the TaskDelays
// condition of a pod on its node, and denies it a pod on another node and any other status field.
func TestPodStatusPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubelvs-system"}}
	if err := env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	applyFile(t, ctx, "config/agent/role.yaml", nil)
	applyFile(t, ctx, "config/agent/role_binding.yaml", func(u *unstructured.Unstructured) bool { return u.GetKind() == "ClusterRoleBinding" })
	applyFile(t, ctx, policyFile, nil)

	own, other := makePod(t, ctx, "policy-own", "node-a"), makePod(t, ctx, "policy-other", "node-b")
	agentClient := func(extra map[string][]string) client.Client {
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:kubelvs-system:kubelvs-agent",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kubelvs-system", "system:authenticated"}, Extra: extra}
		c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	onNodeA := agentClient(map[string][]string{"authentication.kubernetes.io/node-name": {"node-a"}})
	rec := NewReconciler(Config{Node: "node-a", Writer: onNodeA})
	cond := Condition{Status: corev1.ConditionTrue, Reason: ReasonDelaysLow, Message: "cpu=1.0% io=0.0% mem=0.0% procs=1 window=30s"}
	patch := func(c client.Client, p *corev1.Pod, body string) error {
		return c.Status().Patch(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}},
			client.RawPatch(types.StrategicMergePatchType, []byte(body)))
	}

	// The policy takes effect once the API server has loaded it: wait for the first denial.
	var err error
	for range 200 {
		if err = rec.write(ctx, other, nil, cond, time.Now()); err != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "kubelvs-agent may change only pods on its own node (token node node-a, pod node node-b)") {
		t.Fatalf("a pod on another node: %v, want the policy's denial", err)
	}

	if err := rec.write(ctx, own, nil, cond, time.Now()); err != nil {
		t.Fatalf("the agent's own node's pod: %v", err)
	}
	var got corev1.Pod
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(own), &got); err != nil {
		t.Fatal(err)
	}
	if c := condition(&got); c == nil || c.Message != cond.Message || len(got.Status.Conditions) != 4 {
		t.Errorf("own pod's conditions after the patch: %+v", got.Status.Conditions)
	}

	only := "kubelvs-agent may change only the kubelvs.io/TaskDelays condition of a pod's status"
	for _, tc := range []struct{ name, body string }{
		{"the kubelet's Ready condition", `{"status":{"conditions":[{"type":"Ready","status":"False"}]}}`},
		{"another condition added", `{"status":{"conditions":[{"type":"example.com/Other","status":"True"}]}}`},
		{"status.message", `{"status":{"message":"hello"}}`},
		{"status.phase", `{"status":{"phase":"Failed"}}`},
		{"status.podIP", `{"status":{"podIP":"10.0.0.9","podIPs":[{"ip":"10.0.0.9"}]}}`},
	} {
		err := patch(onNodeA, own, tc.body)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), only) {
			t.Errorf("%s: %v, want the policy's denial", tc.name, err)
		}
	}
	if err := rec.write(ctx, own, nil, cond, time.Now()); err != nil {
		t.Errorf("own pod again: %v", err)
	}
	noClaim := NewReconciler(Config{Writer: agentClient(nil)})
	if err := noClaim.write(ctx, own, nil, cond, time.Now()); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "token node missing") {
		t.Errorf("a token without the node-name claim: %v", err)
	}
}
