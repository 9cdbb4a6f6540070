package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// IPVSKernel is the Kernel of production: pkg/ipvs's client, opened on first use and again on
// each use after a failed open, so that an agent started before IPVS is there (the module not
// loaded yet) reports IPVSAvailable=False in its IPVSNode and carries on once it is.
type IPVSKernel struct {
	// Open opens the client (in the agent's namespace or --netns).
	Open func(ctx context.Context) (*ipvs.Client, error)
	// Opened, when set, runs after each successful open (the IPVS sysctls exist only once
	// the module is loaded: the agent sets them here).
	Opened func(ctx context.Context, c *ipvs.Client)

	mu sync.Mutex
	c  *ipvs.Client
}

func (k *IPVSKernel) client(ctx context.Context) (*ipvs.Client, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c == nil {
		c, err := k.Open(ctx)
		if err != nil {
			return nil, err
		}
		k.c = c
		if k.Opened != nil {
			k.Opened(ctx, c)
		}
	}
	return k.c, nil
}

// Apply applies a batch; every operation fails with the open error when IPVS cannot be opened.
func (k *IPVSKernel) Apply(ctx context.Context, ops []ipvs.Op) ([]error, error) {
	c, err := k.client(ctx)
	if err != nil {
		res := make([]error, len(ops))
		for i := range res {
			res[i] = err
		}
		return res, err
	}
	return c.Apply(ctx, ops)
}

// Table reads the whole table.
func (k *IPVSKernel) Table(ctx context.Context) ([]ipvs.TableEntry, error) {
	c, err := k.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Table(ctx)
}

// Services dumps the services, without their destinations.
func (k *IPVSKernel) Services(ctx context.Context) ([]ipvs.Service, error) {
	c, err := k.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Services(ctx)
}

// Destinations dumps the destinations of one service.
func (k *IPVSKernel) Destinations(ctx context.Context, s *lvs.Service) ([]ipvs.Destination, error) {
	c, err := k.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Destinations(ctx, s.Key())
}

// Info reads the IPVS version and connection table size.
func (k *IPVSKernel) Info(ctx context.Context) (ipvs.Info, error) {
	c, err := k.client(ctx)
	if err != nil {
		return ipvs.Info{}, err
	}
	return c.Info(ctx)
}

// Close closes the client, if it was opened.
func (k *IPVSKernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c == nil {
		return nil
	}
	err := k.c.Close()
	k.c = nil
	return err
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
