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

// A long-lived connection caches family ids. When the family is registered again under a new
// id (its module unloaded and loaded again), the kernel answers ENOENT to the old id: the
// connection looks the family up again and sends the request again, once, to the new id. Each
// request reaches the family exactly once.
func TestFamilyReloaded(t *testing.T) {
	ctx := context.Background()
	type step struct {
		name string
		call func(c *gnl.Conn) error
	}
	for _, st := range []step{
		{"exec", func(c *gnl.Conn) error { return kvAdd.Exec(ctx, c, &kvEntry{Key: "new", Value: 7}) }},
		{"do", func(c *gnl.Conn) error {
			if err := kvAdd.Exec(ctx, c, &kvEntry{Key: "new", Value: 7}); err != nil {
				return err
			}
			var got kvEntry
			if err := kvGet.Do(ctx, c, &kvEntry{Key: "new"}, &got); err != nil {
				return err
			}
			if got.Value != 7 {
				return fmt.Errorf("got %+v", got)
			}
			return nil
		}},
		{"dump", func(c *gnl.Conn) error {
			all, err := kvGet.DumpAll(ctx, c, &kvEntry{})
			if err != nil {
				return err
			}
			if diff := cmp.Diff([]kvEntry{{"old", 1}}, all); diff != "" {
				return fmt.Errorf("dump (-want +got):\n%s", diff)
			}
			return kvAdd.Exec(ctx, c, &kvEntry{Key: "new", Value: 7})
		}},
		{"batch", func(c *gnl.Conn) error {
			var b gnl.Batch
			_ = kvAdd.Add(&b, &kvEntry{Key: "new", Value: 7})
			_ = kvAdd.Add(&b, &kvEntry{Key: "old"}) // EEXIST: the family's own answer, after the retry
			_ = kvAdd.Add(&b, &kvEntry{Key: "third", Value: 3})
			if err := c.SendBatch(ctx, &b); err != nil {
				return err
			}
			if b.Err(0) != nil || !errors.Is(b.Err(1), syscall.EEXIST) || b.Err(2) != nil {
				return errors.New(fmt.Sprint("results: ", b.Err(0), "; ", b.Err(1), "; ", b.Err(2)))
			}
			return nil
		}},
	} {
		t.Run(st.name, func(t *testing.T) {
			k := &gnltest.Kernel{}
			kv := &kvKernel{vals: map[string]uint32{}}
			sets := map[string]int{} // requests that reached the family, by key
			var famID uint16
			famID = k.Register(&gnltest.Family{Name: "KV", Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
				if req.Type != famID {
					t.Errorf("request with id %d reached the family registered as %d", req.Type, famID)
				}
				var e kvEntry
				_ = gnl.Unmarshal(req.Attrs, &e)
				if req.Cmd == kvCmdSet {
					sets[e.Key]++
				}
				return kv.handle(req)
			}})
			c := k.Dial(&gnl.Config{Timeout: time.Second})
			defer c.Close()
			if err := kvAdd.Exec(ctx, c, &kvEntry{Key: "old", Value: 1}); err != nil {
				t.Fatal(err)
			}
			newID, err := k.Reload("KV")
			if err != nil {
				t.Fatal(err)
			}
			famID = newID
			if err := st.call(c); err != nil {
				t.Fatalf("after the reload: %v", err)
			}
			if sets["new"] != 1 {
				t.Errorf("the request reached the family %d times, want once", sets["new"])
			}
			fi, err := c.Family(ctx, "KV")
			if err != nil || fi.ID != newID {
				t.Errorf("cached family %+v, %v; want id %d", fi, err, newID)
			}
		})
	}
}

// ENOENT that the family itself answers is not a stale id: the request is not sent again (the
// lookup finds the same id), and the error is the family's.
func TestFamilyOwnENOENTIsNotRetried(t *testing.T) {
	ctx := context.Background()
	k := &gnltest.Kernel{}
	kv := &kvKernel{vals: map[string]uint32{}}
	dels := 0
	k.Register(&gnltest.Family{Name: "KV", Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
		if req.Cmd == kvCmdDel {
			dels++
		}
		return kv.handle(req)
	}})
	c := k.Dial(&gnl.Config{Timeout: time.Second})
	defer c.Close()
	err := kvDel.Exec(ctx, c, &kvEntry{Key: "missing"})
	var ge *gnl.Error
	if !errors.As(err, &ge) || ge.Errno != syscall.ENOENT || ge.Command != "DEL" {
		t.Errorf("got %v, want the family's ENOENT", err)
	}
	if dels != 1 {
		t.Errorf("the delete reached the family %d times, want once", dels)
	}
	var b gnl.Batch
	for range 3 {
		_ = kvDel.Add(&b, &kvEntry{Key: "missing"})
	}
	before := k.Requests()
	if err := c.SendBatch(ctx, &b); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if !errors.Is(b.Err(i), syscall.ENOENT) {
			t.Errorf("batch request %d: %v", i, b.Err(i))
		}
	}
	if dels != 4 || k.Requests()-before != 4 {
		t.Errorf("%d deletes, %d requests for a batch of 3: want 4 deletes in all and one lookup", dels, k.Requests()-before)
	}
}

// A family that is unloaded and not loaded again is reported as missing, not as ENOENT from
// nowhere.
func TestFamilyUnloaded(t *testing.T) {
	ctx := context.Background()
	k, _, c := newKV(t)
	if err := kvAdd.Exec(ctx, c, &kvEntry{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	k.Unregister("KV")
	err := kvAdd.Exec(ctx, c, &kvEntry{Key: "b"})
	if !errors.Is(err, gnl.ErrFamilyNotFound) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want ErrFamilyNotFound", err)
	}
}
