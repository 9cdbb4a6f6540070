package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestInstall applies the rendering of config/default with a server-side dry run, then for
// real, and checks that every object is in the API server.
func TestInstall(t *testing.T) {
	objs := objects(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	want := map[string]int{"CustomResourceDefinition": 3, "Namespace": 1, "ServiceAccount": 2, "ClusterRole": 3,
		"ClusterRoleBinding": 2, "Role": 3, "RoleBinding": 3, "Deployment": 1, "DaemonSet": 1, "Service": 2}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("rendered %d %s, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
	install(t)
	for _, o := range objs {
		kind := strings.ToLower(o.GetKind())
		if g := o.GroupVersionKind().Group; g != "" {
			kind += "." + g
		}
		line := fmt.Sprintf("%s/%s serverside-applied (server dry run)", kind, o.GetName())
		if !strings.Contains(dryRunOut, line) {
			t.Errorf("dry run output lacks %q:\n%s", line, dryRunOut)
		}
	}
	if saAfterDryRun {
		t.Errorf("the dry run created ServiceAccount %s/kubelvs-agent", systemNS)
	}
	for _, o := range objs {
		u := o.DeepCopy()
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}, u); err != nil {
			t.Errorf("%s %s/%s after apply: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	// The CRDs the manifest carries are the ones the API server serves.
	for _, name := range []string{"virtualservices.kubelvs.io", "backendpools.kubelvs.io", "ipvsnodes.kubelvs.io"} {
		crd, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		must(t, err)
		if !slices.ContainsFunc(crd.Status.Conditions, func(c apiextensionsv1.CustomResourceDefinitionCondition) bool {
			return c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
		}) {
			t.Errorf("%s not established: %+v", name, crd.Status.Conditions)
		}
	}
	// A second apply changes nothing (GitOps tools see no drift in what we ship): no object's
	// resourceVersion moves.
	versions := func() map[string]string {
		m := map[string]string{}
		for _, o := range objs {
			u := o.DeepCopy()
			must(t, k8s.Get(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}, u))
			m[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = u.GetResourceVersion()
		}
		return m
	}
	before := versions()
	_, err := apply()
	must(t, err)
	for k, v := range versions() {
		if before[k] != v {
			t.Errorf("a second apply changed %s (resourceVersion %s -> %s)", k, before[k], v)
		}
	}
}

// TestWorkloadSecurity reads the controller Deployment and the agent DaemonSet back from the
// API server (after its defaulting) and checks what the README promises about them.
func TestWorkloadSecurity(t *testing.T) {
	install(t)
	var d appsv1.Deployment
	must(t, k8s.Get(ctx, types.NamespacedName{Namespace: systemNS, Name: "kubelvs-controller"}, &d))
	ps := d.Spec.Template.Spec
	c := ps.Containers[0]
	check := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s", what)
		}
	}
	check("controller: own ServiceAccount", ps.ServiceAccountName == "kubelvs-controller")
	check("controller: runAsNonRoot", ps.SecurityContext.RunAsNonRoot != nil && *ps.SecurityContext.RunAsNonRoot)
	check("controller: uid 65532", ps.SecurityContext.RunAsUser != nil && *ps.SecurityContext.RunAsUser == 65532)
	check("controller: seccomp RuntimeDefault", ps.SecurityContext.SeccompProfile != nil && ps.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault)
	check("controller: read-only root filesystem", c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem)
	check("controller: no privilege escalation", c.SecurityContext.AllowPrivilegeEscalation != nil && !*c.SecurityContext.AllowPrivilegeEscalation)
	check("controller: drops ALL, adds none", slices.Equal(c.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(c.SecurityContext.Capabilities.Add) == 0)
	check("controller: probes", c.LivenessProbe != nil && c.ReadinessProbe != nil && c.LivenessProbe.HTTPGet.Path == "/healthz" && c.ReadinessProbe.HTTPGet.Path == "/readyz")
	check("controller: leader election", slices.Contains(c.Args, "--leader-elect"))
	check("controller: not on the host network", !ps.HostNetwork)

	var ds appsv1.DaemonSet
	must(t, k8s.Get(ctx, types.NamespacedName{Namespace: systemNS, Name: "kubelvs-agent"}, &ds))
	ps = ds.Spec.Template.Spec
	c = ps.Containers[0]
	check("agent: own ServiceAccount", ps.ServiceAccountName == "kubelvs-agent")
	check("agent: host network", ps.HostNetwork && ps.DNSPolicy == corev1.DNSClusterFirstWithHostNet)
	check("agent: tolerates every taint", len(ps.Tolerations) == 1 && ps.Tolerations[0].Operator == corev1.TolerationOpExists && ps.Tolerations[0].Key == "" && ps.Tolerations[0].Effect == "")
	check("agent: only NET_ADMIN", slices.Equal(c.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"}) && slices.Equal(c.SecurityContext.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}))
	check("agent: not privileged", c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged)
	check("agent: read-only root filesystem", c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem)
	check("agent: seccomp RuntimeDefault", c.SecurityContext.SeccompProfile != nil && c.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault)
	check("agent: node name from the downward API", slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) && slices.Contains(c.Args, "--node-name=$(NODE_NAME)"))
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	hostPaths := map[string]string{}
	for _, v := range ps.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	check(fmt.Sprintf("agent: mounts %v of host paths %v", mounts, hostPaths),
		mounts["state"] == "/var/lib/kubelvs" && hostPaths["state"] == "/var/lib/kubelvs" &&
			mounts["host-sysctl-net"] == "/host/proc/sys/net" && hostPaths["host-sysctl-net"] == "/proc/sys/net" &&
			mounts["cgroup"] == "/host/sys/fs/cgroup" && hostPaths["cgroup"] == "/sys/fs/cgroup" && len(mounts) == 3)
	check("agent: the cgroup tree read only", slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == "cgroup" && m.ReadOnly
	}))
	check("agent: --cgroup-root matches the mount", slices.Contains(c.Args, "--cgroup-root=/host/sys/fs/cgroup"))
	check("agent: --sysctl-root matches the mount", slices.Contains(c.Args, "--sysctl-root=/host/proc/sys"))

	for _, name := range []string{"kubelvs-controller-metrics", "kubelvs-agent-metrics"} {
		var s corev1.Service
		must(t, k8s.Get(ctx, types.NamespacedName{Namespace: systemNS, Name: name}, &s))
		a := s.Annotations
		check(name+": scrape annotations", a["prometheus.io/scrape"] == "true" && a["prometheus.io/scheme"] == "https" &&
			a["prometheus.io/port"] == fmt.Sprint(s.Spec.Ports[0].Port) && a["prometheus.io/path"] == "/metrics")
	}
}

// TestLeastPrivilege asks the API server's authorizer (SubjectAccessReview) what each
// ServiceAccount may do: what its component needs, and nothing of what it must not do.
func TestLeastPrivilege(t *testing.T) {
	install(t)
	type ra = authorizationv1.ResourceAttributes
	cases := []struct {
		sa    string
		attr  ra
		allow bool
	}{
		{"kubelvs-controller", ra{Group: "kubelvs.io", Resource: "virtualservices", Verb: "watch"}, true},
		{"kubelvs-controller", ra{Group: "kubelvs.io", Resource: "virtualservices", Subresource: "status", Verb: "patch", Namespace: "app"}, true},
		{"kubelvs-controller", ra{Group: "kubelvs.io", Resource: "virtualservices", Verb: "update", Namespace: "app"}, false},
		{"kubelvs-controller", ra{Group: "kubelvs.io", Resource: "ipvsnodes", Subresource: "status", Verb: "patch"}, false},
		{"kubelvs-controller", ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Namespace: systemNS}, true},
		{"kubelvs-controller", ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Namespace: "default"}, false},
		{"kubelvs-controller", ra{Resource: "secrets", Verb: "list"}, false},
		{"kubelvs-controller", ra{Resource: "pods", Verb: "list"}, false},
		{"kubelvs-agent", ra{Group: "kubelvs.io", Resource: "ipvsnodes", Subresource: "status", Verb: "patch"}, true},
		{"kubelvs-agent", ra{Group: "kubelvs.io", Resource: "ipvsnodes", Verb: "delete"}, false},
		{"kubelvs-agent", ra{Group: "kubelvs.io", Resource: "virtualservices", Subresource: "status", Verb: "patch", Namespace: "app"}, false},
		{"kubelvs-agent", ra{Group: "kubelvs.io", Resource: "virtualservices", Verb: "list"}, true},
		{"kubelvs-agent", ra{Group: "discovery.k8s.io", Resource: "endpointslices", Verb: "watch"}, true},
		{"kubelvs-agent", ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "create", Namespace: systemNS}, true},
		{"kubelvs-agent", ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "delete", Namespace: systemNS}, false},
		{"kubelvs-agent", ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Namespace: "kube-node-lease"}, false},
		{"kubelvs-agent", ra{Resource: "nodes", Verb: "patch"}, false},
		{"kubelvs-agent", ra{Resource: "secrets", Verb: "get", Namespace: systemNS}, false},
	}
	for _, c := range cases {
		attr := c.attr
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               serviceAccountUser(c.sa),
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNS, "system:authenticated"},
			ResourceAttributes: &attr,
		}}
		got, err := clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		must(t, err)
		if got.Status.Allowed != c.allow {
			t.Errorf("%s %s %s/%s (%s) in %q: allowed=%v, want %v (%s)", c.sa, attr.Verb, attr.Resource, attr.Subresource, attr.Group, attr.Namespace, got.Status.Allowed, c.allow, got.Status.Reason)
		}
	}
}

func sar(sa, verb, resource, sub, ns string) *authorizationv1.SubjectAccessReview {
	return &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   serviceAccountUser(sa),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNS, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Group: "kubelvs.io", Resource: resource, Subresource: sub,
			Verb: verb, Namespace: ns},
	}}
}
