package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kubelvs/kubelvs/internal/podstats"
)

func TestPodStatsOptionsValidate(t *testing.T) {
	good := func() podStatsOptions {
		return podStatsOptions{enabled: true, window: podstats.DefaultWindow, thresholds: podstats.DefaultThresholds, margin: podstats.DefaultMargin}
	}
	if o := good(); o.validate() != nil {
		t.Fatalf("defaults refused: %v", o.validate())
	}
	if o := (podStatsOptions{window: 0}); o.validate() != nil {
		t.Errorf("--taskstats=false validates nothing else: %v", o.validate())
	}
	for _, tt := range []struct {
		name string
		edit func(*podStatsOptions)
		want string
	}{
		{"window too short", func(o *podStatsOptions) { o.window = time.Millisecond }, "--taskstats-window must be at least 1s"},
		{"zero threshold", func(o *podStatsOptions) { o.thresholds.IO = 0 }, "must be positive"},
		{"negative margin", func(o *podStatsOptions) { o.margin = -1 }, "must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.edit(&o)
			if err := o.validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// The flags' defaults are the package's.
	root := newRootCommand()
	cmd, _, err := root.Find([]string{"agent"})
	if err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"taskstats": "true", "enable-delayacct": "false", "taskstats-window": "30s",
		"cgroup-root": "/sys/fs/cgroup", "proc-root": "/proc", "taskstats-cpu-threshold": "0.1", "taskstats-margin": "0.02"} {
		if f := cmd.Flags().Lookup(flag); f == nil || f.DefValue != want {
			t.Errorf("--%s: %v, want default %s", flag, f, want)
		}
	}
}
