package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// guestCPU is the guest's /proc/stat "cpu" line (USER_HZ ticks): where the one vCPU's time
// went during a phase, the agent's own share beside it.
type guestCPU [8]uint64 // user nice system idle iowait irq softirq steal

func readGuestCPU() (guestCPU, error) {
	var g guestCPU
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return g, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return g, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i := range g {
		if g[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return g, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	return g, nil
}

// phaseCPU logs how the guest's CPU was spent since before, with the agent's utime+stime.
func phaseCPU(phase string, before guestCPU, a *agentProc, agentBefore time.Duration) {
	now, err := readGuestCPU()
	if err != nil {
		logf("%s: %v", phase, err)
		return
	}
	agent, err := a.cpu()
	if err != nil {
		logf("%s: %v", phase, err)
		return
	}
	tick := func(i int) time.Duration { return time.Duration(now[i]-before[i]) * time.Second / clkTck }
	user, sys := tick(0)+tick(1), tick(2)
	logf("%s: guest CPU user %v, system %v, softirq+irq %v, idle+iowait %v; the agent %v of it",
		phase, user, sys, tick(5)+tick(6), tick(3)+tick(4), agent-agentBefore)
}
