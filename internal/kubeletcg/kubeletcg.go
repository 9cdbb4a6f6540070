package kubeletcg

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Tree is a cgroup of its own in the cgroup2 filesystem, the cgroup root of the pods made in
// it. Not safe for concurrent use.
type Tree struct {
	// Root is the tree's directory: the agent's --cgroup-root.
	Root    string
	mounted string   // where New mounted cgroup2, if it did
	made    []string // directories made, in order (removed in reverse)
}

// New makes the cgroup <first cgroup2 mount>/<name>-<pid>, mounting a cgroup2 filesystem on a
// temporary directory first when none is mounted.
func New(name string) (*Tree, error) {
	base, err := Cgroup2Mount()
	if err != nil {
		return nil, err
	}
	t := &Tree{}
	if base == "" {
		if base, err = os.MkdirTemp("", "kubelvs-cgroup2-"); err != nil {
			return nil, fmt.Errorf("kubeletcg: cgroup2 mount point: %w", err)
		}
		if err := unix.Mount("cgroup2", base, "cgroup2", 0, ""); err != nil {
			_ = os.Remove(base)
			return nil, fmt.Errorf("kubeletcg: mount cgroup2 on %s: %w", base, err)
		}
		t.mounted = base
	}
	t.Root = filepath.Join(base, name+"-"+strconv.Itoa(os.Getpid()))
	if err := t.mkdir(t.Root); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	return t, nil
}

// Cgroup2Mount returns the mount point of the first cgroup2 filesystem in /proc/self/mountinfo
// (/sys/fs/cgroup on a pure cgroup v2 host, /sys/fs/cgroup/unified on a hybrid one), or "" when
// there is none.
func Cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("kubeletcg: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// id parent major:minor root mount-point options [optional...] - fstype source options
		fields := strings.Fields(sc.Text())
		if i := slices.Index(fields, "-"); i > 4 && i+1 < len(fields) && fields[i+1] == "cgroup2" {
			return fields[4], nil
		}
	}
	return "", nil
}

func (t *Tree) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("kubeletcg: make cgroup %s: %w", dir, err)
	}
	t.made = append(t.made, dir)
	return nil
}

// PodDir is the cgroup of a Burstable pod with UID uid (systemd driver), relative to the root.
func PodDir(uid string) string {
	u := strings.ReplaceAll(uid, "-", "_")
	return filepath.Join("kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod"+u+".slice")
}

// ContainerID is the 64 hex digits containerd would give the container of the pod: here derived
// from the pod UID and the container's name, so that the same container gets the same cgroup.
func ContainerID(uid, container string) string {
	id := sha256.Sum256([]byte(uid + "/" + container))
	return hex.EncodeToString(id[:])
}

// Container makes (when missing) the cgroups of one container of a Burstable pod, as the
// kubelet's systemd driver and containerd name them, and returns the container's cgroup.
func (t *Tree) Container(uid, container string) (string, error) {
	if uid == "" || strings.ContainsAny(uid, "/.") {
		return "", fmt.Errorf("kubeletcg: pod UID %q: %w", uid, os.ErrInvalid)
	}
	dir := t.Root
	for _, el := range append(strings.Split(PodDir(uid), string(filepath.Separator)),
		"cri-containerd-"+ContainerID(uid, container)+".scope") {
		dir = filepath.Join(dir, el)
		if _, err := os.Stat(dir); err == nil {
			continue
		}
		if err := t.mkdir(dir); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// Join moves a process into a cgroup (as the container runtime does before it execs the
// container's process).
func Join(cgroup string, pid int) error {
	err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	if err != nil {
		return fmt.Errorf("kubeletcg: move process %d into %s: %w", pid, cgroup, err)
	}
	return nil
}

// Close removes the cgroups the tree made, leaves first (their processes must have ended: a
// killed process leaves its cgroup a moment after it has been reaped, which Close waits up to
// a second for), and unmounts cgroup2 if New mounted it. A nil Tree is closed.
func (t *Tree) Close() error {
	if t == nil {
		return nil
	}
	var errs []error
	for i := len(t.made) - 1; i >= 0; i-- {
		var err error
		for range 50 {
			if err = unix.Rmdir(t.made[i]); err == nil || errors.Is(err, unix.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("kubeletcg: remove cgroup %s: %w", t.made[i], err))
		}
	}
	t.made = nil
	if t.mounted != "" && len(errs) == 0 {
		if err := unix.Unmount(t.mounted, 0); err != nil {
			errs = append(errs, fmt.Errorf("kubeletcg: unmount %s: %w", t.mounted, err))
		} else {
			_ = os.Remove(t.mounted)
		}
		t.mounted = ""
	}
	return errors.Join(errs...)
}
