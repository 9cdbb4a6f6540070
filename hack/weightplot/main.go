// Command weightplot draws the delay-aware weight function of pkg/desired
// (desired.DefaultWeightFunc) as an SVG: the weight factor against the pod's CPU delay, swept
// up and then down, so the hysteresis shows as the gap between the two curves.
//
//	go run ./hack/weightplot > docs/podstats-weight.svg
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/kubelvs/kubelvs/pkg/desired"
)

func main() {
	if _, err := os.Stdout.Write(Plot(desired.DefaultWeightFunc)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

const (
	width, height = 640, 400
	left, right   = 60, 20
	top, bottom   = 30, 50
	maxDelay      = 0.70
	samples       = 700
)

func x(d float64) float64 { return left + d/maxDelay*(width-left-right) }
func y(f float64) float64 { return top + (1-f)*(height-top-bottom) }

// Plot renders f's weight factor (static weight 1) for a delay swept from 0 to 70 % and back.
func Plot(f desired.WeightFunc) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	axes(&b)
	level := 0
	var up, down []float64
	for i := 0; i <= samples; i++ {
		d := maxDelay * float64(i) / samples
		level = f.Level(d, level)
		up = append(up, float64(f.Weight(1, level, true))/float64(f.Scale))
	}
	for i := samples; i >= 0; i-- {
		d := maxDelay * float64(i) / samples
		level = f.Level(d, level)
		down = append(down, float64(f.Weight(1, level, true))/float64(f.Scale))
	}
	curve(&b, up, false, "#c0392b")
	curve(&b, down, true, "#2471a3")
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#c0392b">delay rising</text>`+"\n", width-150, top+20)
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#2471a3">delay falling (hysteresis %.0f points)</text>`+"\n", width-250, top+38, f.Hysteresis*100)
	fmt.Fprintf(&b, `<text x="%d" y="18">kubelvs delay-aware weight: factor of the static weight (x%d) against CPU delay</text>`+"\n", left, f.Scale)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func axes(w io.Writer) {
	fmt.Fprintf(w, `<g stroke="#888" stroke-width="1">`)
	fmt.Fprintf(w, `<line x1="%g" y1="%g" x2="%g" y2="%g"/>`, x(0), y(0), x(maxDelay), y(0))
	fmt.Fprintf(w, `<line x1="%g" y1="%g" x2="%g" y2="%g"/>`, x(0), y(0), x(0), y(1))
	fmt.Fprintln(w, `</g>`)
	for i := 0; i <= 7; i++ {
		d := float64(i) / 10
		fmt.Fprintf(w, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#ddd"/><text x="%g" y="%g" text-anchor="middle">%d%%</text>`+"\n",
			x(d), y(0), x(d), y(1), x(d), y(0)+16, i*10)
	}
	for i := 0; i <= 10; i += 2 {
		f := float64(i) / 10
		fmt.Fprintf(w, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#ddd"/><text x="%g" y="%g" text-anchor="end">%.1f</text>`+"\n",
			x(0), y(f), x(maxDelay), y(f), x(0)-6, y(f)+4, f)
	}
	fmt.Fprintf(w, `<text x="%g" y="%d" text-anchor="middle">CPU delay (fraction of wall time the pod's tasks waited for a CPU)</text>`+"\n", x(maxDelay/2), height-12)
	fmt.Fprintf(w, `<text x="14" y="%g" transform="rotate(-90 14 %g)" text-anchor="middle">weight factor</text>`+"\n", y(0.5), y(0.5))
}

// curve draws factors sampled at equal delay steps (reversed: from the highest delay down).
func curve(w io.Writer, fs []float64, reversed bool, color string) {
	dash := ""
	if reversed {
		dash = ` stroke-dasharray="6 4"`
	}
	fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="`, color, dash)
	for i, f := range fs {
		j := i
		if reversed {
			j = len(fs) - 1 - i
		}
		fmt.Fprintf(w, "%.1f,%.1f ", x(maxDelay*float64(j)/samples), y(f))
	}
	fmt.Fprintln(w, `"/>`)
}
