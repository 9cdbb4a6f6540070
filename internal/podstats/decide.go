package podstats

import (
	"math"
	"time"
)

// WritePolicy bounds how often a pod's condition is written.
type WritePolicy struct {
	// Window is the sampling window: no pod's condition is written twice within 9/10 of it (the
	// slack absorbs timer jitter between two window ends).
	Window time.Duration
	// Margin is how far (as a fraction: 0.02 = 2 percentage points) a delay fraction must move
	// from the value last written for a write when status and reason stay.
	Margin float64
}

// DefaultMargin is 2 percentage points.
const DefaultMargin = 0.02

// Written is what was last written to a pod, and when.
type Written struct {
	Condition
	At time.Time
}

// ShouldWrite decides whether cur is written at now, given what was last written (nil: nothing
// yet, or the pod's status has no such condition): on a change of status or reason, or when a
// delay fraction moved by more than the margin or of the weight level, and never twice within a
// window.
func (p WritePolicy) ShouldWrite(last *Written, cur Condition, now time.Time) bool {
	if last == nil {
		return true
	}
	if now.Sub(last.At) < p.Window*9/10 {
		return false
	}
	if last.Status != cur.Status || last.Reason != cur.Reason || last.Level != cur.Level {
		return true
	}
	m := p.Margin
	return math.Abs(cur.CPU-last.CPU) > m || math.Abs(cur.IO-last.IO) > m || math.Abs(cur.Memory-last.Memory) > m
}
