package podstats

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

// NodeConditionType is the IPVSNode condition that says what pod taskstats can measure here.
const NodeConditionType = "PodTaskstats"

// NodeCondition describes the environment pod taskstats runs in, for the node's IPVSNode: True
// when taskstats answers and delay accounting is on; False with DelayAccountingOff when only CPU
// delay can be measured (kernel.task_delayacct=0), TaskstatsUnavailable when requests fail, and
// NoHostPID when exit records cannot be received (processes that exit between samples are then
// counted up to the last sample only).
func NodeCondition(env *taskstats.Environment) metav1.Condition {
	c := metav1.Condition{Type: NodeConditionType, Status: metav1.ConditionTrue, Reason: "DelayAccountingOn",
		Message: "taskstats answers and kernel.task_delayacct=1: CPU, block I/O and memory delays are measured"}
	switch {
	case !env.Permitted:
		c.Status, c.Reason = metav1.ConditionFalse, "TaskstatsUnavailable"
		c.Message = "taskstats requests fail, no pod is measured: " + errString(env.PermissionError)
	case !env.HostPIDs:
		c.Status, c.Reason = metav1.ConditionFalse, "NoHostPID"
		c.Message = "the agent is not in the host's PID namespace (hostPID): pods' PIDs cannot be asked about"
	case env.DelayAccountingKnown && !env.DelayAccounting:
		c.Status, c.Reason = metav1.ConditionFalse, "DelayAccountingOff"
		c.Message = "kernel.task_delayacct=0: only CPU delay is measured; set it to 1 or start the agent with --enable-delayacct (tasks started before keep zero other delays)"
	}
	return c
}

func errString(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}
