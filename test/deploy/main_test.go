package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/internal/testenv"
)

const systemNS = "kubelvs-system"

var (
	env       *testenv.Env
	k8s       client.Client // admin, no cache
	clientset *kubernetes.Clientset
	apiext    *apiextensionsclient.Clientset
	bin       string // the kubelvs binary, built once
	rendered  string // `kubectl kustomize config/default`, written to a file
	workDir   string
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(func(e *testenv.Env) int {
		env, k8s = e, e.Client
		var err error
		if clientset, err = kubernetes.NewForConfig(e.Config); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: clientset:", err)
			return 1
		}
		if apiext, err = apiextensionsclient.NewForConfig(e.Config); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: clientset:", err)
			return 1
		}
		if workDir, err = os.MkdirTemp("", "kubelvs-deploy-"); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			return 1
		}
		defer os.RemoveAll(workDir)
		bin = filepath.Join(workDir, "kubelvs")
		build := exec.Command("go", "build", "-o", bin, "./cmd/kubelvs")
		build.Dir = testenv.RepoRoot()
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: building kubelvs: %v\n%s", err, out)
			return 1
		}
		out, err := e.Kubectl("kustomize", filepath.Join(testenv.RepoRoot(), "config", "default"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: rendering config/default:", err)
			return 1
		}
		rendered = filepath.Join(workDir, "kubelvs.yaml")
		if err := os.WriteFile(rendered, []byte(out), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			return 1
		}
		code := m.Run()
		stopAll()
		return code
	}))
}

// objects decodes the rendered manifest.
func objects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(rendered)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("decoding the rendered manifest: %v", err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

var (
	installOnce sync.Once
	// What the first install saw: the dry run's output and error, whether a ServiceAccount
	// of the manifest existed after it, and the real apply's error.
	dryRunOut     string
	dryRunErr     error
	saAfterDryRun bool
	installErr    error
)

// install applies the rendered manifest once per package run, whichever test comes first
// (TestInstall checks what the dry run did): the Namespace for real (a server-side dry run of
// a namespaced object fails while its namespace does not exist, and a real apply creates the
// Namespace first as it comes first in the rendering), then everything with a server-side dry
// run, then everything for real.
func install(t *testing.T) {
	t.Helper()
	installOnce.Do(func() {
		nsFile := filepath.Join(workDir, "namespace.yaml")
		ns := fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", systemNS)
		if dryRunErr = os.WriteFile(nsFile, []byte(ns), 0o600); dryRunErr != nil {
			return
		}
		if _, dryRunErr = env.Kubectl("apply", "--server-side", "--field-manager", "kubelvs-install", "-f", nsFile); dryRunErr != nil {
			return
		}
		dryRunOut, dryRunErr = apply("--dry-run=server")
		saAfterDryRun = k8s.Get(ctx, client.ObjectKey{Namespace: systemNS, Name: "kubelvs-agent"}, &corev1.ServiceAccount{}) == nil
		_, installErr = apply()
	})
	if dryRunErr != nil {
		t.Fatal(dryRunErr)
	}
	if installErr != nil {
		t.Fatal(installErr)
	}
}

// apply server-side applies the rendered manifest: what `kubectl apply --server-side -k
// config/default` does. Applying it again restores any rule a test removed.
func apply(extra ...string) (string, error) {
	return env.Kubectl(append([]string{"apply", "--server-side", "--field-manager", "kubelvs-install", "-f", rendered}, extra...)...)
}

// impersonating writes a kubeconfig for the test API server that acts as the ServiceAccount
// kubelvs-system/sa (the envtest user is in system:masters, which may impersonate).
func impersonating(t *testing.T, sa string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = serviceAccountUser(sa)
	}
	path := filepath.Join(t.TempDir(), sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func serviceAccountUser(sa string) string { return "system:serviceaccount:" + systemNS + ":" + sa }

// proc is a running kubelvs binary with its output.
type proc struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	out     bytes.Buffer
	exited  chan struct{} // closed when the process has exited, exitErr set
	exitErr error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

// start runs the kubelvs binary with args until stop (or the end of the package's tests).
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	var out io.Writer = p
	if dir := os.Getenv("KUBELVS_TEST_LOGS"); dir != "" { // also keep the logs (debugging)
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.log", args[0], time.Now().UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		out = io.MultiWriter(p, f)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting kubelvs %v: %v", args, err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.exited) }()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p
}

func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func stopAll() {
	procsMu.Lock()
	defer procsMu.Unlock()
	for _, p := range procs {
		p.stop()
	}
}

// containerArgs returns the arguments of the named workload's only container as the kubelet
// would pass them: each $(VAR) of a downward-API env var replaced by fields[fieldPath], then
// the flags in overrides set to their values (bind addresses, host paths). A flag in overrides
// that the manifest lacks fails the test: the manifest and the test must agree.
func containerArgs(t *testing.T, spec map[string]any, fields, overrides map[string]string) []string {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(spec, "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("want one container, got %d", len(containers))
	}
	c := containers[0].(map[string]any)
	vars := map[string]string{}
	envs, _, _ := unstructured.NestedSlice(c, "env")
	for _, e := range envs {
		em := e.(map[string]any)
		path, ok, _ := unstructured.NestedString(em, "valueFrom", "fieldRef", "fieldPath")
		if !ok {
			continue
		}
		v, ok := fields[path]
		if !ok {
			t.Fatalf("env %v: no value for the downward-API field %s", em["name"], path)
		}
		vars[em["name"].(string)] = v
	}
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	seen := map[string]bool{}
	for i, a := range args {
		for k, v := range vars {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		if name, _, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok {
			if v, ok := overrides[name]; ok {
				a = "--" + name + "=" + v
				seen[name] = true
			}
		}
		if strings.Contains(a, "$(") {
			t.Fatalf("argument %q refers to a variable the container does not define", a)
		}
		args[i] = a
	}
	for name := range overrides {
		if !seen[name] {
			t.Fatalf("the manifest's args %q have no --%s", args, name)
		}
	}
	return args
}

// workload returns a rendered object's spec by kind and name.
func workload(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	for _, o := range objects(t) {
		if o.GetKind() == kind && o.GetName() == name {
			spec, _, _ := unstructured.NestedMap(o.Object, "spec")
			return spec
		}
	}
	t.Fatalf("the rendered manifest has no %s %s", kind, name)
	return nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// eventually polls check until it returns nil, failing after two minutes (a slow, shared
// machine) with the last error and the given context.
func eventually(t *testing.T, what string, check func() error, context ...func() string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%s: %v", what, err)
			for _, c := range context {
				msg += "\n" + c()
			}
			t.Fatal(msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var ctx = context.Background()
