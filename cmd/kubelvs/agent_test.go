package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// The DaemonSet in config/agent runs `kubelvs agent` with flags the command really has.
func TestAgentDaemonSetArgs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "agent", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatal(err)
	}
	args := ds.Spec.Template.Spec.Containers[0].Args
	if len(args) == 0 || args[0] != "agent" {
		t.Fatalf("the DaemonSet runs %v, want the agent subcommand", args)
	}
	root := newRootCommand()
	cmd, rest, err := root.Find(args[:1])
	if err != nil || cmd.Name() != "agent" || len(rest) != 0 {
		t.Fatalf("kubelvs has no agent subcommand: %v %v", cmd, err)
	}
	for _, a := range args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if cmd.Flags().Lookup(name) == nil {
			t.Errorf("the DaemonSet passes %s, which kubelvs agent does not have", a)
		}
	}
	if err := cmd.Flags().Parse(args[1:]); err != nil {
		t.Errorf("kubelvs agent refuses the DaemonSet's flags: %v", err)
	}
}

// Bad flag values are refused at start with a message naming the flag.
func TestAgentOptionsValidate(t *testing.T) {
	good := func() agentOptions {
		return agentOptions{node: "n1", stateDir: "/var/lib/kubelvs", auditPeriod: 60e9, drainPoll: 2e9, retryPeriod: 5e9, leaseDuration: 40e9, masquerade: "remote", vipInterface: "lo"}
	}
	if err := (func() *agentOptions { o := good(); return &o })().validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	for _, tt := range []struct {
		name string
		edit func(*agentOptions)
		want string
	}{
		{"no node name", func(o *agentOptions) { o.node = "" }, "--node-name is required"},
		{"audit period too short", func(o *agentOptions) { o.auditPeriod = 1e6 }, "--audit-period must be at least 1s"},
		{"drain poll too short", func(o *agentOptions) { o.drainPoll = 0 }, "--drain-poll-period must be at least"},
		{"lease too short", func(o *agentOptions) { o.leaseDuration = 1e9 }, "--lease-duration must be at least 4s"},
		{"bad masquerade", func(o *agentOptions) { o.masquerade = "some" }, `--masquerade: dataplane: masquerade mode "some"`},
		{"long interface name", func(o *agentOptions) { o.vipInterface = "kubelvs-interface0" }, "--vip-interface"},
		{"bad CIDR", func(o *agentOptions) { o.managedCIDRs = []string{"10.0.0.0/8,banana"} }, `--managed-cidrs: "banana" is not a CIDR prefix`},
		{"host bits", func(o *agentOptions) { o.managedCIDRs = []string{"10.0.0.1/8"} }, "has host bits set (did you mean 10.0.0.0/8?)"},
		{"missing netns", func(o *agentOptions) { o.netns = "/nonexistent/netns" }, "--netns: stat /nonexistent/netns"},
		{"no state dir", func(o *agentOptions) { o.stateDir = "" }, "--state-dir must not be empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.edit(&o)
			err := o.validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
