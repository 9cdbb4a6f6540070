package ipvs

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// Sentinel errors, for errors.Is. Every error of a [Client] method is an [*OpError] that
// matches at most one of them, and the kernel's errno too.
var (
	ErrServiceExists   = errors.New("ipvs: service exists")
	ErrServiceNotFound = errors.New("ipvs: service not found")
	ErrDestExists      = errors.New("ipvs: destination exists")
	ErrDestNotFound    = errors.New("ipvs: destination not found")
	// ErrSchedulerNotFound: the kernel has no scheduler (or persistence engine) of that name and
	// could not load its module.
	ErrSchedulerNotFound = errors.New("ipvs: scheduler or persistence engine not found")
	// ErrInvalid: a value the kernel (EINVAL, ERANGE, EAFNOSUPPORT) or this package refuses.
	ErrInvalid = errors.New("ipvs: invalid value")
	// ErrNotAvailable: the kernel has no IPVS (module not loaded, or not in this network
	// namespace).
	ErrNotAvailable = errors.New("ipvs: IPVS is not available in this kernel or network namespace")
	// ErrDaemonRunning: a sync daemon of that state is already running.
	ErrDaemonRunning = errors.New("ipvs: sync daemon already running")
	// ErrDaemonNotRunning: no sync daemon of that state is running.
	ErrDaemonNotRunning = errors.New("ipvs: sync daemon not running")
	// ErrNotSent: the operation never reached the kernel (its batch stopped before it); it is
	// safe to retry.
	ErrNotSent = errors.New("ipvs: operation not sent")
)

// OpError is the error of one operation: which, on what, and why, read once:
//
//	ipvs: add service TCP 10.0.0.1:80: service exists (file exists)
//
// It matches (errors.Is) its Kind and its Errno, and unwraps to Err.
type OpError struct {
	Op     OpKind
	Object string // the service or destination ("10.1.0.1:80 of TCP 10.0.0.1:80"); empty for the table's
	// Kind is the sentinel the failure maps to ([ErrServiceExists], ...), or nil.
	Kind error
	// Errno and Message are the kernel's answer (errno and extended-acknowledgement message);
	// Errno is 0 when the kernel did not refuse the request (validation, transport, context).
	Errno   syscall.Errno
	Message string
	// Err is the underlying error: the [*gnl.Error], the transport's or the validation's.
	Err error
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString("ipvs: ")
	b.WriteString(e.Op.String())
	if e.Object != "" {
		b.WriteString(" ")
		b.WriteString(e.Object)
	}
	b.WriteString(": ")
	kind := ""
	if e.Kind != nil {
		kind = strings.TrimPrefix(e.Kind.Error(), "ipvs: ")
	}
	switch {
	case e.Errno != 0:
		detail := e.Errno.Error()
		if e.Message != "" {
			detail += ": " + e.Message
		}
		if kind == "" {
			b.WriteString(detail)
		} else {
			b.WriteString(kind + " (" + detail + ")")
		}
	case e.Err == nil:
		b.WriteString(kind)
	case kind == "":
		b.WriteString(e.Err.Error())
	default:
		b.WriteString(kind + ": " + e.Err.Error())
	}
	return b.String()
}

// Is matches the sentinel and the errno (and ErrNotAvailable for an operation not sent because
// the kernel has no IPVS).
func (e *OpError) Is(target error) bool {
	if target == nil {
		return false
	}
	if target == e.Kind || target == ErrNotAvailable && errors.Is(e.Err, gnl.ErrFamilyNotFound) {
		return true
	}
	var errno syscall.Errno
	return e.Errno != 0 && errors.As(target, &errno) && errno == e.Errno
}

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

// invalidError is a value this package refuses before sending anything; it matches ErrInvalid.
type invalidError struct{ msg string }

func invalidf(format string, args ...any) error {
	return &invalidError{fmt.Sprintf(format, args...)}
}

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// opErr makes the OpError of a failed operation (nil for nil): the kernel's errno mapped to a
// sentinel by what the operation was.
//
// The kernel (ip_vs_ctl.c) answers ESRCH when the service of a command other than NEW_SERVICE
// does not exist (before looking at anything else), ENOENT when a destination does not exist or
// a scheduler or persistence-engine module cannot be found, EEXIST for duplicates,
// EINVAL/ERANGE/EAFNOSUPPORT for bad values.
func opErr(op OpKind, object string, err error) error {
	if err == nil {
		return nil
	}
	return newOpError(op, object, err)
}

func newOpError(op OpKind, object string, err error) *OpError {
	e := &OpError{Op: op, Object: object, Err: err}
	var ge *gnl.Error
	switch {
	case errors.Is(err, gnl.ErrFamilyNotFound): // before the controller's ENOENT it wraps
		e.Kind = ErrNotAvailable
	case errors.As(err, &ge):
		e.Errno, e.Message = ge.Errno, ge.Message
		e.Kind = errnoKind(op, ge.Errno)
	case errors.Is(err, ErrInvalid):
		e.Kind = ErrInvalid
	}
	return e
}

// notSent is the OpError of an operation never sent because of err.
func notSent(op OpKind, object string, err error) error {
	return &OpError{Op: op, Object: object, Kind: ErrNotSent, Err: err}
}

func errnoKind(op OpKind, errno syscall.Errno) error {
	switch errno {
	case syscall.EEXIST:
		switch op {
		case AddService, UpdateService:
			return ErrServiceExists
		case AddDestination, UpdateDestination:
			return ErrDestExists
		case StartDaemon:
			return ErrDaemonRunning
		}
	case syscall.ESRCH:
		if op == StopDaemon {
			return ErrDaemonNotRunning
		}
		return ErrServiceNotFound
	case syscall.ENOENT:
		switch op {
		case AddService, UpdateService:
			return ErrSchedulerNotFound
		case AddDestination, UpdateDestination, DeleteDestination:
			return ErrDestNotFound
		case DeleteService, GetService, ListDestinations, Zero:
			return ErrServiceNotFound
		}
	case syscall.EINVAL, syscall.ERANGE, syscall.EAFNOSUPPORT:
		return ErrInvalid
	}
	return nil
}
