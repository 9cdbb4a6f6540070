package gnl_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

// Every error the package returns reads once: "gnl: OPERATION OBJECT: cause (errno)", with one
// "gnl:" at its start, and keeps its sentinels and errno for errors.Is. The cases walk the
// package's error paths: kernel errors with and without an extended-ACK message, family
// lookup, the connection closed, contexts, timeouts, protocol errors, overflow in requests,
// batches and listeners, encoding and decoding.
func TestErrorsReadOnce(t *testing.T) {
	type errCase struct {
		name string
		err  func(t *testing.T) error
		want string  // the whole message
		is   []error // what errors.Is must find
	}
	bg := context.Background()
	cases := []errCase{
		{"kernel error with a message", func(t *testing.T) error {
			_, _, c := newKV(t)
			_ = kvAdd.Exec(bg, c, &kvEntry{Key: "a"})
			return kvAdd.Exec(bg, c, &kvEntry{Key: "a"})
		}, "gnl: KV SET: key exists (file exists)", []error{syscall.EEXIST, os.ErrExist}},
		{"kernel error without a message", func(t *testing.T) error {
			_, _, c := newKV(t)
			return kvDel.Exec(bg, c, &kvEntry{Key: "nope"})
		}, "gnl: KV DEL: no such file or directory", []error{syscall.ENOENT, os.ErrNotExist}},
		{"family not found", func(t *testing.T) error {
			_, _, c := newKV(t)
			_, err := c.Family(bg, "NOPE")
			return err
		}, `gnl: look up family "NOPE": generic netlink family not found (no such file or directory)`,
			[]error{gnl.ErrFamilyNotFound, os.ErrNotExist, syscall.ENOENT}},
		{"request on a closed connection", func(t *testing.T) error {
			_, _, c := newKV(t)
			_ = c.Close()
			return kvAdd.Exec(bg, c, &kvEntry{Key: "a"})
		}, "gnl: KV SET: connection closed", []error{gnl.ErrClosed}},
		{"cancelled context", func(t *testing.T) error {
			_, _, c := newKV(t)
			ctx, cancel := context.WithCancel(bg)
			cancel()
			return kvAdd.Exec(ctx, c, &kvEntry{Key: "a"})
		}, "gnl: KV SET: context canceled", []error{context.Canceled}},
		{"no reply within the timeout", func(t *testing.T) error {
			k := &gnltest.Kernel{}
			kv := &kvKernel{vals: map[string]uint32{}, drop: map[string]bool{"x": true}}
			k.Register(&gnltest.Family{Name: "KV", Handle: kv.handle})
			c := k.Dial(&gnl.Config{Timeout: 30 * time.Millisecond})
			defer c.Close()
			return kvAdd.Exec(bg, c, &kvEntry{Key: "x"})
		}, "gnl: KV SET: no reply within 30ms: i/o timeout", []error{os.ErrDeadlineExceeded}},
		{"context deadline while waiting", func(t *testing.T) error {
			_, kv, c := newKV(t)
			kv.drop["x"] = true
			ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
			defer cancel()
			return kvAdd.Exec(ctx, c, &kvEntry{Key: "x"})
		}, "gnl: KV SET: waiting for a reply: context deadline exceeded", []error{context.DeadlineExceeded}},
		{"wrong reply command", func(t *testing.T) error {
			_, _, c := newKV(t)
			_ = kvAdd.Exec(bg, c, &kvEntry{Key: "a"})
			return kvWant.Do(bg, c, &kvEntry{Key: "a"}, new(kvEntry))
		}, "gnl: KV GET: unexpected reply: reply command 1, want 2", []error{gnl.ErrUnexpectedReply}},
		{"dump interrupted", func(t *testing.T) error {
			_, kv, c := newKV(t)
			_ = kvAdd.Exec(bg, c, &kvEntry{Key: "a"})
			_ = kvAdd.Exec(bg, c, &kvEntry{Key: "b"})
			kv.interrupt = true
			_, err := kvGet.DumpAll(bg, c, &kvEntry{})
			return err
		}, "gnl: KV GET: dump interrupted by a concurrent change (retry)", []error{gnl.ErrDumpInterrupted}},
		{"encode", func(t *testing.T) error {
			_, _, c := newKV(t)
			return kvAdd.Exec(bg, c, &kvEntry{Key: "a\x00"})
		}, "gnl: KV SET: encode: Key: string contains a NUL byte", nil},
		{"batch on a closed connection", func(t *testing.T) error {
			_, _, c := newKV(t)
			_ = c.Close()
			var b gnl.Batch
			_ = kvAdd.Add(&b, &kvEntry{Key: "a"})
			err := c.SendBatch(bg, &b)
			if !errors.Is(b.Err(0), gnl.ErrClosed) {
				t.Errorf("the unsent request's result: %v", b.Err(0))
			}
			return err
		}, "gnl: batch: connection closed", []error{gnl.ErrClosed}},
		{"batch request whose answer was dropped", func(t *testing.T) error {
			k := &gnltest.Kernel{ReceiveBuffer: 4096}
			var c *gnl.Conn
			var id uint16
			id = k.Register(&gnltest.Family{Name: "KV", Handle: func(gnltest.Request) ([]gnltest.Message, error) {
				for range 10 { // unsolicited messages fill the buffer: the acknowledgement is dropped
					m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: "e"})
					_ = k.Send(c.PortID(), id, 0, m)
				}
				return nil, nil
			}})
			c = k.Dial(nil)
			defer c.Close()
			var b gnl.Batch
			_ = kvAdd.Add(&b, &kvEntry{Key: "a"})
			if err := c.SendBatch(bg, &b); err != nil {
				return err
			}
			return b.Err(0)
		}, "gnl: KV SET: acknowledgement lost, outcome unknown (no buffer space available)",
			[]error{gnl.ErrAckLost, syscall.ENOBUFS}},
		{"listener told of losses", func(t *testing.T) error {
			k := &gnltest.Kernel{ReceiveBuffer: 2048}
			id := k.Register(&gnltest.Family{Name: "KV", Handle: func(gnltest.Request) ([]gnltest.Message, error) { return nil, nil }})
			c := k.Dial(nil)
			defer c.Close()
			if _, err := c.Family(bg, "KV"); err != nil {
				t.Fatal(err)
			}
			for range 5 { // 3 of 548 bytes fit in 2,048
				m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: "e"})
				_ = k.Send(c.PortID(), id, 0, m)
			}
			var lost error
			_ = kvEvents.Listen(bg, c, func(_ *kvEntry, err error) error {
				lost = err
				return err // stop at the report
			})
			return lost
		}, "gnl: KV EVENT: listen: 2 messages lost (no buffer space available)",
			[]error{gnl.ErrMessagesLost, syscall.ENOBUFS}},
		{"listener on a closed connection", func(t *testing.T) error {
			_, _, c := newKV(t)
			_ = c.Close()
			return kvEvents.Listen(bg, c, func(*kvEntry, error) error { return nil })
		}, "gnl: KV EVENT: listen: connection closed", []error{gnl.ErrClosed}},
		{"missing multicast group", func(t *testing.T) error {
			_, _, c := newKV(t)
			return c.JoinGroup(bg, "KV", "nope")
		}, "gnl: group KV nope: no such multicast group (file does not exist)", []error{os.ErrNotExist}},
		{"unmarshal malformed", func(t *testing.T) error {
			return gnl.Unmarshal([]byte{8, 0, 1, 0, 'a'}, new(kvEntry))
		}, "gnl: unmarshal: gnl_test.kvEntry: malformed netlink data: attribute 1 at offset 0 claims length 8, 5 bytes remain",
			[]error{gnl.ErrMalformed}},
		{"marshal nil", func(t *testing.T) error {
			_, err := gnl.Marshal((*kvEntry)(nil))
			return err
		}, "gnl: marshal gnl_test.kvEntry: nil pointer", nil},
		{"bad declaration", func(t *testing.T) error {
			type bad struct {
				X uint32 `gnl:"0"`
			}
			_, err := gnl.Marshal(&bad{})
			return err
		}, "gnl: attribute set gnl_test.bad: field X: attribute number 0 is reserved (NLA_UNSPEC)", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if tc.want != "" && msg != tc.want {
				t.Errorf("error reads\n  %q\nwant\n  %q", msg, tc.want)
			}
			if !strings.HasPrefix(msg, "gnl: ") || strings.Count(msg, "gnl:") != 1 {
				t.Errorf("%q: want one gnl: prefix and no other", msg)
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("%q does not match %v", msg, target)
				}
			}
		})
	}
}

// The sentinels read as causes, for the package's messages to say gnl: once.
func TestSentinelsReadAsCauses(t *testing.T) {
	for _, err := range []error{gnl.ErrMalformed, gnl.ErrTooLarge, gnl.ErrDumpInterrupted, gnl.ErrFamilyNotFound,
		gnl.ErrAckLost, gnl.ErrUnexpectedReply, gnl.ErrClosed, gnl.ErrMessagesLost, &gnl.LostError{Count: 3}} {
		if strings.Contains(err.Error(), "gnl:") {
			t.Errorf("%q carries its own gnl: prefix", err)
		}
	}
	if got, want := fmt.Sprint(&gnl.LostError{Count: 3}), "3 messages lost (no buffer space available)"; got != want {
		t.Errorf("LostError reads %q, want %q", got, want)
	}
}
