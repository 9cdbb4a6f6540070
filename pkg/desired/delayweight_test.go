package desired

import (
	"math"
	"testing"
)

func TestWeightLevel(t *testing.T) {
	f := DefaultWeightFunc
	tests := []struct {
		name string
		d    float64
		cur  int
		want int
	}{
		{"idle", 0, 0, 0},
		{"just below start", 0.0999, 0, 0},
		{"at start", 0.10, 0, 1},
		{"rising jumps to its level", 0.27, 0, 4},
		{"at full", 0.50, 0, 9},
		{"beyond full stays at the bottom", 5.0, 0, 9},
		{"falling inside the hysteresis keeps the level", 0.135, 2, 2},
		{"falling below the band drops", 0.129, 2, 1},
		{"falling far drops several levels", 0.11, 9, 1},
		{"falling to nothing", 0.0, 9, 0},
		{"level 1 kept down to start minus hysteresis", 0.081, 1, 1},
		{"level 1 left below it", 0.079, 1, 0},
		{"rising past the current level", 0.31, 3, 5},
		{"NaN is no delay", math.NaN(), 4, 0},
		{"current level out of range is clamped", 0.6, 40, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.Level(tt.d, tt.cur); got != tt.want {
				t.Errorf("Level(%v, %d) = %d, want %d", tt.d, tt.cur, got, tt.want)
			}
		})
	}
}

func TestWeight(t *testing.T) {
	f := DefaultWeightFunc
	tests := []struct {
		name   string
		static uint32
		level  int
		ready  bool
		want   uint32
	}{
		{"full", 1, 0, true, 100},
		{"one step down", 1, 1, true, 90},
		{"bottom is a tenth", 1, 9, true, 10},
		{"static weights keep their ratio", 3, 9, true, 30},
		{"not ready is 0", 1, 0, false, 0},
		{"static 0 stays 0", 0, 0, true, 0},
		{"level beyond steps is the bottom", 1, 99, true, 10},
		{"never above the IPVS maximum", 1 << 30, 0, true, math.MaxInt32},
		{"never 0 while ready", 1, 9, true, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.Weight(tt.static, tt.level, tt.ready); got != tt.want {
				t.Errorf("Weight = %d, want %d", got, tt.want)
			}
		})
	}
	tiny := WeightFunc{Start: 0.1, Full: 0.5, MinFactor: 0, Steps: 4, Scale: 1}
	if got := tiny.Weight(1, 4, true); got != 1 {
		t.Errorf("a ready pod's weight fell to %d", got)
	}
}

// TestWeightBoundsAndHysteresis sweeps the delay up and down: the weight never leaves
// [static·Scale·MinFactor, static·Scale], never rises while the delay rises, never falls while
// it falls, and a wobble smaller than the hysteresis never changes it.
func TestWeightBoundsAndHysteresis(t *testing.T) {
	f := DefaultWeightFunc
	level, prev := 0, f.Weight(1, 0, true)
	for i := 0; i <= 1000; i++ {
		level = f.Level(float64(i)/1000, level)
		w := f.Weight(1, level, true)
		if w > prev || w < 10 || w > 100 {
			t.Fatalf("rising d=%v: weight %d after %d", float64(i)/1000, w, prev)
		}
		prev = w
	}
	for i := 1000; i >= 0; i-- {
		level = f.Level(float64(i)/1000, level)
		w := f.Weight(1, level, true)
		if w < prev || w < 10 || w > 100 {
			t.Fatalf("falling d=%v: weight %d after %d", float64(i)/1000, w, prev)
		}
		prev = w
	}
	changes := 0
	level = f.Level(0.30, 0)
	for i := range 100 {
		d := 0.30 - 0.019*float64(i%2)
		if n := f.Level(d, level); n != level {
			changes++
			level = n
		}
	}
	if changes != 0 {
		t.Errorf("a wobble inside the hysteresis changed the level %d times", changes)
	}
}
