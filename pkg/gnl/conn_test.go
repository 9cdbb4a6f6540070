package gnl_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

// A small key-value family served by the fake kernel, to exercise every kind of call.
var kvFamily = &gnl.Family{Name: "KV", Version: 1}

const (
	kvCmdNew = iota + 1
	kvCmdSet
	kvCmdDel
	kvCmdGet
)

type kvEntry struct {
	Key   string `gnl:"1"`
	Value uint32 `gnl:"2,omitempty"`
}

var (
	kvAdd  = gnl.Command[kvEntry, struct{}]{Family: kvFamily, Name: "SET", Cmd: kvCmdSet}
	kvDel  = gnl.Command[kvEntry, struct{}]{Family: kvFamily, Name: "DEL", Cmd: kvCmdDel}
	kvGet  = gnl.Command[kvEntry, kvEntry]{Family: kvFamily, Name: "GET", Cmd: kvCmdGet, Reply: kvCmdNew}
	kvWant = gnl.Command[kvEntry, kvEntry]{Family: kvFamily, Name: "GET", Cmd: kvCmdGet, Reply: kvCmdSet}
)

// kvKernel is the family's "kernel side".
type kvKernel struct {
	mu        sync.Mutex
	keys      []string
	vals      map[string]uint32
	interrupt bool // flag dumps as interrupted
	drop      map[string]bool
}

func newKV(t *testing.T) (*gnltest.Kernel, *kvKernel, *gnl.Conn) {
	t.Helper()
	k := &gnltest.Kernel{}
	kv := &kvKernel{vals: map[string]uint32{}, drop: map[string]bool{}}
	k.Register(&gnltest.Family{Name: "KV", Version: 1, Handle: kv.handle})
	c := k.Dial(&gnl.Config{Timeout: 2 * time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return k, kv, c
}

func (kv *kvKernel) handle(req gnltest.Request) ([]gnltest.Message, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	var e kvEntry
	if err := gnl.Unmarshal(req.Attrs, &e); err != nil {
		return nil, &gnltest.Error{Errno: syscall.EINVAL, Message: err.Error()}
	}
	if kv.drop[e.Key] {
		return nil, gnltest.ErrNoReply
	}
	switch req.Cmd {
	case kvCmdSet:
		if _, ok := kv.vals[e.Key]; ok {
			return nil, &gnltest.Error{Errno: syscall.EEXIST, Message: "key exists"}
		}
		kv.keys = append(kv.keys, e.Key)
		kv.vals[e.Key] = e.Value
		return nil, nil
	case kvCmdDel:
		if _, ok := kv.vals[e.Key]; !ok {
			return nil, syscall.ENOENT
		}
		delete(kv.vals, e.Key)
		return nil, nil
	case kvCmdGet:
		if req.Dump() {
			var out []gnltest.Message
			for _, key := range kv.keys {
				if v, ok := kv.vals[key]; ok {
					m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: key, Value: v})
					if kv.interrupt && len(out) == 1 {
						m.Flags |= 0x10
					}
					out = append(out, m)
				}
			}
			return out, nil
		}
		v, ok := kv.vals[e.Key]
		if !ok {
			return nil, syscall.ENOENT
		}
		m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: e.Key, Value: v})
		return []gnltest.Message{m}, nil
	}
	return nil, syscall.EOPNOTSUPP
}

func TestExecDoDump(t *testing.T) {
	ctx := context.Background()
	k, _, c := newKV(t)
	k.DumpBatch = 1 // every dump message in a datagram of its own: many reads
	for i := range 5 {
		if err := kvAdd.Exec(ctx, c, &kvEntry{Key: fmt.Sprint("k", i), Value: uint32(i * 10)}); err != nil {
			t.Fatal(err)
		}
	}
	var got kvEntry
	if err := kvGet.Do(ctx, c, &kvEntry{Key: "k3"}, &got); err != nil {
		t.Fatal(err)
	}
	if got != (kvEntry{Key: "k3", Value: 30}) {
		t.Errorf("Do: got %+v", got)
	}
	all, err := kvGet.DumpAll(ctx, c, &kvEntry{})
	if err != nil {
		t.Fatal(err)
	}
	want := []kvEntry{{"k0", 0}, {"k1", 10}, {"k2", 20}, {"k3", 30}, {"k4", 40}}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("dump (-want +got):\n%s", diff)
	}
	if err := kvDel.Exec(ctx, c, &kvEntry{Key: "k1"}); err != nil {
		t.Fatal(err)
	}
	all, _ = kvGet.DumpAll(ctx, c, &kvEntry{})
	if len(all) != 4 {
		t.Errorf("after delete, dump has %d entries", len(all))
	}
}

// The errno survives (gnlpy lost it) with the kernel's extended-ACK message.
func TestKernelErrorsKeepErrno(t *testing.T) {
	ctx := context.Background()
	_, _, c := newKV(t)
	if err := kvAdd.Exec(ctx, c, &kvEntry{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	err := kvAdd.Exec(ctx, c, &kvEntry{Key: "a"})
	var ge *gnl.Error
	if !errors.Is(err, syscall.EEXIST) || !errors.As(err, &ge) || ge.Message != "key exists" || ge.Command != "SET" || ge.Family != "KV" {
		t.Errorf("duplicate: got %#v", err)
	}
	err = kvDel.Exec(ctx, c, &kvEntry{Key: "nope"})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: got %v, want os.ErrNotExist", err)
	}
	if err := kvGet.Do(ctx, c, &kvEntry{Key: "nope"}, new(kvEntry)); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("get missing: %v", err)
	}
	// The connection is still in step after errors.
	if err := kvAdd.Exec(ctx, c, &kvEntry{Key: "b"}); err != nil {
		t.Errorf("after errors: %v", err)
	}
}

func TestFamilyLookup(t *testing.T) {
	ctx := context.Background()
	k, _, c := newKV(t)
	before := k.Requests()
	fi, err := c.Family(ctx, "KV")
	if err != nil || fi.Name != "KV" || fi.ID == 0 {
		t.Fatalf("Family: %+v %v", fi, err)
	}
	for range 3 {
		if err := kvAdd.Exec(ctx, c, &kvEntry{Key: fmt.Sprint(k.Requests())}); err != nil {
			t.Fatal(err)
		}
	}
	if n := k.Requests() - before; n != 4 {
		t.Errorf("%d requests for one lookup and 3 commands: the family id is not cached", n)
	}
	_, err = c.Family(ctx, "NOPE")
	if !errors.Is(err, gnl.ErrFamilyNotFound) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing family: %v", err)
	}
	fams, err := c.Families(ctx)
	if err != nil || len(fams) != 2 || fams[0].Name != "nlctrl" || fams[1].Name != "KV" {
		t.Errorf("Families: %+v %v", fams, err)
	}
}

// No global registry: two kernels give the same family different ids, and each connection
// keeps its own.
func TestNoGlobalRegistry(t *testing.T) {
	ctx := context.Background()
	k1, k2 := &gnltest.Kernel{}, &gnltest.Kernel{}
	kv1, kv2 := &kvKernel{vals: map[string]uint32{}}, &kvKernel{vals: map[string]uint32{}}
	k1.Register(&gnltest.Family{Name: "KV", ID: 0x30, Handle: kv1.handle})
	k2.Register(&gnltest.Family{Name: "KV", ID: 0x40, Handle: kv2.handle})
	c1, c2 := k1.Dial(nil), k2.Dial(nil)
	defer c1.Close()
	defer c2.Close()
	if err := kvAdd.Exec(ctx, c1, &kvEntry{Key: "one"}); err != nil {
		t.Fatal(err)
	}
	if err := kvAdd.Exec(ctx, c2, &kvEntry{Key: "two"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := kv1.vals["one"]; !ok {
		t.Error("first kernel did not get its request")
	}
	if _, ok := kv2.vals["two"]; !ok {
		t.Error("second kernel did not get its request")
	}
}

func TestDumpInterrupted(t *testing.T) {
	ctx := context.Background()
	_, kv, c := newKV(t)
	for _, key := range []string{"a", "b", "c"} {
		_ = kvAdd.Exec(ctx, c, &kvEntry{Key: key})
	}
	kv.interrupt = true
	var n int
	err := kvGet.Dump(ctx, c, &kvEntry{}, func(*kvEntry) error { n++; return nil })
	if !errors.Is(err, gnl.ErrDumpInterrupted) {
		t.Errorf("got %v, want ErrDumpInterrupted", err)
	}
	if n != 3 {
		t.Errorf("%d entries delivered, want all 3", n)
	}
	kv.interrupt = false
	if all, err := kvGet.DumpAll(ctx, c, &kvEntry{}); err != nil || len(all) != 3 {
		t.Errorf("retry: %d entries, %v", len(all), err)
	}
}

func TestDumpCallbackErrorStopsAndDrains(t *testing.T) {
	ctx := context.Background()
	k, _, c := newKV(t)
	k.DumpBatch = 1
	for _, key := range []string{"a", "b", "c"} {
		_ = kvAdd.Exec(ctx, c, &kvEntry{Key: key})
	}
	stop := errors.New("enough")
	err := kvGet.Dump(ctx, c, &kvEntry{}, func(*kvEntry) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("got %v", err)
	}
	var got kvEntry
	if err := kvGet.Do(ctx, c, &kvEntry{Key: "c"}, &got); err != nil || got.Key != "c" {
		t.Errorf("next call after a stopped dump: %+v %v", got, err)
	}
}

func TestWrongReplyCommand(t *testing.T) {
	ctx := context.Background()
	_, _, c := newKV(t)
	_ = kvAdd.Exec(ctx, c, &kvEntry{Key: "a"})
	err := kvWant.Do(ctx, c, &kvEntry{Key: "a"}, new(kvEntry))
	if !errors.Is(err, gnl.ErrUnexpectedReply) {
		t.Errorf("got %v, want ErrUnexpectedReply", err)
	}
	if err := kvAdd.Exec(ctx, c, &kvEntry{Key: "b"}); err != nil {
		t.Errorf("next call: %v", err)
	}
}

// A reply that never comes does not hang the caller, and when it comes late, with the sequence
// number of the request that was given up on, it is not taken for the next request's. The next
// request first discards everything queued before it (the resync): late answers that fill the
// receive buffer would otherwise crowd out its own answer, which the kernel would drop (ENOBUFS).
func TestLostAndLateReplies(t *testing.T) {
	k := &gnltest.Kernel{ReceiveBuffer: 4096}
	kv := &kvKernel{vals: map[string]uint32{}, drop: map[string]bool{"slow": true}}
	var slowSeq uint32
	id := k.Register(&gnltest.Family{Name: "KV", Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
		var e kvEntry
		if err := gnl.Unmarshal(req.Attrs, &e); err == nil && e.Key == "slow" {
			slowSeq = req.Sequence
		}
		return kv.handle(req)
	}})
	c := k.Dial(&gnl.Config{Timeout: 2 * time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := kvAdd.Exec(ctx, c, &kvEntry{Key: "slow"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	if slowSeq == 0 {
		t.Fatal("the abandoned request never reached the kernel")
	}
	// The late acknowledgement (EEXIST) and late replies arrive now, with the abandoned request's
	// sequence number and this connection's port id, as the kernel addresses answers: 3,836 of
	// the receive buffer's 4,096 bytes in the fake kernel's accounting (7 datagrams of 36 bytes
	// and 512 of overhead), too full for the next acknowledgement.
	if err := k.SendAck(c.PortID(), slowSeq, syscall.EEXIST); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		m, _ := gnltest.Reply(kvCmdNew, &kvEntry{Key: "x", Value: 666})
		m.PortID = c.PortID()
		if err := k.Send(c.PortID(), id, slowSeq, m); err != nil {
			t.Fatal(err)
		}
	}
	bg := context.Background()
	if err := kvAdd.Exec(bg, c, &kvEntry{Key: "x", Value: 1}); err != nil {
		t.Fatalf("next request: %v", err)
	}
	var got kvEntry
	if err := kvGet.Do(bg, c, &kvEntry{Key: "x"}, &got); err != nil || got.Value != 1 {
		t.Errorf("next query got %+v, %v: a stale reply was taken", got, err)
	}
}

func TestConnTimeoutWithoutDeadline(t *testing.T) {
	k := &gnltest.Kernel{}
	kv := &kvKernel{vals: map[string]uint32{}, drop: map[string]bool{"x": true}}
	k.Register(&gnltest.Family{Name: "KV", Handle: kv.handle})
	c := k.Dial(&gnl.Config{Timeout: 30 * time.Millisecond})
	defer c.Close()
	err := kvAdd.Exec(context.Background(), c, &kvEntry{Key: "x"})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("got %v, want os.ErrDeadlineExceeded", err)
	}
}

func TestCancelInterruptsWait(t *testing.T) {
	_, kv, c := newKV(t)
	kv.drop["x"] = true
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	err := kvAdd.Exec(ctx, c, &kvEntry{Key: "x"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if err := kvAdd.Exec(context.Background(), c, &kvEntry{Key: "y"}); err != nil {
		t.Errorf("the connection is unusable after a cancel: %v", err)
	}
	if err := kvAdd.Exec(ctx, c, &kvEntry{Key: "z"}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled context was used: %v", err)
	}
}

func TestReplyForAnotherPort(t *testing.T) {
	k := &gnltest.Kernel{}
	k.Register(&gnltest.Family{Name: "KV", Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
		m, err := gnltest.Reply(kvCmdNew, &kvEntry{Key: "x"})
		m.PortID = req.PortID + 1 // a reply addressed to another socket
		return []gnltest.Message{m}, err
	}})
	c := k.Dial(&gnl.Config{Timeout: time.Second})
	defer c.Close()
	err := kvGet.Do(context.Background(), c, &kvEntry{Key: "x"}, new(kvEntry))
	if !errors.Is(err, gnl.ErrUnexpectedReply) {
		t.Errorf("got %v, want ErrUnexpectedReply", err)
	}
}

func TestClosed(t *testing.T) {
	_, _, c := newKV(t)
	_ = c.Close()
	if err := kvAdd.Exec(context.Background(), c, &kvEntry{Key: "a"}); !errors.Is(err, gnl.ErrClosed) {
		t.Errorf("got %v", err)
	}
}

// Close interrupts a request waiting for a reply that does not come: the request returns an
// error matching ErrClosed at once, not at its timeout.
func TestCloseInterruptsRequest(t *testing.T) {
	_, kv, c := newKV(t)
	kv.mu.Lock()
	kv.drop["x"] = true
	kv.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- kvAdd.Exec(context.Background(), c, &kvEntry{Key: "x"}) }() // timeout 2 s
	time.Sleep(50 * time.Millisecond)                                               // let it wait for its reply
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, gnl.ErrClosed) {
			t.Errorf("request after Close: %v, want ErrClosed", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the request returned %v after Close", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not return after Close")
	}
}
