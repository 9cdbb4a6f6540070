//go:build !linux

package ipvs

import (
	"errors"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

func openDumpTransport(*Config) (gnl.Transport, error) {
	return nil, errors.New("ipvs: netlink sockets need Linux")
}
