package agent

import (
	"os"
	"testing"

	"github.com/kubelvs/kubelvs/internal/testenv"
)

// env is the real API server the Kubernetes side of the agent runs against (cluster_test.go).
var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(func(e *testenv.Env) int {
		env = e
		return m.Run()
	}))
}
