package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
func SetSysctl(root, netns, name, value string) error {
	path := filepath.Join(root, name)
	if netns == "" {
		return writeSysctl(path, value)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread that enters the namespace is never handed back to the scheduler: it dies
		// with this goroutine (no UnlockOSThread).
		runtime.LockOSThread()
		f, err := os.Open(netns)
		if err != nil {
			errc <- fmt.Errorf("agent: sysctl %s: open netns: %w", name, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("agent: sysctl %s: enter netns %s: %w", name, netns, err)
			return
		}
		errc <- writeSysctl(path, value)
	}()
	return <-errc
}

func writeSysctl(path, value string) error {
	if err := os.WriteFile(path, []byte(value+"\n"), 0); err != nil {
		return fmt.Errorf("agent: sysctl %s=%s: %w", path, value, err)
	}
	return nil
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
