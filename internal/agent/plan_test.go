package agent

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/desired"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

var (
	t0  = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	web = types.NamespacedName{Namespace: "default", Name: "web"}
	api = types.NamespacedName{Namespace: "default", Name: "api"}
)

func key(proto lvs.Protocol, addr string, port uint16) lvs.ServiceKey {
	a := netip.MustParseAddr(addr)
	return lvs.ServiceKey{Family: lvs.FamilyOf(a), Protocol: proto, Address: a, Port: port}
}

// wsvc is a desired service of web with a 60 s drain timeout.
func wsvc(k lvs.ServiceKey, sched string, dests ...desired.Destination) desired.Service {
	return desired.Service{Service: lvs.Service{ServiceKey: k, Scheduler: sched}, Owner: web, Generation: 1,
		DrainTimeout: time.Minute, Destinations: dests}
}

func dst(addr string, port uint16, weight uint32) desired.Destination {
	return desired.Destination{Destination: lvs.Destination{Address: netip.MustParseAddr(addr), Port: port, Weight: weight}}
}

func draining(d desired.Destination) desired.Destination {
	d.Weight, d.Draining, d.DrainTimeout = 0, true, time.Minute
	return d
}

// steps renders steps in words written for these tests, not by the code under test.
func render(steps []Step) []string {
	var out []string
	for _, s := range steps {
		var line string
		switch s.Op.Kind {
		case 0:
			line = "model " + s.Op.Service.Key().String()
			if s.Forget {
				line = "forget " + s.Op.Service.Key().String()
				if s.Op.Destination != nil {
					line += " " + s.Op.Destination.Key().String()
				}
			}
		case ipvs.AddService, ipvs.UpdateService, ipvs.DeleteService:
			line = fmt.Sprintf("%s %s sched=%s", s.Op.Kind, s.Op.Service.Key(), s.Op.Service.Scheduler)
		default:
			line = fmt.Sprintf("%s %s %s w=%d", s.Op.Kind, s.Op.Service.Key(), s.Op.Destination.Key(), s.Op.Destination.Weight)
		}
		if !s.DrainSince.IsZero() {
			line += fmt.Sprintf(" draining since +%s for %s", s.DrainSince.Sub(t0), s.DrainTimeout)
		}
		if s.Removing {
			line += " removing"
		}
		if s.Repair != "" {
			line += " repair=" + s.Repair
		}
		out = append(out, line)
	}
	return out
}

// programmed returns a model holding what applying want from empty gives.
func programmed(t *testing.T, wants ...Want) *Model {
	t.Helper()
	m := NewModel()
	for i := range wants {
		steps, refused := m.Plan(&wants[i], t0, nil)
		if len(refused) > 0 {
			t.Fatalf("refused %v", refused)
		}
		for j := range steps {
			m.Commit(&steps[j])
		}
	}
	return m
}

func TestPlan(t *testing.T) {
	k80 := key(lvs.TCP, "192.0.2.10", 80)
	k53 := key(lvs.UDP, "192.0.2.10", 53)
	two := Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k80, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))}}
	dns := Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k53, "rr", dst("10.1.0.1", 53, 1), dst("10.1.0.2", 53, 1))}}
	now := t0.Add(10 * time.Second)
	tests := []struct {
		name        string
		model       *Model
		want        Want
		allow       func(lvs.ServiceKey) error
		wantSteps   []string
		wantRefused []string
	}{
		{
			name:  "from empty: the service, then its destinations",
			model: NewModel(), want: two,
			wantSteps: []string{
				"add service TCP 192.0.2.10:80 sched=wrr",
				"add destination TCP 192.0.2.10:80 10.1.0.1:8080 w=1",
				"add destination TCP 192.0.2.10:80 10.1.0.2:8080 w=1",
			},
		},
		{name: "unchanged: nothing", model: programmed(t, two), want: two},
		{
			name: "a weight changes: one update in place", model: programmed(t, two),
			want:      Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k80, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 3))}},
			wantSteps: []string{"update destination TCP 192.0.2.10:80 10.1.0.2:8080 w=3"},
		},
		{
			name: "the scheduler changes: one service update, destinations untouched", model: programmed(t, two),
			want:      Want{Key: web, Generation: 2, Services: []desired.Service{wsvc(k80, "mh", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))}},
			wantSteps: []string{"update service TCP 192.0.2.10:80 sched=mh"},
		},
		{
			name: "a new generation without a kernel change: bookkeeping only", model: programmed(t, two),
			want:      Want{Key: web, Generation: 2, Services: two.Services},
			wantSteps: []string{"model TCP 192.0.2.10:80"},
		},
		{
			name: "a TCP destination goes: it drains at weight 0", model: programmed(t, two),
			want:      Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k80, "wrr", dst("10.1.0.1", 8080, 1))}},
			wantSteps: []string{"update destination TCP 192.0.2.10:80 10.1.0.2:8080 w=0 draining since +10s for 1m0s"},
		},
		{
			name: "a TCP destination terminates: it drains at weight 0", model: programmed(t, two),
			want:      Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k80, "wrr", dst("10.1.0.1", 8080, 1), draining(dst("10.1.0.2", 8080, 1)))}},
			wantSteps: []string{"update destination TCP 192.0.2.10:80 10.1.0.2:8080 w=0 draining since +10s for 1m0s"},
		},
		{
			name: "a terminating destination never programmed: nothing", model: programmed(t, two),
			want:      Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k80, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1), draining(dst("10.1.0.3", 8080, 1)))}},
			wantSteps: nil,
		},
		{
			name: "a UDP destination goes: deleted at once", model: programmed(t, dns),
			want:      Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k53, "rr", dst("10.1.0.1", 53, 1))}},
			wantSteps: []string{"delete destination UDP 192.0.2.10:53 10.1.0.2:53 w=1"},
		},
		{
			name: "the VirtualService goes: its destinations drain, the service stays for now", model: programmed(t, two),
			want: Want{Key: web},
			wantSteps: []string{
				"model TCP 192.0.2.10:80 removing",
				"update destination TCP 192.0.2.10:80 10.1.0.1:8080 w=0 draining since +10s for 1m0s removing",
				"update destination TCP 192.0.2.10:80 10.1.0.2:8080 w=0 draining since +10s for 1m0s removing",
			},
		},
		{
			name: "a UDP VirtualService goes: its service is deleted at once", model: programmed(t, dns),
			want: Want{Key: web}, wantSteps: []string{"delete service UDP 192.0.2.10:53 sched=rr removing"},
		},
		{
			name:  "a key another owner has in the kernel: refused, nothing sent",
			model: func() *Model { m := NewModel(); m.foreign[k80] = true; return m }(), want: two,
			wantRefused: []string{"Conflict TCP 192.0.2.10:80"},
		},
		{
			name: "a key outside the managed CIDRs: refused", model: NewModel(), want: two,
			allow:       func(lvs.ServiceKey) error { return ErrUnmanaged },
			wantRefused: []string{"Unmanaged TCP 192.0.2.10:80"},
		},
		{
			name:  "a key that moves to another VirtualService: handed over in place",
			model: programmed(t, two),
			want: Want{Key: api, Generation: 4, Services: []desired.Service{func() desired.Service {
				s := wsvc(k80, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))
				s.Owner, s.Generation = api, 4
				return s
			}()}},
			wantSteps: []string{"model TCP 192.0.2.10:80"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, refused := tt.model.Plan(&tt.want, now, tt.allow)
			if diff := cmp.Diff(tt.wantSteps, render(steps)); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			var gotRefused []string
			for _, r := range refused {
				gotRefused = append(gotRefused, r.Reason+" "+r.Key.String())
			}
			if diff := cmp.Diff(tt.wantRefused, gotRefused); diff != "" {
				t.Errorf("refused (-want +got):\n%s", diff)
			}
		})
	}
}

// A destination that drains and is wanted again goes back to its weight in place (kube-proxy
// deletes and re-adds it).
func TestPlanDrainingDestinationReturns(t *testing.T) {
	k := key(lvs.TCP, "192.0.2.10", 80)
	m := programmed(t, Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 2))}})
	gone := Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}}
	commitAll(m, t0.Add(time.Second), &gone)
	back := Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 2))}}
	steps, _ := m.Plan(&back, t0.Add(2*time.Second), nil)
	want := []string{"update destination TCP 192.0.2.10:80 10.1.0.2:8080 w=2"}
	if diff := cmp.Diff(want, render(steps)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
}

func commitAll(m *Model, now time.Time, w *Want) {
	steps, _ := m.Plan(w, now, nil)
	for i := range steps {
		m.Commit(&steps[i])
	}
}

func TestPlanDrain(t *testing.T) {
	k := key(lvs.TCP, "192.0.2.10", 80)
	two := Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))}}
	d1, d2 := lvs.DestinationKey{Address: netip.MustParseAddr("10.1.0.1"), Port: 8080}, lvs.DestinationKey{Address: netip.MustParseAddr("10.1.0.2"), Port: 8080}
	kd := func(dk lvs.DestinationKey, active, inactive uint32) ipvs.Destination {
		return ipvs.Destination{Destination: lvs.Destination{Address: dk.Address, Port: dk.Port}, ActiveConns: active, InactiveConns: inactive}
	}
	tests := []struct {
		name   string
		after  Want // applied at t0+1s to a model programmed with two
		now    time.Duration
		kernel []ipvs.Destination
		want   []string
	}{
		{
			name: "connections left, deadline ahead: it stays", now: 30 * time.Second,
			after:  Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}},
			kernel: []ipvs.Destination{kd(d1, 5, 0), kd(d2, 1, 2)},
		},
		{
			name: "no connections left: it goes", now: 30 * time.Second,
			after:  Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}},
			kernel: []ipvs.Destination{kd(d1, 5, 0), kd(d2, 0, 0)},
			want:   []string{"delete destination TCP 192.0.2.10:80 10.1.0.2:8080 w=0"},
		},
		{
			name: "the deadline passed: it goes however many connections it has", now: 61 * time.Second,
			after:  Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}},
			kernel: []ipvs.Destination{kd(d1, 5, 0), kd(d2, 3, 9)},
			want:   []string{"delete destination TCP 192.0.2.10:80 10.1.0.2:8080 w=0"},
		},
		{
			name: "a removed service whose destinations are done: one delete of the service", now: 30 * time.Second,
			after: Want{Key: web}, kernel: []ipvs.Destination{kd(d1, 0, 0), kd(d2, 0, 0)},
			want: []string{"delete service TCP 192.0.2.10:80 sched=wrr removing"},
		},
		{
			name: "a removed service with one destination still busy: only the other goes", now: 30 * time.Second,
			after: Want{Key: web}, kernel: []ipvs.Destination{kd(d1, 1, 0), kd(d2, 0, 0)},
			want: []string{"delete destination TCP 192.0.2.10:80 10.1.0.2:8080 w=0 removing"},
		},
		{
			name: "a draining destination someone deleted: forgotten", now: 30 * time.Second,
			after:  Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1))}},
			kernel: []ipvs.Destination{kd(d1, 5, 0)},
			want:   []string{"forget TCP 192.0.2.10:80 10.1.0.2:8080"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := programmed(t, two)
			commitAll(m, t0.Add(time.Second), &tt.after)
			steps := m.PlanDrain(k, tt.kernel, t0.Add(tt.now))
			if diff := cmp.Diff(tt.want, render(steps)); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanAudit(t *testing.T) {
	k := key(lvs.TCP, "192.0.2.10", 80)
	foreign := key(lvs.TCP, "192.0.2.10", 22)
	two := Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr", dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1))}}
	d := func(addr string, w uint32) *lvs.Destination {
		return &lvs.Destination{Address: netip.MustParseAddr(addr), Port: 8080, Weight: w}
	}
	svc := &lvs.Service{ServiceKey: k, Scheduler: "wrr"}
	tests := []struct {
		name string
		hand []ipvs.Op // what a person did with ipvsadm after the agent programmed two
		want []string
	}{
		{name: "no drift: nothing"},
		{
			name: "ipvsadm -D: the service and its destinations come back",
			hand: []ipvs.Op{{Kind: ipvs.DeleteService, Service: svc}},
			want: []string{
				"add service TCP 192.0.2.10:80 sched=wrr repair=ServiceMissing",
				"add destination TCP 192.0.2.10:80 10.1.0.1:8080 w=1 repair=DestinationMissing",
				"add destination TCP 192.0.2.10:80 10.1.0.2:8080 w=1 repair=DestinationMissing",
			},
		},
		{
			name: "a weight edited: set back",
			hand: []ipvs.Op{{Kind: ipvs.UpdateDestination, Service: svc, Destination: d("10.1.0.2", 7)}},
			want: []string{"update destination TCP 192.0.2.10:80 10.1.0.2:8080 w=1 repair=DestinationChanged"},
		},
		{
			name: "the scheduler edited: set back",
			hand: []ipvs.Op{{Kind: ipvs.UpdateService, Service: &lvs.Service{ServiceKey: k, Scheduler: "rr"}}},
			want: []string{"update service TCP 192.0.2.10:80 sched=wrr repair=ServiceChanged"},
		},
		{
			name: "a destination added by hand to an owned service: removed",
			hand: []ipvs.Op{{Kind: ipvs.AddDestination, Service: svc, Destination: d("10.9.9.9", 1)}},
			want: []string{"delete destination TCP 192.0.2.10:80 10.9.9.9:8080 w=1 repair=DestinationUnexpected"},
		},
		{
			name: "a foreign service added by hand: left alone",
			hand: []ipvs.Op{{Kind: ipvs.AddService, Service: &lvs.Service{ServiceKey: foreign, Scheduler: "rr"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Program the fake as the agent would, then let the person edit it.
			fk := newFakeKernel()
			m := NewModel()
			s, _ := m.Plan(&two, t0, nil)
			for i := range s {
				fk.hand(s[i].Op)
				m.Commit(&s[i])
			}
			fk.hand(tt.hand...)
			table, _ := fk.Table(t.Context())
			got := m.PlanAudit(table)
			if diff := cmp.Diff(tt.want, render(got)); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			if tt.name == "a foreign service added by hand: left alone" && !m.Foreign(foreign) {
				t.Errorf("the hand-made service %s is not recorded as foreign", foreign)
			}
		})
	}
}

// A batch whose commits move the model's destinations (a delete shifts those after it, an add
// those after its place) commits each step to the destination it names: steps carry copies.
func TestCommitBatchThatMovesDestinations(t *testing.T) {
	k := key(lvs.TCP, "192.0.2.10", 80)
	four := Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr",
		dst("10.1.0.1", 8080, 1), dst("10.1.0.2", 8080, 1), dst("10.1.0.3", 8080, 1), dst("10.1.0.4", 8080, 1))}}
	m := programmed(t, four)
	// 1 and 2 removed, 0 added: two drains and an add in front of them.
	after := Want{Key: web, Generation: 1, Services: []desired.Service{wsvc(k, "wrr",
		dst("10.1.0.0", 8080, 1), dst("10.1.0.3", 8080, 1), dst("10.1.0.4", 8080, 1))}}
	commitAll(m, t0.Add(time.Second), &after)
	idle := func(addrs ...string) []ipvs.Destination {
		var out []ipvs.Destination
		for _, a := range addrs {
			out = append(out, ipvs.Destination{Destination: lvs.Destination{Address: netip.MustParseAddr(a), Port: 8080}})
		}
		return out
	}
	// Both drained ones are done: two deletes in one batch, the first shifting the second.
	steps := m.PlanDrain(k, idle("10.1.0.0", "10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"), t0.Add(2*time.Second))
	if diff := cmp.Diff([]string{
		"delete destination TCP 192.0.2.10:80 10.1.0.1:8080 w=0",
		"delete destination TCP 192.0.2.10:80 10.1.0.2:8080 w=0",
	}, render(steps)); diff != "" {
		t.Fatalf("drain steps (-want +got):\n%s", diff)
	}
	for i := range steps {
		m.Commit(&steps[i])
	}
	var got []string
	for _, d := range m.Owned(k).Dests {
		got = append(got, fmt.Sprintf("%s w=%d draining=%v", d.Key(), d.Weight, d.Draining()))
	}
	if diff := cmp.Diff([]string{"10.1.0.0:8080 w=1 draining=false", "10.1.0.3:8080 w=1 draining=false", "10.1.0.4:8080 w=1 draining=false"}, got); diff != "" {
		t.Errorf("model's destinations after the batch (-want +got):\n%s", diff)
	}
}
