//go:build ipvsvm

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

var (
	k8s        client.Client
	kubeconfig string
	kubelvs    string
	nodes      = map[string]*agentProc{}
	logDir     string
)

// The two "nodes": network namespaces with an agent each; n1 is in zone a, n2 in zone b.
var nodeLabels = map[string]map[string]string{"n1": {"zone": "a"}, "n2": {"zone": "b"}}

func TestMain(m *testing.M) {
	// The test binary is also the echo server of the delay-aware test's pods.
	if name := os.Getenv(echoServerEnv); name != "" {
		os.Exit(echoServerMain(name))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	kubeconfig, kubelvs = os.Getenv("KUBELVS_KUBECONFIG"), os.Getenv("KUBELVS_BIN")
	if kubeconfig == "" || kubelvs == "" {
		fmt.Fprintln(os.Stderr, "FAIL: e2e needs the VM of `hack/vm/run-tests.sh -apiserver` (KUBELVS_KUBECONFIG and KUBELVS_BIN unset)")
		return 1
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: e2e: kubeconfig:", err)
		return 1
	}
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: e2e: client:", err)
		return 1
	}
	logDir, _ = os.MkdirTemp("", "e2e-logs-")
	ctx := context.Background()
	for i, name := range []string{"n1", "n2"} {
		if out, err := exec.Command("/sbin/ip", "netns", "add", name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: e2e: ip netns add %s: %v %s\n", name, err, out)
			return 1
		}
		_ = exec.Command("/sbin/ip", "-n", name, "link", "set", "lo", "up").Run()
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: nodeLabels[name]}}
		if err := k8s.Create(ctx, n); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: e2e: create node:", err)
			return 1
		}
		a := &agentProc{node: name, metrics: 9700 + 10*i, probe: 9701 + 10*i, stateDir: filepath.Join(os.TempDir(), "state-"+name)}
		if err := a.start(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: e2e:", err)
			return 1
		}
		nodes[name] = a
	}
	ctrlProc, err := startController()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: e2e:", err)
		return 1
	}
	code := m.Run()
	for _, a := range nodes {
		a.stop()
	}
	_ = ctrlProc.Process.Signal(syscall.SIGTERM)
	_, _ = ctrlProc.Process.Wait()
	if code != 0 {
		dumpLogs()
	}
	return code
}

func dumpLogs() {
	files, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		fmt.Fprintf(os.Stderr, "--- last lines of %s\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
}

func startController() (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(logDir, "controller.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(kubelvs, "controller", "--kubeconfig", kubeconfig, "--leader-elect=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kubelvs controller: %w", err)
	}
	return cmd, nil
}

// agentProc is one node's `kubelvs agent` process.
type agentProc struct {
	node           string
	metrics, probe int
	stateDir       string
	cmd            *exec.Cmd
	starts         int
	// netns is the node's namespace name (default: node); extra are more agent flags.
	netns string
	extra []string
}

func (a *agentProc) start() error {
	a.starts++
	logf, err := os.Create(filepath.Join(logDir, fmt.Sprintf("agent-%s-%d.log", a.node, a.starts)))
	if err != nil {
		return err
	}
	netns := a.netns
	if netns == "" {
		netns = a.node
	}
	a.cmd = exec.Command(kubelvs, append([]string{"agent", "--node-name", a.node, "--kubeconfig", kubeconfig,
		"--netns", "/run/netns/" + netns, "--state-dir", a.stateDir, "--audit-period", "3s",
		"--drain-poll-period", "500ms", "--retry-period", "1s", "--lease-namespace", "default",
		"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(a.metrics), "--metrics-secure=false",
		"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(a.probe)}, a.extra...)...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		return fmt.Errorf("start agent %s: %w", a.node, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", a.probe))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("agent %s not ready within 60 s", a.node)
}

// kill ends the agent with SIGKILL, as a crash or an OOM kill would.
func (a *agentProc) kill() {
	_ = a.cmd.Process.Kill()
	_, _ = a.cmd.Process.Wait()
}

func (a *agentProc) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	_, _ = a.cmd.Process.Wait()
}

// metric returns the sum of the samples of a metric whose labels contain every filter.
func (a *agentProc) metric(t *testing.T, name string, filters ...string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", a.metrics))
	if err != nil {
		t.Fatalf("scrape %s: %v", a.node, err)
	}
	defer resp.Body.Close()
	return sumMetric(resp.Body, name, filters...)
}

func sumMetric(r io.Reader, name string, filters ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, f := range filters {
			ok = ok && strings.Contains(line, f)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// sh runs a command and fails the test with its output when it fails.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipvsadm runs ipvsadm in a node's namespace.
func ipvsadm(t *testing.T, node string, args ...string) string {
	t.Helper()
	return sh(t, "/sbin/ip", append([]string{"netns", "exec", node, "ipvsadm"}, args...)...)
}

// table returns the lines of `ipvsadm -Sn` in node that mention one of the addresses, sorted.
func table(t *testing.T, node string, addrs ...string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(ipvsadm(t, node, "-Sn"), "\n") {
		for _, a := range addrs {
			if strings.Contains(l, " "+a+":") || strings.Contains(l, " ["+a+"]:") || strings.Contains(l, "-f "+a+" ") || strings.HasSuffix(l, "-f "+a) {
				out = append(out, strings.TrimSpace(l))
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

func eventually(t *testing.T, what string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
