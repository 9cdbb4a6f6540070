//go:build !linux

package gnl

import (
	"fmt"
	"runtime"
)

type socketTransport struct{ Transport }

func dialSocket(*Config) (*socketTransport, error) {
	return nil, fmt.Errorf("gnl: generic netlink needs Linux, not %s", runtime.GOOS)
}
