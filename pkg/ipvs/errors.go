package ipvs

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// Sentinel errors, for errors.Is. Errors from the kernel also keep the errno and the
// [*gnl.Error] with the kernel's message.
var (
	ErrServiceExists   = errors.New("ipvs: service exists")
	ErrServiceNotFound = errors.New("ipvs: service not found")
	ErrDestExists      = errors.New("ipvs: destination exists")
	ErrDestNotFound    = errors.New("ipvs: destination not found")
	// ErrSchedulerNotFound: the kernel has no scheduler (or persistence engine) of that name and
	// could not load its module.
	ErrSchedulerNotFound = errors.New("ipvs: scheduler or persistence engine not found")
	// ErrInvalid: a value the kernel (EINVAL, ERANGE) or this package refuses.
	ErrInvalid = errors.New("ipvs: invalid value")
	// ErrNotAvailable: the kernel has no IPVS (module not loaded, or not in this network
	// namespace).
	ErrNotAvailable = errors.New("ipvs: IPVS is not available in this kernel or network namespace")
	// ErrDaemonRunning: a sync daemon of that state is already running.
	ErrDaemonRunning = errors.New("ipvs: sync daemon already running")
	// ErrDaemonNotRunning: no sync daemon of that state is running.
	ErrDaemonNotRunning = errors.New("ipvs: sync daemon not running")
)

// opKind says which operation failed, to map errnos to sentinels.
type opKind uint8

const (
	opOther opKind = iota
	opAddService
	opUpdateService
	opDeleteService
	opGetService
	opAddDest
	opUpdateDest
	opDeleteDest
	opDaemon
)

// classify maps a kernel error of an operation to the package's sentinels, keeping err.
// schedMissing is consulted for ENOENT on service adds and updates (nil: assume the scheduler).
//
// The kernel (ip_vs_ctl.c) answers ESRCH when the service of a set/delete/destination command
// does not exist, ENOENT when a destination does not exist or a scheduler/persistence-engine
// module cannot be found, EEXIST for duplicates, EINVAL/ERANGE for bad values.
func classify(k opKind, what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, gnl.ErrFamilyNotFound) {
		return fmt.Errorf("%w: %w", ErrNotAvailable, err)
	}
	var ge *gnl.Error
	if !errors.As(err, &ge) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var s error
	switch ge.Errno {
	case syscall.EEXIST:
		switch k {
		case opAddService, opUpdateService:
			s = ErrServiceExists
		case opAddDest, opUpdateDest:
			s = ErrDestExists
		case opDaemon:
			s = ErrDaemonRunning
		}
	case syscall.ESRCH:
		s = ErrServiceNotFound
		if k == opDaemon {
			s = ErrDaemonNotRunning
		}
	case syscall.ENOENT:
		switch k {
		case opAddService, opUpdateService:
			s = ErrSchedulerNotFound
		case opAddDest, opUpdateDest, opDeleteDest:
			s = ErrDestNotFound
		case opDeleteService, opGetService:
			s = ErrServiceNotFound
		}
	case syscall.EINVAL, syscall.ERANGE, syscall.EAFNOSUPPORT:
		s = ErrInvalid
	}
	if s == nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %w", s, what, err)
}
