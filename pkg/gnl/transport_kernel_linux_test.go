//go:build linux

package gnl

import (
	"context"
	"errors"
	"os"
	"testing"
)

// countingTransport counts reads and the bytes they returned.
type countingTransport struct {
	Transport
	reads int
}

func (t *countingTransport) Receive(b []byte) (int, error) {
	t.reads++
	return t.Transport.Receive(b)
}

func dialCounting(t *testing.T, cfg *Config) (*Conn, *countingTransport) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) for the real kernel's generic netlink")
	}
	c := cfg.withDefaults()
	s, err := dialSocket(&c)
	if err != nil {
		t.Fatal(err)
	}
	ct := &countingTransport{Transport: s}
	conn := NewConn(ct, &c)
	t.Cleanup(func() { _ = conn.Close() })
	return conn, ct
}

// One read takes many datagrams: a batch of n requests, each answered by the kernel with a
// reply and an acknowledgement (2n datagrams), is read in far fewer than 2n reads.
func TestKernelReadsManyDatagrams(t *testing.T) {
	for _, mb := range []int{0, 4096} {
		c, ct := dialCounting(t, &Config{MessageBuffer: mb})
		const n = 1000
		var b Batch
		for range n {
			if err := CtrlGetFamily.Add(&b, &CtrlRequest{Name: "nlctrl"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.SendBatch(context.Background(), &b); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := b.Err(i); err != nil {
				t.Fatalf("MessageBuffer %d: request %d: %v", mb, i, err)
			}
		}
		t.Logf("MessageBuffer %d: %d reads for %d requests (%d datagrams) in %d sendmsg", mb, ct.reads, n, 2*n, b.Sends())
		if ct.reads > n/4 {
			t.Errorf("MessageBuffer %d: %d reads for %d datagrams: not several per read", mb, ct.reads, 2*n)
		}
		// The connection is in step afterwards: a dump and a request still work.
		if _, err := c.Families(context.Background()); err != nil {
			t.Errorf("MessageBuffer %d: family dump after the batch: %v", mb, err)
		}
		if _, err := c.Family(context.Background(), "nlctrl"); err != nil {
			t.Errorf("MessageBuffer %d: request after the batch: %v", mb, err)
		}
	}
}

// A datagram larger than MessageBuffer is reported, not silently cut.
func TestKernelMessageBufferTruncation(t *testing.T) {
	c, _ := dialCounting(t, &Config{MessageBuffer: 128})
	// nlctrl's description of itself (operations, groups) is far larger than 128 bytes.
	_, err := c.Family(context.Background(), "nlctrl")
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed for a datagram larger than the read buffer", err)
	}
}
