package desired

import (
	"math"
)

// WeightFunc is the delay-aware weight: a backend pod's IPVS weight is its static weight times
// Scale times a factor that falls from 1 to MinFactor as the pod's CPU delay fraction d rises
// from Start to Full, in Steps levels. Level k (1..Steps) has the lower edge
// Start + (k-1)·(Full-Start)/(Steps-1), so level 1 starts at Start and level Steps at Full. A
// level is entered when d reaches its edge and left downwards only when d falls Hysteresis below
// that edge, so a pod whose delay hovers around an edge does not flap between two weights:
//
//	rising:  level = the highest k with d ≥ edge(k), or 0 below Start
//	falling: level k is kept while d ≥ edge(k) - Hysteresis
//	factor(k) = 1 - k·(1 - MinFactor)/Steps
//	weight    = max(1, round(static · Scale · factor(k)))   (0 when not ready or static 0)
//
// Scale keeps the ratios between pods exact when static
// weights are small (the default static weight is 1, which would have no room to fall).
type WeightFunc struct {
	Start, Full float64
	MinFactor   float64
	Steps       int
	Hysteresis  float64
	Scale       uint32
}

// DefaultWeightFunc: full weight below 10 % CPU delay (the default CPU threshold), then one
// tenth less every 5 points, down to one tenth from 50 % on; a hysteresis of 2 points; weights
// scaled by 100.
var DefaultWeightFunc = WeightFunc{Start: 0.10, Full: 0.50, MinFactor: 0.10, Steps: 9, Hysteresis: 0.02, Scale: 100}

// edge is the lower edge of level k (k ≥ 1).
func (f WeightFunc) edge(k int) float64 {
	if f.Steps <= 1 {
		return f.Start
	}
	return f.Start + float64(k-1)*(f.Full-f.Start)/float64(f.Steps-1)
}

// Level returns the level for CPU delay fraction d given the current level cur (0 for a pod not
// seen before): the highest level whose edge d reaches when that is above cur, else the highest
// level at or below cur that d has not fallen Hysteresis below the edge of.
func (f WeightFunc) Level(d float64, cur int) int {
	if f.Steps <= 0 || math.IsNaN(d) {
		return 0
	}
	cur = min(max(cur, 0), f.Steps)
	up := 0
	for k := 1; k <= f.Steps && d >= f.edge(k); k++ {
		up = k
	}
	if up >= cur {
		return up
	}
	k := cur
	for k > 0 && d < f.edge(k)-f.Hysteresis {
		k--
	}
	return k
}

// Factor is the weight factor of level k, between MinFactor and 1.
func (f WeightFunc) Factor(k int) float64 {
	if f.Steps <= 0 {
		return 1
	}
	k = min(max(k, 0), f.Steps)
	mf := min(max(f.MinFactor, 0), 1)
	return 1 - float64(k)*(1-mf)/float64(f.Steps)
}

// Weight is the IPVS weight of a pod with static weight static at level k: 0 only when the pod
// is not ready or its static weight is 0; at least 1 otherwise; never above static·Scale (and
// the IPVS maximum, 2^31-1).
func (f WeightFunc) Weight(static uint32, k int, ready bool) uint32 {
	if !ready || static == 0 {
		return 0
	}
	scale := max(f.Scale, 1)
	top := math.Min(float64(static)*float64(scale), math.MaxInt32)
	return uint32(max(1, math.Round(top*f.Factor(k))))
}
