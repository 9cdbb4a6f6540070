//go:build !linux

package taskstats

import (
	"errors"
	"fmt"
	"os"
	"strconv"
)

// listThreads appends to tids the thread ids of process pid, listed in <proc>/<pid>/task.
func listThreads(proc string, pid int, tids []int) ([]int, error) {
	names, err := os.ReadDir(proc + "/" + strconv.Itoa(pid) + "/task")
	if errors.Is(err, os.ErrNotExist) {
		return tids, fmt.Errorf("taskstats: process %d: %w", pid, noSuchTaskError{err})
	}
	if err != nil {
		return tids, fmt.Errorf("taskstats: process %d: listing its threads: %w", pid, err)
	}
	for _, n := range names {
		if tid, err := strconv.Atoi(n.Name()); err == nil && tid > 0 {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

func gettid() int { return os.Getpid() }
