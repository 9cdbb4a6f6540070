//go:build linux

package gnl_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// These tests talk to the kernel the tests run on. They need root (CAP_NET_ADMIN and
// CAP_SYS_ADMIN); CI runs as root, so there they never skip.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: talks to the real kernel's generic netlink with CAP_NET_ADMIN")
	}
}

// ensureTool installs a Debian package when its command is missing, as the project's scripts do.
func ensureTool(t *testing.T, cmd, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(cmd); err == nil {
		return p
	}
	script, err := filepath.Abs("../../hack/ensure-packages.sh")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(script, cmd+":"+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("installing %s: %v\n%s", pkg, err, out)
	}
	p, err := exec.LookPath(cmd)
	if err != nil {
		t.Fatalf("%s still missing after installing %s", cmd, pkg)
	}
	return p
}

func dialKernel(t *testing.T, cfg *gnl.Config) *gnl.Conn {
	t.Helper()
	needRoot(t)
	c, err := gnl.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// genlFamily is what `genl ctrl list` prints of a family.
type genlFamily struct {
	Name                string
	ID, Version         uint32
	HeaderSize, MaxAttr uint32
	Ops                 []uint32
	Groups              []string // "name=id"
}

var (
	reName  = regexp.MustCompile(`^Name: (\S+)`)
	reID    = regexp.MustCompile(`ID: 0x([0-9a-f]+)\s+Version: 0x([0-9a-f]+)\s+header size: (\d+)\s+max attribs: (\d+)`)
	reOp    = regexp.MustCompile(`^#\d+:\s+ID-0x([0-9a-f]+)\s*$`)
	reGroup = regexp.MustCompile(`^#\d+:\s+ID-0x([0-9a-f]+)\s+name: (\S+)`)
)

func parseGenl(t *testing.T, out []byte) map[string]*genlFamily {
	t.Helper()
	fams := map[string]*genlFamily{}
	var cur *genlFamily
	inGroups := false
	hex := func(s string) uint32 { v, _ := strconv.ParseUint(s, 16, 32); return uint32(v) }
	dec := func(s string) uint32 { v, _ := strconv.ParseUint(s, 10, 32); return uint32(v) }
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case reName.MatchString(line):
			cur = &genlFamily{Name: reName.FindStringSubmatch(line)[1]}
			fams[cur.Name] = cur
			inGroups = false
		case cur == nil:
		case reID.MatchString(line):
			m := reID.FindStringSubmatch(line)
			cur.ID, cur.Version, cur.HeaderSize, cur.MaxAttr = hex(m[1]), hex(m[2]), dec(m[3]), dec(m[4])
		case strings.HasPrefix(line, "multicast groups"):
			inGroups = true
		case inGroups && reGroup.MatchString(line):
			m := reGroup.FindStringSubmatch(line)
			cur.Groups = append(cur.Groups, fmt.Sprintf("%s=%d", m[2], hex(m[1])))
		case !inGroups && reOp.MatchString(line):
			cur.Ops = append(cur.Ops, hex(reOp.FindStringSubmatch(line)[1]))
		}
	}
	return fams
}

// Every family, compared with iproute2's `genl ctrl list`, family by family.
func TestKernelFamiliesMatchGenl(t *testing.T) {
	c := dialKernel(t, nil)
	genl := ensureTool(t, "genl", "iproute2")
	out, err := exec.Command(genl, "ctrl", "list").Output()
	if err != nil {
		t.Fatalf("genl ctrl list: %v", err)
	}
	want := parseGenl(t, out)
	if len(want) < 2 {
		t.Fatalf("parsed %d families from genl ctrl list:\n%s", len(want), out)
	}
	fams, err := c.Families(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*genlFamily{}
	for _, f := range fams {
		g := &genlFamily{Name: f.Name, ID: uint32(f.ID), Version: f.Version, HeaderSize: f.HeaderSize, MaxAttr: f.MaxAttr}
		for _, op := range f.Ops {
			g.Ops = append(g.Ops, op.ID)
		}
		for _, grp := range f.Groups {
			g.Groups = append(g.Groups, fmt.Sprintf("%s=%d", grp.Name, grp.ID))
		}
		got[f.Name] = g
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("families differ from genl ctrl list (-genl +gnl):\n%s", diff)
	}
	// Looking each one up by name agrees with the dump.
	for _, f := range fams {
		fi, err := c.Family(context.Background(), f.Name)
		if err != nil || fi.ID != f.ID {
			t.Errorf("Family(%q) = %+v, %v; the dump says id %d", f.Name, fi, err, f.ID)
		}
	}
}

func TestKernelResolve(t *testing.T) {
	c := dialKernel(t, nil)
	ctx := context.Background()
	for _, name := range []string{"nlctrl", "TASKSTATS"} {
		fi, err := c.Family(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi.Name != name || fi.ID == 0 || fi.Version == 0 || len(fi.Ops) == 0 {
			t.Errorf("%s: %+v", name, fi)
		}
	}
	missing := "IPVS"
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		missing = "KUBELVS_NOFAM" // this kernel has IPVS
	}
	_, err := c.Family(ctx, missing)
	if !errors.Is(err, os.ErrNotExist) || !errors.Is(err, gnl.ErrFamilyNotFound) {
		t.Errorf("%s: got %v, want an error matching os.ErrNotExist", missing, err)
	}
	var ge *gnl.Error
	if !errors.As(err, &ge) || ge.Errno != syscall.ENOENT {
		t.Errorf("%s: the kernel's errno is not kept: %#v", missing, err)
	}
}

// Pipelined requests on the real kernel: one result per request, a failure in the middle does
// not disturb the others.
func TestKernelBatch(t *testing.T) {
	c := dialKernel(t, nil)
	const n = 3000
	var b gnl.Batch
	for i := range n {
		name := "TASKSTATS"
		if i == 1234 {
			name = "KUBELVS_NOFAM" // GENL_NAMSIZ is 16
		}
		if err := gnl.CtrlGetFamily.Add(&b, &gnl.CtrlRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SendBatch(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		err := b.Err(i)
		if i == 1234 {
			if !errors.Is(err, os.ErrNotExist) {
				t.Errorf("request %d: got %v, want ENOENT", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if b.Sends() >= n/10 {
		t.Errorf("%d sendmsg calls for %d requests: not pipelined", b.Sends(), n)
	}
}

// Requests that succeed without a reply (TASKSTATS_CMD_GET with a cpumask to deregister, which
// the kernel accepts when nothing was registered) are answered only when they fail: the batch's
// results are exact, with the kernel's errno at the one request it refused.
func TestKernelBatchWithoutReplies(t *testing.T) {
	c := dialKernel(t, nil)
	type deregister struct {
		Mask string `gnl:"4"` // TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK
	}
	cmd := gnl.Command[deregister, struct{}]{Family: &gnl.Family{Name: "TASKSTATS", Version: 1}, Name: "GET", Cmd: 1}
	const n, bad = 3000, 1777
	var b gnl.Batch
	for i := range n {
		mask := "0"
		if i == bad {
			mask = "not-a-cpu-list"
		}
		if err := cmd.Add(&b, &deregister{Mask: mask}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SendBatch(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		err := b.Err(i)
		if i == bad {
			if !errors.Is(err, syscall.EINVAL) {
				t.Errorf("request %d: got %v, want EINVAL", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if b.Sends() >= n/100 {
		t.Errorf("%d sendmsg calls for %d requests: not pipelined", b.Sends(), n)
	}
}

// With a receive buffer far too small for the replies, the kernel drops messages (ENOBUFS):
// the requests whose acknowledgement was lost are reported, and the connection stays usable.
func TestKernelBatchOverflow(t *testing.T) {
	c := dialKernel(t, &gnl.Config{ReceiveBuffer: 4096})
	// Ask about the family with the largest description (ethtool's, with its ~50 operations,
	// on a kernel that has it): a window sized for a KiB per answer overflows.
	fams, err := c.Families(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	largest := slices.MaxFunc(fams, func(a, b gnl.FamilyInfo) int { return len(a.Ops) + len(a.Groups) - len(b.Ops) - len(b.Groups) })
	t.Logf("asking about %s (%d operations)", largest.Name, len(largest.Ops))
	const n = 2000
	var b gnl.Batch
	for range n {
		_ = gnl.CtrlGetFamily.Add(&b, &gnl.CtrlRequest{Name: largest.Name})
	}
	if err := c.SendBatch(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	checkOverflow(t, &b, n)
	if _, err := c.Family(context.Background(), "TASKSTATS"); err != nil {
		t.Errorf("connection after overflow: %v", err)
	}
}

// A socket opened in another network namespace sees that namespace's families: the same as
// iproute2 sees there, without the host's families that are not netnsok.
func TestKernelNetNS(t *testing.T) {
	needRoot(t)
	ip := ensureTool(t, "ip", "iproute2")
	genl := ensureTool(t, "genl", "iproute2")
	name := fmt.Sprintf("kubelvs-gnl-%d", os.Getpid())
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", name).Run() })
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := dialKernel(t, &gnl.Config{NetNS: int(f.Fd())})
	host := dialKernel(t, nil)
	ctx := context.Background()
	names := func(c *gnl.Conn) map[string]bool {
		fams, err := c.Families(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, f := range fams {
			m[f.Name] = true
		}
		return m
	}
	out, err := exec.Command(ip, "netns", "exec", name, genl, "ctrl", "list").Output()
	if err != nil {
		t.Fatalf("genl in the netns: %v", err)
	}
	want := map[string]bool{}
	for n := range parseGenl(t, out) {
		want[n] = true
	}
	got, onHost := names(c), names(host)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("families in the netns (-genl +gnl):\n%s", diff)
	}
	for n := range onHost {
		if !got[n] {
			if _, err := c.Family(ctx, n); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is hidden in the netns dump, but looking it up there gave %v", n, err)
			}
			return
		}
	}
	t.Errorf("every host family is visible in the new netns: the socket is not in it")
}

const unprivilegedEnv = "GNL_TEST_UNPRIVILEGED_CHILD"

// An unprivileged caller gets os.ErrPermission from an admin-only command: not a hang, not a
// panic. The test runs itself again as user nobody, without any capability.
func TestKernelUnprivileged(t *testing.T) {
	if os.Getenv(unprivilegedEnv) == "1" {
		unprivilegedChild(t)
		return
	}
	needRoot(t)
	dir, err := os.MkdirTemp("", "gnl-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // nobody must be able to run the copy
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "gnl.test")
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestKernelUnprivileged$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), unprivilegedEnv+"=1")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "unprivileged child: permission denied as expected") {
		t.Fatalf("unprivileged child: %v\n%s", err, out)
	}
}

func unprivilegedChild(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Fatal("the child still runs as root")
	}
	c, err := gnl.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	fi, err := c.Family(ctx, "TASKSTATS") // lookups are not privileged
	if err != nil {
		t.Fatal(err)
	}
	var adminOnly uint8
	for _, op := range fi.Ops {
		if op.Flags&gnl.OpAdminPerm != 0 {
			adminOnly = uint8(op.ID)
		}
	}
	if adminOnly == 0 {
		t.Fatalf("TASKSTATS has no admin-only command: %+v", fi.Ops)
	}
	fam := &gnl.Family{Name: "TASKSTATS", Version: 1}
	type pidReq struct {
		PID uint32 `gnl:"1"`
	}
	cmd := gnl.Command[pidReq, struct{}]{Family: fam, Name: "GET", Cmd: adminOnly}
	err = cmd.Exec(ctx, c, &pidReq{PID: uint32(os.Getpid())})
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("admin-only command as nobody: got %v, want os.ErrPermission", err)
	}
	fmt.Println("unprivileged child: permission denied as expected:", err)
}

// Requests with replies pipelined on the real kernel: every family's description, in one batch,
// equals what the dump says.
func TestKernelBatchWithReplies(t *testing.T) {
	c := dialKernel(t, nil)
	ctx := context.Background()
	fams, err := c.Families(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b gnl.Batch
	got := make([]gnl.FamilyInfo, len(fams))
	for i, f := range fams {
		if err := gnl.CtrlGetFamily.AddDo(&b, &gnl.CtrlRequest{Name: f.Name}, func(fi *gnl.FamilyInfo) error {
			got[i] = *fi
			got[i].Ops = slices.Clone(fi.Ops)
			got[i].Groups = slices.Clone(fi.Groups)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	_ = gnl.CtrlGetFamily.AddDo(&b, &gnl.CtrlRequest{Name: "KUBELVS_NOFAM"}, func(*gnl.FamilyInfo) error {
		t.Error("a reply for a family that does not exist")
		return nil
	})
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	for i := range fams {
		if err := b.Err(i); err != nil {
			t.Errorf("%s: %v", fams[i].Name, err)
		}
	}
	if err := b.Err(len(fams)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing family: %v", err)
	}
	if diff := cmp.Diff(fams, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("batched lookups differ from the dump (-dump +batch):\n%s", diff)
	}
	if b.Sends() != 1 {
		t.Errorf("%d sends", b.Sends())
	}
}

// On a real socket too, Close interrupts a Listen blocked in recvmmsg and returns at once.
func TestKernelCloseInterruptsListen(t *testing.T) {
	c := dialKernel(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- gnl.CtrlGetFamily.Listen(ctx, c, func(*gnl.FamilyInfo, error) error { return nil })
	}()
	time.Sleep(50 * time.Millisecond) // let Listen block in its read
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close blocked while a Listen held the connection")
	}
	select {
	case err := <-done:
		if !errors.Is(err, gnl.ErrClosed) {
			t.Errorf("Listen after Close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Listen did not return after Close")
	}
}
