package deploy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// component is a running kubelvs binary and its endpoints.
type component struct {
	*proc
	metrics, probes string
}

var (
	controllerOnce sync.Once
	controller     *component
)

// startController runs `kubelvs controller` with the Deployment's arguments (bind addresses
// moved to free local ports), acting as the kubelvs-controller ServiceAccount, once per
// package run, and waits for it to be ready and to lead.
func startController(t *testing.T) *component {
	t.Helper()
	install(t)
	controllerOnce.Do(func() {
		c := &component{metrics: freeAddr(t), probes: freeAddr(t)}
		args := containerArgs(t, workload(t, "Deployment", "kubelvs-controller"),
			map[string]string{"metadata.namespace": systemNS},
			map[string]string{"metrics-bind-address": c.metrics, "health-probe-bind-address": c.probes})
		c.proc = start(t, append(args, "--kubeconfig="+impersonating(t, "kubelvs-controller"))...)
		waitReady(t, c)
		eventually(t, "the controller's leader election Lease", func() error {
			var l coordinationv1.Lease
			if err := k8s.Get(ctx, types.NamespacedName{Namespace: systemNS, Name: "kubelvs-controller.kubelvs.io"}, &l); err != nil {
				return err
			}
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
				return fmt.Errorf("no holder")
			}
			return nil
		}, c.logs)
		controller = c
	})
	if controller == nil {
		t.Fatal("the controller did not start (see the first test that started it)")
	}
	return controller
}

func waitReady(t *testing.T, c *component) {
	t.Helper()
	eventually(t, "/readyz", func() error {
		select {
		case <-c.exited:
			t.Fatalf("kubelvs exited: %v\n%s", c.exitErr, c.logs())
		default:
		}
		resp, err := http.Get("http://" + c.probes + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}, c.logs)
}

// appNamespace makes a namespace with a Service "web" whose EndpointSlice has one ready
// endpoint.
func appNamespace(t *testing.T, name string) {
	t.Helper()
	must(t, k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	must(t, k8s.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}))
	must(t, k8s.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: name, Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}))
}

func virtualService(ns, name, addr string, selector map[string]string) *v1alpha1.VirtualService {
	vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.VirtualServiceSpec{
			Addresses:   []string{addr},
			Ports:       []v1alpha1.VirtualServicePort{{Name: "http", Port: 80, Protocol: v1alpha1.ProtocolTCP}},
			BackendRefs: []v1alpha1.BackendRef{{Name: "web"}},
		}}
	if selector != nil {
		vs.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: selector}
	}
	return vs
}

// statusObserved waits until the controller has written status for the VirtualService's
// current generation, and returns it.
func statusObserved(t *testing.T, key types.NamespacedName, logs func() string) *v1alpha1.VirtualService {
	t.Helper()
	var vs v1alpha1.VirtualService
	eventually(t, "status of "+key.String(), func() error {
		if err := k8s.Get(ctx, key, &vs); err != nil {
			return err
		}
		if vs.Status.ObservedGeneration != vs.Generation || len(vs.Status.Conditions) == 0 {
			return fmt.Errorf("observedGeneration %d of %d, %d conditions", vs.Status.ObservedGeneration, vs.Generation, len(vs.Status.Conditions))
		}
		return nil
	}, logs)
	return &vs
}

// TestControllerUnderItsRBAC runs the controller with exactly the permissions config/default
// gives its ServiceAccount: it leads, reconciles a VirtualService's status and records events
// without a single "forbidden"; with the status rule removed it fails on exactly that, and
// recovers when the manifest is applied again.
func TestControllerUnderItsRBAC(t *testing.T) {
	c := startController(t)
	appNamespace(t, "app")
	must(t, k8s.Create(ctx, virtualService("app", "web", "192.0.2.10", nil)))
	vs := statusObserved(t, types.NamespacedName{Namespace: "app", Name: "web"}, c.logs)
	if cond := findCondition(vs.Status.Conditions, v1alpha1.ConditionAccepted); cond == nil || cond.Status != metav1.ConditionTrue {
		t.Errorf("Accepted: %+v", vs.Status.Conditions)
	}
	eventually(t, "an event on app/web from the controller", func() error {
		evs, err := clientset.EventsV1().Events("app").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == "web" && e.ReportingController == "kubelvs-controller" {
				return nil
			}
		}
		return fmt.Errorf("%d events, none from kubelvs-controller on web", len(evs.Items))
	}, c.logs)
	if strings.Contains(c.logs(), "forbidden") {
		t.Fatalf("the controller was refused something with its ServiceAccount's permissions:\n%s", c.logs())
	}

	// Remove virtualservices/status from the ClusterRole: status writes must fail, and say so.
	var role rbacv1.ClusterRole
	must(t, k8s.Get(ctx, types.NamespacedName{Name: "kubelvs-controller"}, &role))
	removed := false
	for i, r := range role.Rules {
		if j := slices.Index(r.Resources, "virtualservices/status"); j >= 0 {
			role.Rules[i].Resources = slices.Delete(r.Resources, j, j+1)
			removed = true
		}
	}
	if !removed {
		t.Fatalf("the controller's ClusterRole has no virtualservices/status rule: %+v", role.Rules)
	}
	must(t, k8s.Update(ctx, &role))
	t.Cleanup(func() { _, _ = apply("--force-conflicts") }) // whatever happens below
	waitAllowed(t, "kubelvs-controller", "patch", "virtualservices", "status", "app", false)
	must(t, k8s.Create(ctx, virtualService("app", "web2", "192.0.2.11", nil)))
	want := `cannot patch resource "virtualservices/status" in API group "kubelvs.io" in the namespace "app"`
	eventually(t, "the controller's error on the missing rule", func() error {
		// The logs are JSON: quotes in the error arrive escaped.
		if !strings.Contains(strings.ReplaceAll(c.logs(), `\"`, `"`), want) {
			return fmt.Errorf("no log line with %q", want)
		}
		return nil
	}, c.logs)
	var vs2 v1alpha1.VirtualService
	must(t, k8s.Get(ctx, types.NamespacedName{Namespace: "app", Name: "web2"}, &vs2))
	if vs2.Status.ObservedGeneration != 0 || len(vs2.Status.Conditions) != 0 {
		t.Fatalf("status written without the rule: %+v", vs2.Status)
	}

	// The manifest restores the rule (forcing: the edit above made the test the rules' manager,
	// as a hand edit would); the controller's retry then writes the status.
	_, err := apply("--force-conflicts")
	must(t, err)
	statusObserved(t, types.NamespacedName{Namespace: "app", Name: "web2"}, c.logs)
}

// waitAllowed waits until the authorizer's answer for the ServiceAccount is allowed (RBAC
// changes reach the authorizer through its informers).
func waitAllowed(t *testing.T, sa, verb, resource, sub, ns string, allowed bool) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s may %s %s/%s: %v", sa, verb, resource, sub, allowed), func() error {
		got, err := clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar(sa, verb, resource, sub, ns), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if got.Status.Allowed != allowed {
			return fmt.Errorf("allowed=%v", got.Status.Allowed)
		}
		return nil
	})
}

func findCondition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

var (
	tokenOnce sync.Once
	token     string
)

// scraperToken returns a token of a ServiceAccount bound to kubelvs-metrics-reader, the
// ClusterRole config/rbac ships for Prometheus.
func scraperToken(t *testing.T) string {
	t.Helper()
	tokenOnce.Do(func() {
		token = saToken(t, "scraper")
		must(t, k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scraper-metrics"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "kubelvs-metrics-reader"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: systemNS, Name: "scraper"}},
		}))
	})
	if token == "" {
		t.Fatal("no scraper token")
	}
	return token
}

func saToken(t *testing.T, name string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: systemNS, Name: name}}
	if err := k8s.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr, err := clientset.CoreV1().ServiceAccounts(systemNS).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	must(t, err)
	return tr.Status.Token
}

// scrape GETs https://addr/metrics with the bearer token and returns the status and body; a
// failed request is status 0 with the error as the body (the endpoint may not listen yet).
func scrape(t *testing.T, addr, bearer string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the binaries' self-signed serving certificate
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}

// TestMetricsNeedTheReaderRole scrapes the controller's HTTPS metrics: a token bound to
// kubelvs-metrics-reader is served (the controller's own tokenreviews and
// subjectaccessreviews rules at work), one without it is refused.
func TestMetricsNeedTheReaderRole(t *testing.T) {
	c := startController(t)
	eventually(t, "metrics with the reader role", func() error {
		code, body := scrape(t, c.metrics, scraperToken(t))
		if code != http.StatusOK || !strings.Contains(body, "controller_runtime_reconcile_total") {
			return fmt.Errorf("status %d: %.300s", code, body)
		}
		return nil
	}, c.logs)
	if code, body := scrape(t, c.metrics, saToken(t, "nobody")); code != http.StatusForbidden {
		t.Errorf("a token without kubelvs-metrics-reader: status %d, want 403: %.300s", code, body)
	}
}
