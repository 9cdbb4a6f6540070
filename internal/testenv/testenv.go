// Package testenv starts a real kube-apiserver and etcd (controller-runtime envtest) for the
// test suites of a package, with the kubelvs CRDs installed. It is used from TestMain, once per
// package.
//
// The binaries come from hack/envtest-assets.sh, which builds them from source and caches them
// under ~/.cache/kubelvs/envtest/<version>; `make test` points KUBEBUILDER_ASSETS there. When
// the binaries are missing the suite fails, it does not skip: run `make envtest-assets`.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	apiruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// K8sVersion is the version of the API server binaries the tests run against.
const K8sVersion = "v1.37.2"

// ErrNoAssets means the envtest binaries are not where KUBEBUILDER_ASSETS or the cache says.
var ErrNoAssets = errors.New("envtest binaries (kube-apiserver, etcd) not found; run `make envtest-assets` (builds them from source once: measured 73 minutes on 2 shared, busy cores, most of it kube-apiserver)")

// Env is a running API server with the kubelvs CRDs.
type Env struct {
	Env    *envtest.Environment
	Config *rest.Config
	Scheme *apiruntime.Scheme
	Client client.Client
	// Kubeconfig is a kubeconfig file for the API server (for kubectl).
	Kubeconfig string
	// AssetsDir holds kube-apiserver, etcd and kubectl.
	AssetsDir string
	dir       string
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// AssetsDir returns the directory of the envtest binaries: $KUBEBUILDER_ASSETS, else the
// cache hack/envtest-assets.sh fills.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrNoAssets, err)
		}
		dir = filepath.Join(home, ".cache", "kubelvs", "envtest", K8sVersion)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w (looked in %s)", ErrNoAssets, dir)
		}
	}
	return dir, nil
}

// Scheme returns a scheme with the client-go types and the kubelvs API.
func Scheme() *apiruntime.Scheme {
	s := apiruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Start starts etcd and kube-apiserver and installs the CRDs from config/crd/bases.
func Start() (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	scheme := Scheme()
	te := &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		BinaryAssetsDirectory:    assets,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 3 * time.Minute, // 2 shared cores: the first start can be slow
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest (kube-apiserver and etcd from %s): %w", assets, err)
	}
	e := &Env{Env: te, Config: cfg, Scheme: scheme, AssetsDir: assets}
	stop := func(err error) (*Env, error) {
		_ = te.Stop()
		return nil, err
	}
	e.Client, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return stop(fmt.Errorf("creating a client: %w", err))
	}
	e.dir, err = os.MkdirTemp("", "kubelvs-envtest-")
	if err != nil {
		return stop(err)
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, te.KubeConfig, 0o600); err != nil {
		return stop(err)
	}
	return e, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error {
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
	return e.Env.Stop()
}

// Kubectl runs the kubectl built with the API server against it and returns its combined
// output.
func (e *Env) Kubectl(args ...string) (string, error) {
	path := filepath.Join(e.AssetsDir, "kubectl")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("kubectl not in %s (hack/envtest-assets.sh builds it): %w", e.AssetsDir, err)
	}
	cmd := exec.Command(path, append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

// Main is TestMain's body for packages with envtest suites: it starts the API server, runs
// the tests and stops it. A missing API server fails the package.
func Main(run func(*Env) int) int {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: envtest:", err)
		return 1
	}
	code := run(e)
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	return code
}
