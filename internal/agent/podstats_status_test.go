package agent

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

// The IPVSNode status carries pod taskstats' condition (delay accounting off here) next to the
// agent's own.
func TestStatusExtraConditions(t *testing.T) {
	w := &StatusWriter{Node: "n1", ExtraConditions: func() []metav1.Condition {
		return []metav1.Condition{podstats.NodeCondition(&taskstats.Environment{Permitted: true, HostPIDs: true, DelayAccountingKnown: true})}
	}}
	st := w.Status(NodeReport{}, nil)
	var found bool
	for _, c := range st.Conditions {
		if c.Type == podstats.NodeConditionType {
			found = true
			if c.Status != metav1.ConditionFalse || c.Reason != "DelayAccountingOff" {
				t.Errorf("condition %+v, want False/DelayAccountingOff", c)
			}
		}
	}
	if !found || len(st.Conditions) != 5 {
		t.Errorf("conditions %+v, want the agent's four and PodTaskstats", st.Conditions)
	}
}
