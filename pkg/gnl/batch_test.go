package gnl_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

func TestBatchResultsPerRequest(t *testing.T) {
	ctx := context.Background()
	_, kv, c := newKV(t)
	var b gnl.Batch
	for i := range 10 {
		key := fmt.Sprint("k", i%7) // k0..k2 are added twice: those fail with EEXIST
		if err := kvAdd.Add(&b, &kvEntry{Key: key, Value: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := kvDel.Add(&b, &kvEntry{Key: "missing"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if b.Sends() != 1 {
		t.Errorf("%d sendmsg calls for 11 requests, want 1", b.Sends())
	}
	for i := range 10 {
		err := b.Err(i)
		if want := i >= 7; want != errors.Is(err, syscall.EEXIST) {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if err := b.Err(10); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("delete of a missing key: %v", err)
	}
	if len(kv.vals) != 7 || kv.vals["k6"] != 6 || kv.vals["k0"] != 0 {
		t.Errorf("kernel state %v", kv.vals)
	}
}

func TestBatchWindows(t *testing.T) {
	ctx := context.Background()
	k := &gnltest.Kernel{}
	kv := &kvKernel{vals: map[string]uint32{}}
	k.Register(&gnltest.Family{Name: "KV", Handle: kv.handle})
	c := k.Dial(&gnl.Config{Window: 64})
	defer c.Close()
	var b gnl.Batch
	for i := range 1000 {
		_ = kvAdd.Add(&b, &kvEntry{Key: fmt.Sprint(i)})
	}
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if b.Sends() != 16 {
		t.Errorf("%d sends for 1000 requests in windows of 64, want 16", b.Sends())
	}
	for i := range 1000 {
		if b.Err(i) != nil {
			t.Fatalf("request %d: %v", i, b.Err(i))
		}
	}
	if len(kv.vals) != 1000 {
		t.Errorf("kernel has %d keys", len(kv.vals))
	}
	// The batch can be reused.
	b.Reset()
	_ = kvDel.Add(&b, &kvEntry{Key: "0"})
	if err := c.SendBatch(ctx, &b); err != nil || b.Err(0) != nil || b.Len() != 1 {
		t.Errorf("reused batch: %v %v", err, b.Err(0))
	}
}

// When the receive buffer overflows, the requests whose ACK was dropped are reported, not lost
// silently, and the batch goes on with a smaller window.
func TestBatchOverflowIsReported(t *testing.T) {
	ctx := context.Background()
	k := &gnltest.Kernel{ReceiveBuffer: 64 * 1024} // the transport claims it, the kernel enforces it
	kv := &kvKernel{vals: map[string]uint32{}}
	k.Register(&gnltest.Family{Name: "KV", Handle: kv.handle})
	// The window allows 64 requests (a KiB of buffer for each one's answer), but each GET's
	// reply echoes a 1,500-byte key: twice what fits.
	c := k.Dial(nil)
	defer c.Close()
	key := func(i int) string { return fmt.Sprintf("%01500d", i) }
	var b gnl.Batch
	for i := range 300 {
		_ = kvAdd.Add(&b, &kvEntry{Key: key(i)})
	}
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	for i := range 300 {
		_ = kvGet.Add(&b, &kvEntry{Key: key(i)})
	}
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	checkOverflow(t, &b, 300)
	if b.Sends() <= 300/64 {
		t.Errorf("%d sends: the window did not shrink after an overflow", b.Sends())
	}
	// The connection is in step afterwards.
	var got kvEntry
	if err := kvGet.Do(ctx, c, &kvEntry{Key: key(299)}, &got); err != nil || got.Key != key(299) {
		t.Errorf("after overflow: %+v %v", got, err)
	}
}

// checkOverflow checks the results of a batch of n requests that overflowed the receive buffer:
// each one answered, or lost to ENOBUFS (ErrAckLost), and some of each.
func checkOverflow(t *testing.T, b *gnl.Batch, n int) {
	t.Helper()
	var lost, ok int
	for i := range n {
		switch err := b.Err(i); {
		case err == nil:
			ok++
		case errors.Is(err, gnl.ErrAckLost) && errors.Is(err, syscall.ENOBUFS):
			lost++
		default:
			t.Errorf("request %d: %v", i, err)
		}
	}
	t.Logf("%d answered, %d lost to ENOBUFS, %d sendmsg calls", ok, lost, b.Sends())
	if ok == 0 || lost == 0 {
		t.Errorf("%d answered, %d lost: want some of each", ok, lost)
	}
}

func TestBatchEncodeError(t *testing.T) {
	var b gnl.Batch
	if err := kvAdd.Add(&b, &kvEntry{Key: "a\x00"}); err == nil {
		t.Error("a request that cannot be encoded was added")
	}
	if b.Len() != 0 {
		t.Errorf("batch has %d requests after a failed add", b.Len())
	}
}

func TestBatchWithReplies(t *testing.T) {
	ctx := context.Background()
	k, _, c := newKV(t)
	for i := range 5 {
		_ = kvAdd.Exec(ctx, c, &kvEntry{Key: fmt.Sprint(i), Value: uint32(i * i)})
	}
	before := k.Requests()
	got := map[string]uint32{}
	var b gnl.Batch
	for i := range 7 { // 5 and 6 do not exist
		if err := kvGet.AddDo(&b, &kvEntry{Key: fmt.Sprint(i)}, func(e *kvEntry) error {
			got[e.Key] = e.Value
			if e.Key == "3" {
				return errors.New("refused by the callback")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	_ = kvAdd.Add(&b, &kvEntry{Key: "new"})
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if want := map[string]uint32{"0": 0, "1": 1, "2": 4, "3": 9, "4": 16}; !cmp.Equal(got, want) {
		t.Errorf("replies %v, want %v", got, want)
	}
	for i := range 8 {
		err := b.Err(i)
		switch {
		case i == 3:
			if err == nil || err.Error() != "refused by the callback" {
				t.Errorf("request 3: %v", err)
			}
		case i == 5 || i == 6:
			if !errors.Is(err, syscall.ENOENT) {
				t.Errorf("request %d: %v", i, err)
			}
		case err != nil:
			t.Errorf("request %d: %v", i, err)
		}
	}
	if n := k.Requests() - before; n != 8 || b.Sends() != 1 {
		t.Errorf("%d requests in %d sends, want 8 in 1", n, b.Sends())
	}
}

// Only the last request of each sendmsg asks for an acknowledgement; the others are answered
// only when they fail, and their results are exact either way, also when the last request of a
// window is the one that fails.
func TestBatchAcknowledgesOnlyTheLastOfEachWindow(t *testing.T) {
	ctx := context.Background()
	k := &gnltest.Kernel{}
	kv := &kvKernel{vals: map[string]uint32{}}
	var acked []int
	seen := 0
	k.Register(&gnltest.Family{Name: "KV", Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
		if req.Flags&0x4 != 0 { // NLM_F_ACK
			acked = append(acked, seen)
		}
		seen++
		return kv.handle(req)
	}})
	c := k.Dial(&gnl.Config{Window: 64})
	defer c.Close()
	const n = 1000
	dup := func(i int) bool { return i%100 == 50 || i == 63 || i == 127 }
	var b gnl.Batch
	for i := range n {
		key := fmt.Sprint(i)
		if dup(i) {
			key = "0" // added by request 0: EEXIST
		}
		if err := kvAdd.Add(&b, &kvEntry{Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	var want []int
	for i := 63; i < n; i += 64 {
		want = append(want, i)
	}
	want = append(want, n-1)
	if diff := cmp.Diff(want, acked); diff != "" {
		t.Errorf("requests that asked for an acknowledgement (-want +got):\n%s", diff)
	}
	for i := range n {
		if err := b.Err(i); dup(i) != errors.Is(err, syscall.EEXIST) || (!dup(i) && err != nil) {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if len(kv.vals) != n-12 {
		t.Errorf("kernel has %d keys, want %d", len(kv.vals), n-12)
	}
}

// Sequence numbers wrap at 2^32 and skip 0. A window that crosses the wrap matches every
// answer to its own request: the failures land on the requests that failed, the window's last
// acknowledgement ends it (no timeout), and so do the requests and windows after it.
func TestBatchSequenceWraparound(t *testing.T) {
	for _, tc := range []struct {
		name string
		last uint32 // the connection's last sequence number before the batch
	}{
		{"wrap inside the first window", 1<<32 - 5},
		{"last request of the first window on 2^32-1", 1<<32 - 8},
		{"first request of a window on 2^32-1", 1<<32 - 9},
		{"no wrap", 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			k := &gnltest.Kernel{}
			kv := &kvKernel{vals: map[string]uint32{}}
			var seqs []uint32
			k.Register(&gnltest.Family{Name: "KV", Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
				seqs = append(seqs, req.Sequence)
				return kv.handle(req)
			}})
			c := k.Dial(&gnl.Config{Window: 8, Timeout: time.Second})
			defer c.Close()
			if _, err := c.Family(ctx, "KV"); err != nil {
				t.Fatal(err)
			}
			gnl.SetSequence(c, tc.last)
			// Requests 3, 6 and 12 add a key that request 0 added: EEXIST, each one at a
			// different distance from the wrap.
			const n = 20
			dup := func(i int) bool { return i == 3 || i == 6 || i == 12 }
			var b gnl.Batch
			for i := range n {
				key := fmt.Sprint(i)
				if dup(i) {
					key = "0"
				}
				if err := kvAdd.Add(&b, &kvEntry{Key: key}); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.SendBatch(ctx, &b); err != nil {
				t.Fatalf("SendBatch: %v", err)
			}
			for i := range n {
				if err := b.Err(i); dup(i) != errors.Is(err, syscall.EEXIST) || (!dup(i) && err != nil) {
					t.Errorf("request %d (sequence %d): %v", i, seqs[i], err)
				}
			}
			for _, s := range seqs {
				if s == 0 {
					t.Errorf("sequence 0 was sent: %v", seqs)
				}
			}
			// The connection is in step after the batch.
			var got kvEntry
			if err := kvGet.Do(ctx, c, &kvEntry{Key: "19"}, &got); err != nil || got.Key != "19" {
				t.Errorf("after the batch: %+v %v", got, err)
			}
		})
	}
}
