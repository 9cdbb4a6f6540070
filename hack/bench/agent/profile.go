package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// pprofPort is where the agent serves /debug/pprof with -profile.
const pprofPort = 9802

// profiler takes the agent's profiles (with -profile) and prints them on the console.
type profiler struct {
	on   bool
	done []chan struct{}
}

// cpu starts a CPU profile of d as soon as the agent's pprof endpoint answers (it comes up
// with the manager, before the caches sync) and prints it when it ends.
func (p *profiler) cpu(name string, d time.Duration) { p.record(name, "profile", d) }

// trace starts an execution trace of d (the agent's /debug/pprof/trace) the same way and
// prints it as NAME-trace (run-agent.sh writes it as NAME-trace.out, for go tool trace).
func (p *profiler) trace(name string, d time.Duration) { p.record(name+"-trace", "trace", d) }

// record takes /debug/pprof/KIND over d, retrying while the endpoint does not answer yet, and
// prints it as name.
func (p *profiler) record(name, kind string, d time.Duration) {
	if !p.on {
		return
	}
	ch := make(chan struct{})
	p.done = append(p.done, ch)
	go func() {
		defer close(ch)
		url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s?seconds=%d", pprofPort, kind, int(d.Seconds()))
		deadline := time.Now().Add(2 * time.Minute)
		for {
			b, err := get(url, d+time.Minute)
			if err == nil {
				emit(name, b)
				return
			}
			if time.Now().After(deadline) {
				logf("profile %s: %v", name, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
}

// heap prints the agent's heap profile now, of the live heap (gc=1: collected first; without it
// the profile is of the last collection, which after a quiet spell can be from the first sync).
func (p *profiler) heap(name string) {
	if !p.on {
		return
	}
	b, err := get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1", pprofPort), time.Minute)
	if err != nil {
		logf("profile %s: %v", name, err)
		return
	}
	emit(name, b)
}

// wait waits for the profiles begun to be printed.
func (p *profiler) wait() {
	for _, ch := range p.done {
		<-ch
	}
	p.done = nil
}

func get(url string, timeout time.Duration) ([]byte, error) {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return b, nil
}

// emit prints b as `@@pprof NAME BASE64` lines (the serial console carries text only).
func emit(name string, b []byte) {
	s := base64.StdEncoding.EncodeToString(b)
	for len(s) > 0 {
		n := min(len(s), 96)
		fmt.Printf("@@pprof %s %s\n", name, s[:n])
		s = s[n:]
	}
	logf("profile %s: %d bytes", name, len(b))
}

// pprofFlag is the agent's flag serving pprof where the profiler reads it.
func pprofFlag() string { return "--pprof-bind-address=127.0.0.1:" + strconv.Itoa(pprofPort) }
