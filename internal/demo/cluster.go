package demo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/internal/kubeletcg"
)

// node is one demo node: a network namespace with its own IPVS table and a `kubelvs agent`.
type node struct {
	name    string
	netns   string // name under /run/netns
	labels  map[string]string
	metrics int // the agent's metrics port (plain HTTP on 127.0.0.1)
	probe   int
	agent   *proc
}

func (n *node) netnsPath() string { return "/run/netns/" + n.netns }

// proc is a child process whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc starts name with args, its output in dir/<what>.log. The child gets SIGKILL when
// the demo's thread that started it dies (Pdeathsig), so that even a killed demo leaves none.
func startProc(dir, what, name string, args ...string) (*proc, error) {
	p := &proc{name: what, log: filepath.Join(dir, what+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, fmt.Errorf("demo: log of %s: %w", what, err)
	}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the starting thread exits: start from a locked thread that lives
	// until the child has been waited for.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := p.cmd.Start(); err != nil {
			errc <- err
			return
		}
		errc <- nil
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	if err := <-errc; err != nil {
		f.Close()
		return nil, fmt.Errorf("demo: start %s: %w", what, err)
	}
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM and waits up to 20 s, then SIGKILL.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	if done, _ := p.exited(); done {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last lines of the process's log.
func (p *proc) tail(lines int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// ipPath is iproute2's ip: /sbin/ip in the hack/vm guest (busybox's applet cannot move links
// between namespaces), else whatever PATH has.
func ipPath() string {
	if _, err := os.Stat("/sbin/ip"); err == nil {
		return "/sbin/ip"
	}
	return "ip"
}

func ipcmd(args ...string) error {
	out, err := exec.Command(ipPath(), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("demo: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// addNetns creates a network namespace with lo up (IPVS refuses IPv4 destinations in a
// namespace whose lo is down).
func addNetns(name string) error {
	if err := ipcmd("netns", "add", name); err != nil {
		return err
	}
	return ipcmd("-n", name, "link", "set", "lo", "up")
}

// ensureNode creates the Node object, or sets its labels when it exists (the envtest API server
// of `make test-vm` is shared with other suites that use the same node names).
func ensureNode(ctx context.Context, c client.Client, name string, labels map[string]string) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	err := c.Create(ctx, n)
	if apierrors.IsAlreadyExists(err) {
		if err = c.Get(ctx, client.ObjectKey{Name: name}, n); err == nil {
			n.Labels = labels
			err = c.Update(ctx, n)
		}
	}
	if err != nil {
		return fmt.Errorf("demo: node %s: %w", name, err)
	}
	return nil
}

func (d *Demo) startAgent(n *node) error {
	p, err := startProc(d.logDir, "agent-"+n.name, d.opts.Kubelvs, "agent", "--node-name", n.name,
		"--kubeconfig", d.opts.Kubeconfig, "--netns", n.netnsPath(),
		"--state-dir", filepath.Join(d.logDir, "state-"+n.name), "--audit-period", "10s",
		"--drain-poll-period", "500ms", "--retry-period", "1s", "--lease-namespace", "default",
		"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(n.metrics), "--metrics-secure=false",
		"--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(n.probe),
		// Pod taskstats: the demo's pod cgroups, a short window, and delay accounting on (off
		// by default since Linux 5.14), so that the TaskDelays step sees a change within seconds.
		"--cgroup-root", d.cg.Root, "--taskstats-window", taskstatsWindow.String(), "--enable-delayacct")
	if err != nil {
		return err
	}
	n.agent = p
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", n.probe)
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if done, err := p.exited(); done {
			return fmt.Errorf("demo: agent %s exited (%w):\n%s", n.name, err, p.tail(20))
		}
		if resp, err := http.Get(url); err == nil { //nolint:gosec,noctx // a fixed local URL
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("demo: agent %s not ready within 90 s:\n%s", n.name, p.tail(20))
}

func (d *Demo) startController() error {
	p, err := startProc(d.logDir, "controller", d.opts.Kubelvs, "controller", "--kubeconfig", d.opts.Kubeconfig,
		"--leader-elect=false", "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	if err != nil {
		return err
	}
	d.controller = p
	return nil
}

// startPodProc starts a process of backend b's container and moves it into the container's
// cgroup, as a container runtime would.
func (d *Demo) startPodProc(b *backend, container, what string, argv ...string) (*proc, error) {
	dir, err := d.cg.Container(b.uid, container)
	if err != nil {
		return nil, err
	}
	p, err := startProc(d.logDir, what, argv[0], argv[1:]...)
	if err != nil {
		return nil, err
	}
	d.podProcs = append(d.podProcs, p)
	b.procs = append(b.procs, p)
	if err := kubeletcg.Join(dir, p.cmd.Process.Pid); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// checkProcs fails when the controller or an agent has ended.
func (d *Demo) checkProcs() error {
	ps := []*proc{d.controller}
	for _, n := range d.nodes {
		ps = append(ps, n.agent)
	}
	var errs []error
	for _, p := range ps {
		if p == nil {
			continue
		}
		if done, err := p.exited(); done {
			errs = append(errs, fmt.Errorf("demo: %s exited (%w):\n%s", p.name, err, p.tail(20)))
		}
	}
	return errors.Join(errs...)
}
