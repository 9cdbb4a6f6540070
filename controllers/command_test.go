package controllers

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/internal/testenv"
)

// TestControllerCommand builds the kubelvs binary and runs `kubelvs controller` against the
// test API server: it must win leader election, answer its health and readiness probes and
// stop cleanly on SIGTERM.
func TestControllerCommand(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kubelvs")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kubelvs")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building kubelvs: %v\n%s", err, out)
	}
	probes := freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "controller", "--kubeconfig", env.Kubeconfig,
		"--leader-election-namespace", "default", "--leader-election-id", "kubelvs-command-test",
		"--metrics-bind-address", "0", "--health-probe-bind-address", probes)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()

	for _, path := range []string{"/healthz", "/readyz"} {
		eventually(t, "kubelvs controller "+path, func() error {
			resp, err := http.Get("http://" + probes + path)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
	}
	eventually(t, "the leader election Lease", func() error {
		var l coordinationv1.Lease
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "kubelvs-command-test"}, &l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("no holder")
		}
		return nil
	})
	must(t, cmd.Process.Signal(os.Interrupt))
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("kubelvs controller exited with %v after SIGINT\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kubelvs controller did not stop within 30 s of SIGINT\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "starting") {
		t.Errorf("no start-up log line:\n%s", logs.String())
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	must(t, l.Close())
	return addr
}
