package demo

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

// cgroups is the demo's stand-in for the kubelet's cgroup tree: a cgroup of its own in the
// cgroup2 filesystem (mounted by the demo when nothing has mounted one, as in hack/vm's busybox
// guest), under which each backend pod gets the cgroups the kubelet's systemd driver and
// containerd would make. The agents get its root as --cgroup-root, so pod taskstats finds the
// pods' processes the way it does on a real node.
type cgroups struct {
	root    string   // the agents' --cgroup-root
	mounted string   // where the demo mounted cgroup2, if it did
	made    []string // directories made, in order (removed in reverse)
}

// newCgroups makes the demo's cgroup root under the first cgroup2 mount, or mounts one.
func newCgroups() (*cgroups, error) {
	cg := &cgroups{}
	base, err := cgroup2Mount()
	if err != nil {
		return nil, err
	}
	if base == "" {
		if base, err = os.MkdirTemp("", "kubelvs-demo-cgroup2-"); err != nil {
			return nil, fmt.Errorf("demo: cgroup2 mount point: %w", err)
		}
		if err := unix.Mount("cgroup2", base, "cgroup2", 0, ""); err != nil {
			_ = os.Remove(base)
			return nil, fmt.Errorf("demo: mount cgroup2 on %s: %w", base, err)
		}
		cg.mounted = base
	}
	cg.root = filepath.Join(base, "kubelvs-demo-"+strconv.Itoa(os.Getpid()))
	if err := cg.mkdir(cg.root); err != nil {
		return cg, err
	}
	return cg, nil
}

// cgroup2Mount returns the mount point of the first cgroup2 filesystem in /proc/self/mountinfo,
// or "" when there is none.
func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
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

func (cg *cgroups) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("demo: make cgroup %s: %w", dir, err)
	}
	cg.made = append(cg.made, dir)
	return nil
}

// podContainer makes the cgroups of one container of a Burstable pod (systemd driver,
// containerd) and returns the container's cgroup. The container ID is derived from the pod UID
// and the container's name.
func (cg *cgroups) podContainer(uid, container string) (string, error) {
	u := strings.ReplaceAll(uid, "-", "_")
	id := sha256.Sum256([]byte(uid + "/" + container))
	dir := cg.root
	for _, el := range []string{"kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod" + u + ".slice",
		"cri-containerd-" + hex.EncodeToString(id[:]) + ".scope"} {
		dir = filepath.Join(dir, el)
		if _, err := os.Stat(dir); err == nil {
			continue
		}
		if err := cg.mkdir(dir); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// join moves a process into a cgroup (as the container runtime does before it execs the
// container's process).
func join(cgroup string, pid int) error {
	err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	if err != nil {
		return fmt.Errorf("demo: move process %d into %s: %w", pid, cgroup, err)
	}
	return nil
}

// close removes the cgroups the demo made (their processes must have ended) and unmounts
// cgroup2 if the demo mounted it.
func (cg *cgroups) close() error {
	if cg == nil {
		return nil
	}
	var errs []error
	for i := len(cg.made) - 1; i >= 0; i-- {
		// A killed process leaves its cgroup a moment after it has been reaped.
		var err error
		for range 50 {
			if err = unix.Rmdir(cg.made[i]); err == nil || errors.Is(err, unix.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("demo: remove cgroup %s: %w", cg.made[i], err))
		}
	}
	cg.made = nil
	if cg.mounted != "" && len(errs) == 0 {
		if err := unix.Unmount(cg.mounted, 0); err != nil {
			errs = append(errs, fmt.Errorf("demo: unmount %s: %w", cg.mounted, err))
		} else {
			_ = os.Remove(cg.mounted)
		}
		cg.mounted = ""
	}
	return errors.Join(errs...)
}
