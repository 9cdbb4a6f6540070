package podstats

import (
	"context"
	"errors"
	"os"

	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

// Taskstats is what the sampler needs of a pkg/taskstats Client.
type Taskstats interface {
	ProcessesInto(ctx context.Context, pids []int, out []taskstats.Stats, errs []error) error
}

// Sampler reads the process records of pods: discovery, one pipelined taskstats batch for every
// process of every pod, then each PID re-checked against /proc/<pid>/cgroup (a PID reused by a
// process outside the pod between the listing and the request is left out). It is used from one
// goroutine; its buffers are reused between rounds.
type Sampler struct {
	Discoverer *Discoverer
	Taskstats  Taskstats

	pids  []int
	owner []int // index into the round's pods of each PID
	stats []taskstats.Stats
	errs  []error
}

// PodSample is one pod's processes at a sample.
type PodSample struct {
	UID   string
	Pod   *Pod
	Procs []ProcSample
	// Err is why the pod could not be sampled (its cgroup not found: not started yet, or gone).
	Err error
}

// Sample samples the pods with the given UIDs. The error is one that stopped the whole batch (the
// taskstats connection); per-pod problems are in each PodSample.
func (s *Sampler) Sample(ctx context.Context, uids []string) ([]PodSample, error) {
	out := make([]PodSample, len(uids))
	s.pids, s.owner = s.pids[:0], s.owner[:0]
	for i, uid := range uids {
		out[i].UID = uid
		p, err := s.Discoverer.Discover(uid)
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i].Pod = p
		for _, pid := range p.PIDs {
			s.pids = append(s.pids, pid)
			s.owner = append(s.owner, i)
		}
	}
	n := len(s.pids)
	if cap(s.stats) < n {
		s.stats, s.errs = make([]taskstats.Stats, n), make([]error, n)
	}
	s.stats, s.errs = s.stats[:n], s.errs[:n]
	if n > 0 {
		if err := s.Taskstats.ProcessesInto(ctx, s.pids, s.stats, s.errs); err != nil {
			return out, err
		}
	}
	for k, pid := range s.pids {
		ps := &out[s.owner[k]]
		if err := s.errs[k]; err != nil {
			if !errors.Is(err, os.ErrNotExist) && ps.Err == nil {
				ps.Err = err
			}
			continue
		}
		if !s.Discoverer.InPod(pid, ps.Pod.Name) {
			continue
		}
		st := &s.stats[k]
		ps.Procs = append(ps.Procs, ProcSample{Proc: Proc{PID: uint32(pid), Start: st.BeginTime}, Totals: TotalsOf(st)})
	}
	return out, nil
}
