package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// IPVSKernel is the Kernel of production: pkg/ipvs's client.
type IPVSKernel struct{ *ipvs.Client }

// Destinations dumps the destinations of one service.
func (k *IPVSKernel) Destinations(ctx context.Context, s *lvs.Service) ([]ipvs.Destination, error) {
	return k.Client.Destinations(ctx, s.Key())
}

// SetSysctl writes value to <root>/<name> (root: /proc/sys, or where the host's is mounted) as
// seen from the network namespace netns (the agent's own when empty): net.* sysctls are per
// namespace, and /proc/sys/net shows the namespace of the thread that opens it.
func SetSysctl(root, netns, name, value string) (string, error) {
	path := filepath.Join(root, name)
	if netns == "" {
		return writeSysctl(path, value)
	}
	type result struct {
		v   string
		err error
	}
	errc := make(chan result, 1)
	go func() {
		// The thread that enters the namespace is never handed back to the scheduler: it dies
		// with this goroutine (no UnlockOSThread).
		runtime.LockOSThread()
		f, err := os.Open(netns)
		if err != nil {
			errc <- result{err: fmt.Errorf("agent: sysctl %s: open netns: %w", name, err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- result{err: fmt.Errorf("agent: sysctl %s: enter netns %s: %w", name, netns, err)}
			return
		}
		v, err := writeSysctl(path, value)
		errc <- result{v, err}
	}()
	r := <-errc
	return r.v, r.err
}

// Sysctl sets name (slash form, under root) to value in netns and returns what IPVSNode
// reports: the dotted name and the value read back, or why it could not be set.
func Sysctl(root, netns, name, value string) (v1alpha1.Sysctl, error) {
	out := v1alpha1.Sysctl{Name: strings.ReplaceAll(name, "/", ".")}
	v, err := SetSysctl(root, netns, name, value)
	if err != nil {
		out.Value = truncate("unset: "+err.Error(), 256)
		return out, err
	}
	out.Value = v
	return out, nil
}

// writeSysctl writes value and returns what the file then reads.
func writeSysctl(path, value string) (string, error) {
	// Never O_CREATE: a sysctl the kernel lacks must fail, not become a file.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(value + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return "", fmt.Errorf("agent: sysctl %s=%s: %w", path, value, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("agent: sysctl %s: read back: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// TrimObject is the agent's cache transform: it drops what the agent never reads (managed
// fields, kubectl's last-applied annotation, Service status) so that 10,000 VirtualServices
// and their EndpointSlices cost less memory.
func TrimObject(o any) (any, error) {
	obj, ok := o.(client.Object)
	if !ok {
		return o, nil
	}
	obj.SetManagedFields(nil)
	if a := obj.GetAnnotations(); a != nil {
		if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
			delete(a, corev1.LastAppliedConfigAnnotation)
			obj.SetAnnotations(a)
		}
	}
	if s, ok := o.(*corev1.Service); ok {
		s.Status = corev1.ServiceStatus{}
	}
	return o, nil
}
