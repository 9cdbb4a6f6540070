package podstats

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ErrPodCgroupNotFound is matched by the error of a pod whose cgroup is in none of the layouts.
var ErrPodCgroupNotFound = errors.New("podstats: pod cgroup not found")

// DefaultHierarchies are where a cgroup v1 (or hybrid) host's pod cgroups are looked for, in
// order, below the cgroup root: the unified hierarchy of a hybrid host, then v1 controllers
// every pod cgroup is in. A pure cgroup v2 host (cgroup.controllers at the root) uses the root.
var DefaultHierarchies = []string{"unified", "pids", "cpu,cpuacct", "cpu", "memory", "systemd"}

// Discoverer finds the processes of a pod: pod UID → pod cgroup (cgroup v2 or v1, systemd or
// cgroupfs driver, any QoS class) → its container cgroups (containerd, CRI-O and Docker names,
// nested cgroups included, CRI-O's conmon left out) → cgroup.procs. Each PID is re-checked
// against /proc/<pid>/cgroup by [Discoverer.InPod], because PIDs get reused. Safe for concurrent
// use.
type Discoverer struct {
	// CgroupRoot is where the host's cgroup filesystem is mounted (default /sys/fs/cgroup).
	CgroupRoot string
	// ProcRoot is the host's procfs (default /proc; the agent runs with hostPID).
	ProcRoot string
	// Hierarchies overrides DefaultHierarchies for cgroup v1 hosts.
	Hierarchies []string

	mu    sync.Mutex
	cache map[string]string // pod UID → pod cgroup directory found last
}

// Pod is what discovery found of one pod.
type Pod struct {
	// Dir is the pod's cgroup directory and Name its last element (kubepods-…-pod<uid>.slice or
	// pod<uid>), which /proc/<pid>/cgroup names for the pod's processes.
	Dir, Name string
	// Containers are the container cgroups' IDs (the runtime prefix and .scope removed).
	Containers []string
	// PIDs are the processes listed in the pod's cgroups, sorted, without duplicates.
	PIDs []int
}

func (d *Discoverer) cgroupRoot() string {
	if d.CgroupRoot == "" {
		return "/sys/fs/cgroup"
	}
	return d.CgroupRoot
}

func (d *Discoverer) procRoot() string {
	if d.ProcRoot == "" {
		return "/proc"
	}
	return d.ProcRoot
}

// podDirNames are the pod cgroup paths of each driver and QoS class, relative to a hierarchy.
func podDirNames(uid string) []string {
	u := strings.ReplaceAll(uid, "-", "_")
	return []string{
		"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + u + ".slice",
		"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + u + ".slice",
		"kubepods.slice/kubepods-pod" + u + ".slice",
		"kubepods/burstable/pod" + uid,
		"kubepods/besteffort/pod" + uid,
		"kubepods/pod" + uid,
	}
}

// hierarchies returns the directories under which pod cgroups are looked for.
func (d *Discoverer) hierarchies() []string {
	root := d.cgroupRoot()
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return []string{root}
	}
	hs := d.Hierarchies
	if hs == nil {
		hs = DefaultHierarchies
	}
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, filepath.Join(root, h))
	}
	return out
}

// PodDir returns the pod's cgroup directory.
func (d *Discoverer) PodDir(uid string) (string, error) {
	if uid == "" || strings.ContainsAny(uid, "/.") {
		return "", fmt.Errorf("podstats: pod UID %q: %w", uid, os.ErrInvalid)
	}
	d.mu.Lock()
	dir, ok := d.cache[uid]
	d.mu.Unlock()
	if ok && isDir(dir) {
		return dir, nil
	}
	for _, h := range d.hierarchies() {
		for _, n := range podDirNames(uid) {
			if p := filepath.Join(h, n); isDir(p) {
				d.mu.Lock()
				if d.cache == nil {
					d.cache = map[string]string{}
				}
				d.cache[uid] = p
				d.mu.Unlock()
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: pod %s under %s", ErrPodCgroupNotFound, uid, d.cgroupRoot())
}

// Forget drops what was cached about a pod.
func (d *Discoverer) Forget(uid string) {
	d.mu.Lock()
	delete(d.cache, uid)
	d.mu.Unlock()
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// Discover finds the pod's cgroup, its containers and the PIDs listed in them.
func (d *Discoverer) Discover(uid string) (*Pod, error) {
	dir, err := d.PodDir(uid)
	if err != nil {
		return nil, err
	}
	p := &Pod{Dir: dir, Name: filepath.Base(dir)}
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a container cgroup removed while walking
			}
			return err
		}
		if !e.IsDir() {
			return nil
		}
		if path != dir {
			id, ok := containerID(e.Name())
			if !ok {
				return filepath.SkipDir
			}
			if filepath.Dir(path) == dir {
				p.Containers = append(p.Containers, id)
			}
		}
		p.PIDs, err = appendProcs(p.PIDs, filepath.Join(path, "cgroup.procs"))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("podstats: pod %s cgroup %s: %w", uid, dir, err)
	}
	slices.Sort(p.PIDs)
	p.PIDs = slices.Compact(p.PIDs)
	return p, nil
}

// containerID recognises a container cgroup's name and returns the container ID: systemd scopes
// of containerd (cri-containerd-<id>.scope), CRI-O (crio-<id>.scope) and Docker (docker-<id>.scope),
// and cgroupfs names (<id>, crio-<id>, docker-<id>). CRI-O's conmon (crio-conmon-<id>) is the
// runtime's monitor, not the pod's, and is left out. Any other directory below a container
// (a nested cgroup, such as CRI-O's "container") is walked as part of it.
func containerID(name string) (string, bool) {
	if strings.HasPrefix(name, "crio-conmon-") {
		return "", false
	}
	id := strings.TrimSuffix(name, ".scope")
	for _, pfx := range []string{"cri-containerd-", "crio-", "docker-"} {
		if strings.HasPrefix(id, pfx) {
			return strings.TrimPrefix(id, pfx), true
		}
	}
	if id != name { // a .scope of something else
		return "", false
	}
	return id, true // cgroupfs: the bare ID, or a nested cgroup of a container
}

// appendProcs appends the PIDs in a cgroup.procs file (missing: the cgroup went away).
func appendProcs(pids []int, path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return pids, nil
		}
		return pids, err
	}
	pids, err = parseProcs(pids, b)
	if err != nil {
		return pids, fmt.Errorf("%s: %w", path, err)
	}
	return pids, nil
}

// parseProcs appends the PIDs of a cgroup.procs file's content, one per line.
func parseProcs(pids []int, b []byte) ([]int, error) {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		n, err := strconv.Atoi(string(bytes.TrimSpace(line)))
		if err != nil || n <= 0 {
			return pids, fmt.Errorf("bad PID %q", line)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

// cgroupElements calls f with every path element of a /proc/<pid>/cgroup file's content
// ("hierarchy-ID:controller-list:path" lines) until f returns true, and reports whether it did.
func cgroupElements(b []byte, f func(el string) bool) bool {
	for line := range strings.Lines(string(b)) {
		_, rest, ok := strings.Cut(strings.TrimRight(line, "\n"), ":")
		if !ok {
			continue
		}
		_, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		for el := range strings.SplitSeq(path, "/") {
			if el != "" && f(el) {
				return true
			}
		}
	}
	return false
}

// InPod reports whether process pid is in the pod whose cgroup is named podName (Pod.Name):
// whether a path in /proc/<pid>/cgroup has it as an element. Matching an element, not the whole
// path, works whatever the reader's cgroup namespace (paths outside it start with "/.."). A
// process that is gone is not in the pod.
func (d *Discoverer) InPod(pid int, podName string) bool {
	b, err := os.ReadFile(filepath.Join(d.procRoot(), strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return false
	}
	return cgroupElements(b, func(el string) bool { return el == podName })
}

// PodOf returns the pod cgroup name (as Pod.Name) process pid is in, among those known reports
// true for, reading /proc/<pid>/cgroup once; "" when none (or the process is gone).
func (d *Discoverer) PodOf(pid int, known func(name string) bool) string {
	b, err := os.ReadFile(filepath.Join(d.procRoot(), strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	var found string
	cgroupElements(b, func(el string) bool {
		if strings.Contains(el, "pod") && known(el) {
			found = el
			return true
		}
		return false
	})
	return found
}
