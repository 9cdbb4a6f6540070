package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// printCPUReport reads the console log of a hack/vm run of this benchmark, where hack/vm rewrote each
// phase marker "@@vmcpu PHASE ... NAME" into "@@vmcpu SECONDS PHASE ... NAME" with the CPU time qemu had
// used, and prints the table by CPU seconds. On a host shared with other work the guest's clock runs
// on while qemu waits for a CPU; qemu's CPU time does not, so these ratios are the trustworthy ones.
func printCPUReport(out io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type marks struct{ program, read, end float64 }
	seen := map[string]*marks{}
	var results []result
	skipped := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "@@vmcpu ")
		if !ok {
			continue
		}
		f := strings.SplitN(rest, " ", 3)
		if len(f) < 3 {
			continue
		}
		secs, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			// hack/vm could not read qemu's CPU time for this marker: the phase has no figure.
			secs = math.NaN()
		}
		phase, name := f[1], f[2]
		var services, dests int
		if phase == "end" {
			if _, err := fmt.Sscanf(name, "%d %d", &services, &dests); err != nil {
				return fmt.Errorf("bad end marker %q: %w", sc.Text(), err)
			}
			name = strings.SplitN(name, " ", 3)[2]
		}
		m := seen[name]
		if m == nil {
			m = &marks{}
			seen[name] = m
		}
		switch phase {
		case "program":
			m.program = secs
		case "read":
			m.read = secs
		case "end":
			m.end = secs
			if math.IsNaN(m.program + m.read + m.end) {
				skipped++
			} else if services > 1 { // the 1-service warm-up is not a result
				results = append(results, result{Name: name, Program: m.read - m.program, Read: m.end - m.read,
					Services: services, Dests: dests})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(results) == 0 {
		return fmt.Errorf("no complete @@vmcpu markers in %s", path)
	}
	if skipped > 0 {
		fmt.Fprintf(out, "(%d runs without qemu CPU stamps left out)\n", skipped)
	}
	fmt.Fprintln(out, "qemu CPU seconds, medians (host-measured: less inflated by host load than the guest's clock):")
	printTable(out, medians(results))
	return nil
}
