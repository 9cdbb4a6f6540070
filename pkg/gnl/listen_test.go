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
			// An event arrives between the request and its acknowledgement.
			m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: "during", Value: 1})
			_ = k.Send(conn.PortID(), id, 0, m)
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
			if !errors.Is(lost, gnl.ErrMessagesLost) || !errors.Is(lost, syscall.ENOBUFS) {
				t.Errorf("loss reported as %v", lost)
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
