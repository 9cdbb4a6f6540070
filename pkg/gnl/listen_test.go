package gnl_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

var kvEvents = gnl.Command[struct{}, kvEntry]{Family: kvFamily, Name: "EVENT", Reply: kvCmdNew}

// Messages the kernel sends unasked reach a listener, including those that arrived while the
// connection waited for a reply to a request; losses are reported.
func TestListen(t *testing.T) {
	k := &gnltest.Kernel{}
	var id uint16
	var conn *gnl.Conn
	id = k.Register(&gnltest.Family{Name: "KV", Groups: []gnl.McastGrp{{Name: "events", ID: 7}},
		Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
			// An event arrives between the request and its acknowledgement, with port id 0
			// and a sequence number of its own, as taskstats stamps exit records.
			m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: "during", Value: 1})
			_ = k.Send(conn.PortID(), id, 77, m)
			return nil, nil
		}})
	conn = k.Dial(nil)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := kvAdd.Exec(ctx, conn, &kvEntry{Key: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := conn.JoinGroup(ctx, "KV", "events"); err != nil {
		t.Fatal(err)
	}
	if err := conn.JoinGroup(ctx, "KV", "nope"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unknown group: %v", err)
	}
	go func() {
		for i := range 3 {
			m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: fmt.Sprint("mc", i), Value: uint32(i)})
			k.Multicast(7, id, m)
			other, _ := gnltest.Reply(kvCmdSet, &kvEntry{Key: "other command"})
			k.Multicast(7, id, other)
		}
	}()
	var got []kvEntry
	stop := errors.New("stop")
	err := kvEvents.Listen(ctx, conn, func(e *kvEntry, lost error) error {
		if lost != nil {
			return lost
		}
		got = append(got, *e)
		if len(got) == 4 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Listen: %v", err)
	}
	want := []kvEntry{{"during", 1}, {"mc0", 0}, {"mc1", 1}, {"mc2", 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// Listen ends with its context.
	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if err := kvEvents.Listen(short, conn, func(*kvEntry, error) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Listen after its deadline: %v", err)
	}
}

// A read takes several datagrams: those after the message a Listen stopped at reach the next
// Listen, as do those read while a request waited.
func TestListenKeepsRestOfRead(t *testing.T) {
	k := &gnltest.Kernel{DatagramsPerRead: 16}
	id := k.Register(&gnltest.Family{Name: "KV", Handle: func(gnltest.Request) ([]gnltest.Message, error) { return nil, nil }})
	conn := k.Dial(nil)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Family(ctx, "KV"); err != nil {
		t.Fatal(err)
	}
	send := func(keys ...string) {
		for _, key := range keys {
			m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: key})
			if err := k.Send(conn.PortID(), id, 0, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []string
	listen := func(n int) {
		t.Helper()
		stop := errors.New("stop")
		err := kvEvents.Listen(ctx, conn, func(e *kvEntry, err error) error {
			if err != nil {
				t.Errorf("Listen: %v", err)
				return err
			}
			got = append(got, e.Key)
			if len(got) == n {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) {
			t.Fatalf("Listen: %v", err)
		}
	}
	send("a", "b", "c")
	listen(1) // one read takes all three; Listen stops after the first
	listen(3)
	// Messages read before a request's answer wait for the next Listen too.
	send("d", "e")
	if _, err := conn.Families(ctx); err != nil {
		t.Fatal(err)
	}
	listen(5)
	if diff := cmp.Diff([]string{"a", "b", "c", "d", "e"}, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

func TestListenReportsLoss(t *testing.T) {
	k := &gnltest.Kernel{ReceiveBuffer: 4096}
	id := k.Register(&gnltest.Family{Name: "KV", Handle: func(gnltest.Request) ([]gnltest.Message, error) { return nil, nil }})
	conn := k.Dial(nil)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Family(ctx, "KV"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // more than 4 KiB of messages: the fake kernel drops some
		m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: fmt.Sprint(i)})
		_ = k.Send(conn.PortID(), id, 0, m)
	}
	var n, losses int
	err := kvEvents.Listen(ctx, conn, func(e *kvEntry, lost error) error {
		if lost != nil {
			var le *gnl.LostError
			if !errors.Is(lost, gnl.ErrMessagesLost) || !errors.Is(lost, syscall.ENOBUFS) || !errors.As(lost, &le) || le.Count != 13 {
				t.Errorf("loss reported as %v, want 13 messages lost", lost)
			}
			losses++
			return nil
		}
		n++
		if e.Key == "6" { // the last one that fits: 7 × (512 + 36) bytes
			return context.Canceled
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Listen: %v", err)
	}
	if losses != 1 || n != 7 {
		t.Errorf("%d records, %d loss reports; want 7 and 1", n, losses)
	}
}

// Unsolicited messages that overflow the receive buffer while a request waits do not fail the
// request when its answer was queued, report it lost when it was dropped (at once, not after the
// timeout), and are reported to the next Listen.
func TestRequestDuringOverflow(t *testing.T) {
	k := &gnltest.Kernel{ReceiveBuffer: 8192}
	var conn *gnl.Conn
	var id uint16
	burst := 0
	id = k.Register(&gnltest.Family{Name: "KV", Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
		for i := range burst {
			m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: fmt.Sprint(i)})
			_ = k.Send(conn.PortID(), id, uint32(i), m)
		}
		if burst == 0 {
			m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: "answer"})
			return []gnltest.Message{m}, nil
		}
		return nil, nil
	}})
	conn = k.Dial(&gnl.Config{Timeout: 10 * time.Second})
	defer conn.Close()
	ctx := context.Background()
	if _, err := conn.Family(ctx, "KV"); err != nil {
		t.Fatal(err)
	}
	burst = 30 // 30 × 548 bytes: the acknowledgement does not fit either
	start := time.Now()
	err := kvAdd.Exec(ctx, conn, &kvEntry{Key: "x"})
	if !errors.Is(err, gnl.ErrAckLost) || !errors.Is(err, syscall.ENOBUFS) {
		t.Fatalf("request whose ACK was dropped: %v, want ErrAckLost", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the lost ACK was waited for %v: the timeout, not the drain, ended the call", time.Since(start))
	}
	burst = 0
	var got kvEntry
	if err := kvGet.Do(ctx, conn, &kvEntry{Key: "y"}, &got); err != nil || got.Key != "answer" {
		t.Fatalf("next request: %+v %v", got, err)
	}
	var records, losses int
	lctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_ = kvEvents.Listen(lctx, conn, func(e *kvEntry, lost error) error {
		if lost != nil {
			losses++
		} else {
			records++
		}
		return nil
	})
	if losses == 0 || records == 0 || records >= 30 {
		t.Errorf("Listen saw %d records and %d loss reports; want the queued records and a loss", records, losses)
	}
}

// Close does not wait for a Listen that holds the connection: it interrupts the blocked read,
// returns at once, and the Listen returns an error matching ErrClosed.
func TestCloseInterruptsListen(t *testing.T) {
	k := &gnltest.Kernel{}
	id := k.Register(&gnltest.Family{Name: "KV", Handle: func(gnltest.Request) ([]gnltest.Message, error) { return nil, nil }})
	conn := k.Dial(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Family(ctx, "KV"); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- kvEvents.Listen(ctx, conn, func(*kvEntry, error) error {
			close(listening) // one record seen: Listen goes back to its blocking read
			return nil
		})
	}()
	m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: "a"})
	if err := k.Send(conn.PortID(), id, 0, m); err != nil {
		t.Fatal(err)
	}
	<-listening
	closed := make(chan error, 1)
	go func() { closed <- conn.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close blocked while a Listen held the connection")
	}
	select {
	case err := <-done:
		if !errors.Is(err, gnl.ErrClosed) {
			t.Errorf("Listen after Close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Listen did not return after Close")
	}
	if err := conn.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := kvAdd.Exec(ctx, conn, &kvEntry{Key: "b"}); !errors.Is(err, gnl.ErrClosed) {
		t.Errorf("request after Close: %v, want ErrClosed", err)
	}
}
