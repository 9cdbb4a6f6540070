package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/kubelvs/kubelvs/pkg/desired"
)

// TestCommittedPlot: docs/podstats-weight.svg is what this program draws from the weight function
// the agent uses; regenerate it with `go run ./hack/weightplot > docs/podstats-weight.svg`.
func TestCommittedPlot(t *testing.T) {
	got, err := os.ReadFile("../../docs/podstats-weight.svg")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, Plot(desired.DefaultWeightFunc)) {
		t.Fatal("docs/podstats-weight.svg is stale: run go run ./hack/weightplot > docs/podstats-weight.svg")
	}
}
