//go:build !linux

package taskstats

import (
	"context"
	"errors"
)

// Listener receives the final records of exiting tasks; it exists only on Linux.
type Listener struct{}

// Listen fails: taskstats is a Linux interface.
func (c *Client) Listen(context.Context, *ListenConfig) (*Listener, error) {
	return nil, errors.ErrUnsupported
}

// Receive fails: taskstats is a Linux interface.
func (l *Listener) Receive(context.Context) (*Exit, error) { return nil, errors.ErrUnsupported }

// Dropped is 0.
func (l *Listener) Dropped() uint64 { return 0 }

// CPUs is empty.
func (l *Listener) CPUs() string { return "" }

// Close does nothing.
func (l *Listener) Close() error { return nil }
