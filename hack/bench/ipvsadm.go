package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ipvsadm is the kernel's own tool: `ipvsadm -R` restores the table from a file in `ipvsadm -S` format
// (one request per line, each waiting for its ACK), `ipvsadm -Sn` saves it (1 + N dumps).
type ipvsadm struct{ path string }

func newIpvsadm(options) (contender, error) {
	p, err := exec.LookPath("ipvsadm")
	if err != nil {
		return nil, fmt.Errorf("ipvsadm: %w", err)
	}
	return &ipvsadm{path: p}, nil
}

// Program includes writing the rules file: a few milliseconds next to what -R takes.
func (a *ipvsadm) Program(t *Table) error {
	var b bytes.Buffer
	for _, s := range t.Services {
		fmt.Fprintf(&b, "-A -t %v:%d -s %s\n", s.Addr, s.Port, Scheduler)
		for _, d := range s.Dests {
			fmt.Fprintf(&b, "-a -t %v:%d -r %v:%d -m -w %d\n", s.Addr, s.Port, d.Addr, d.Port, d.Weight)
		}
	}
	f, err := os.CreateTemp("", "ipvsadm-restore-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(b.Bytes()); err != nil {
		return err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	cmd := exec.Command(a.path, "-R")
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ipvsadm -R: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (a *ipvsadm) Read() (services, dests int, err error) {
	cmd := exec.Command(a.path, "-Sn")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("ipvsadm -Sn: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		switch {
		case strings.HasPrefix(sc.Text(), "-A "):
			services++
		case strings.HasPrefix(sc.Text(), "-a "):
			dests++
		}
	}
	return services, dests, sc.Err()
}
