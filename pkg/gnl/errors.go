package gnl

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors, for errors.Is. Their text is the cause in the package's errors, which read
// "gnl: OPERATION OBJECT: cause (errno)", so it carries no "gnl:" of its own.
var (
	// ErrMalformed: a message or attribute could not be decoded (truncated, wrong size, bad length).
	ErrMalformed = errors.New("malformed netlink data")
	// ErrTooLarge: an attribute would exceed netlink's 64 KiB attribute length.
	ErrTooLarge = errors.New("attribute too large")
	// ErrDumpInterrupted: the kernel flagged a dump NLM_F_DUMP_INTR because the table changed
	// while it was being read. The result is torn; run the dump again.
	ErrDumpInterrupted = errors.New("dump interrupted by a concurrent change (retry)")
	// ErrFamilyNotFound: the kernel has no generic netlink family of that name in this network
	// namespace. It also matches os.ErrNotExist.
	ErrFamilyNotFound = errors.New("generic netlink family not found")
	// ErrAckLost: the kernel dropped the acknowledgement of a batched request because the
	// socket's receive buffer overflowed (ENOBUFS); whether the request took effect is unknown.
	ErrAckLost = errors.New("acknowledgement lost, outcome unknown")
	// ErrUnexpectedReply: a reply did not match the request (command, sequence or port).
	ErrUnexpectedReply = errors.New("unexpected reply")
	// ErrClosed: the connection was closed.
	ErrClosed = errors.New("connection closed")
)

// Error is an error the kernel returned for one request. It unwraps to the kernel's errno, so
// errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission) and
// errors.Is(err, syscall.EEXIST) work.
type Error struct {
	// Family and Command name the request.
	Family  string
	Command string
	// Errno is the kernel's error number.
	Errno syscall.Errno
	// Message and Offset are the kernel's extended acknowledgement, when it sent one.
	Message string
	Offset  int
}

// Error reads "gnl: FAMILY COMMAND: kernel message (errno)", or without a message
// "gnl: FAMILY COMMAND: errno".
func (e *Error) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("gnl: %s %s: %s (%v)", e.Family, e.Command, e.Message, e.Errno)
	}
	return fmt.Sprintf("gnl: %s %s: %v", e.Family, e.Command, e.Errno)
}

// Unwrap returns the errno.
func (e *Error) Unwrap() error { return e.Errno }

// requestError is the form of every error about one request: "gnl: FAMILY COMMAND: cause".
// The cause reads without the prefix, so that the message says "gnl:" once.
func requestError(family, command string, cause error) error {
	return fmt.Errorf("gnl: %s %s: %w", family, command, cause)
}
