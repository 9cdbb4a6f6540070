package podstats

import (
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubelvs/kubelvs/internal/testenv"
	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

// env is the real API server of the reconciler and admission policy tests.
var env *testenv.Env

// TestMain starts the API server and turns delay accounting on for the workloads the real-kernel
// tests start (off by default since Linux 5.14), restoring it afterwards. Those tests need root
// (taskstats, cgroups, the sysctl): without it the run fails, saying why.
func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "podstats tests: the real-kernel tests need root (taskstats needs CAP_NET_ADMIN, the cgroup tests write the cgroup filesystem)")
		os.Exit(1)
	}
	was, err := taskstats.SetDelayAccounting(true)
	if err != nil {
		fmt.Fprintln(os.Stderr, "podstats tests:", err)
		os.Exit(1)
	}
	code := testenv.Main(func(e *testenv.Env) int {
		env = e
		return m.Run()
	})
	if _, err := taskstats.SetDelayAccounting(was); err != nil {
		fmt.Fprintln(os.Stderr, "podstats tests: restoring kernel.task_delayacct:", err)
	}
	os.Exit(code)
}
