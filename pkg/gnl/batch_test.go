package gnl_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

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
	// The window allows 64 requests, but each GET also queues a reply: twice what fits.
	c := k.Dial(nil)
	defer c.Close()
	var b gnl.Batch
	for i := range 300 {
		_ = kvAdd.Add(&b, &kvEntry{Key: fmt.Sprint(i)})
	}
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	for i := range 300 {
		_ = kvGet.Add(&b, &kvEntry{Key: fmt.Sprint(i)})
	}
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	var lost, ok int
	for i := range 300 {
		switch err := b.Err(i); {
		case err == nil:
			ok++
		case errors.Is(err, gnl.ErrAckLost) && errors.Is(err, syscall.ENOBUFS):
			lost++
		default:
			t.Errorf("request %d: %v", i, err)
		}
	}
	if lost == 0 || ok == 0 {
		t.Errorf("%d lost, %d acknowledged: want some of each", lost, ok)
	}
	if b.Sends() <= 300/64 {
		t.Errorf("%d sends: the window did not shrink after an overflow", b.Sends())
	}
	// The connection is in step afterwards.
	var got kvEntry
	if err := kvGet.Do(ctx, c, &kvEntry{Key: "299"}, &got); err != nil || got.Key != "299" {
		t.Errorf("after overflow: %+v %v", got, err)
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
