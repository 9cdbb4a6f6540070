package gnl

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// Ctrl is the generic netlink controller family, nlctrl, which names and describes the other
// families. It is declared with this package like any other family.
var Ctrl = &Family{Name: "nlctrl", Version: 2, ID: 0x10}

// Commands of nlctrl (linux/genetlink.h).
const (
	ctrlCmdNewFamily = 1
	ctrlCmdGetFamily = 3
)

// Attributes of nlctrl (linux/genetlink.h).
const (
	CtrlAttrFamilyID    = 1
	CtrlAttrFamilyName  = 2
	CtrlAttrVersion     = 3
	CtrlAttrHeaderSize  = 4
	CtrlAttrMaxAttr     = 5
	CtrlAttrOps         = 6
	CtrlAttrMcastGroups = 7
)

// Operation flags reported by nlctrl (GENL_* in linux/genetlink.h).
const (
	OpAdminPerm    = 0x01
	OpCmdCapDo     = 0x02
	OpCmdCapDump   = 0x04
	OpCmdCapHaspol = 0x08
	OpUnsAdminPerm = 0x10
)

// FamilyInfo is what the kernel reports about a family (CTRL_CMD_NEWFAMILY).
type FamilyInfo struct {
	ID         uint16     `gnl:"1" json:"id"`
	Name       string     `gnl:"2" json:"name"`
	Version    uint32     `gnl:"3" json:"version"`
	HeaderSize uint32     `gnl:"4" json:"headerSize"`
	MaxAttr    uint32     `gnl:"5" json:"maxAttr"`
	Ops        []Op       `gnl:"6" json:"ops"`
	Groups     []McastGrp `gnl:"7" json:"multicastGroups"`
	Unknown    []Attr     `gnl:",unknown" json:"-"`
}

// Op is one operation of a family, with its GENL_* flags.
type Op struct {
	ID    uint32 `gnl:"1" json:"id"`
	Flags uint32 `gnl:"2" json:"flags"`
}

// McastGrp is a multicast group of a family.
type McastGrp struct {
	Name string `gnl:"1" json:"name"`
	ID   uint32 `gnl:"2" json:"id"`
}

// CtrlRequest selects a family by id or name for [CtrlGetFamily]; empty, it dumps them all.
type CtrlRequest struct {
	ID   uint16 `gnl:"1,omitempty"`
	Name string `gnl:"2,omitempty"`
}

// CtrlGetFamily is nlctrl's CTRL_CMD_GETFAMILY. [Conn.Family] and [Conn.Families] use it.
var CtrlGetFamily = Command[CtrlRequest, FamilyInfo]{Family: Ctrl, Name: "GETFAMILY", Cmd: ctrlCmdGetFamily, Reply: ctrlCmdNewFamily}

// Family asks the kernel about a family by name. The answer is cached by the connection; a
// request that the kernel refuses with ENOENT or EINVAL looks the family up again, and is sent
// again once when the family's id changed (its module was unloaded and loaded again). A family the kernel does not have
// gives an error matching [ErrFamilyNotFound] and os.ErrNotExist.
func (c *Conn) Family(ctx context.Context, name string) (*FamilyInfo, error) {
	x, err := c.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("gnl: look up family %q: %w", name, err)
	}
	defer x.end()
	return c.familyLocked(x, name)
}

func (c *Conn) familyLocked(x *exchange, name string) (*FamilyInfo, error) {
	if fi, ok := c.fams[name]; ok {
		return fi, nil
	}
	fi := new(FamilyInfo)
	err := CtrlGetFamily.do(x.ctx, c, x, Ctrl.ID, &CtrlRequest{Name: name}, fi)
	var ge *Error
	switch {
	case errors.As(err, &ge) && ge.Errno == syscall.ENOENT:
		return nil, &familyNotFound{name: name, err: ge}
	case err != nil:
		return nil, err
	case fi.Name != name:
		return nil, fmt.Errorf("gnl: look up family %q: %w: answered with %q", name, ErrUnexpectedReply, fi.Name)
	}
	c.fams[name] = fi
	return fi, nil
}

// familyID resolves a family declaration to the id the kernel uses for it on this connection.
func (c *Conn) familyID(x *exchange, f *Family) (uint16, error) {
	if f.ID != 0 {
		return f.ID, nil
	}
	fi, err := c.familyLocked(x, f.Name)
	if err != nil {
		return 0, err
	}
	return fi.ID, nil
}

// staleFamilyError tells the kernel's answers to a request sent with a family id it no longer
// knows: genetlink answers ENOENT for an unknown id, and a family that took over the id answers
// EINVAL. The family itself may answer either too, so these only call for a lookup.
//
// The answers it looks at are the package's own, unwrapped: a type assertion, not errors.As,
// whose target would be allocated for every request and every batch result.
func staleFamilyError(err error) bool {
	ge, ok := err.(*Error) //nolint:errorlint // the package's own unwrapped kernel errors
	return ok && (ge.Errno == syscall.ENOENT || ge.Errno == syscall.EINVAL)
}

// refreshFamily looks a family up again after a request sent with its cached id failed with
// staleFamilyError: ids are cached for the connection's life, but a family that is unregistered
// and registered again (ip_vs unloaded and loaded) gets a new one. changed reports that the id
// moved, so the request never reached the family and may be sent again; a family whose id is
// fixed or unchanged answered for itself.
func (c *Conn) refreshFamily(x *exchange, f *Family, id uint16) (newID uint16, changed bool, err error) {
	if f.ID != 0 {
		return id, false, nil
	}
	delete(c.fams, f.Name)
	fi, err := c.familyLocked(x, f.Name)
	if err != nil {
		return 0, false, err
	}
	return fi.ID, fi.ID != id, nil
}

// Families lists every generic netlink family the kernel has in the socket's network namespace.
func (c *Conn) Families(ctx context.Context) ([]FamilyInfo, error) {
	return CtrlGetFamily.DumpAll(ctx, c, &CtrlRequest{})
}

// familyNotFound is nlctrl's ENOENT for a family name. It matches ErrFamilyNotFound and unwraps
// to the kernel's [*Error], so errors.Is(err, os.ErrNotExist) holds, and reads once:
// `gnl: look up family "IPVS": generic netlink family not found (no such file or directory)`.
type familyNotFound struct {
	name string
	err  *Error
}

func (e *familyNotFound) Error() string {
	return fmt.Sprintf("gnl: look up family %q: %v (%v)", e.name, ErrFamilyNotFound, e.err.Errno)
}

func (e *familyNotFound) Unwrap() []error { return []error{ErrFamilyNotFound, e.err} }
