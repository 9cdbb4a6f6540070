package gnl_test

import (
	"context"
	"fmt"
	"log"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

// A family is declared once: its attribute sets as tagged structs, its commands as typed
// values. This example serves it from the in-process kernel of package gnltest; with gnl.Dial
// the same code talks to the real kernel.
func Example() {
	type counter struct {
		Name  string `gnl:"1"`
		Value uint64 `gnl:"2,omitempty"`
	}
	family := &gnl.Family{Name: "COUNTERS", Version: 1}
	add := gnl.Command[counter, struct{}]{Family: family, Name: "ADD", Cmd: 1}
	list := gnl.Command[struct{}, counter]{Family: family, Name: "GET", Cmd: 2, Reply: 3}

	// The kernel side, for the example.
	var table []counter
	kernel := &gnltest.Kernel{}
	kernel.Register(&gnltest.Family{Name: "COUNTERS", Version: 1, Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
		if req.Cmd == 1 {
			var c counter
			if err := gnl.Unmarshal(req.Attrs, &c); err != nil {
				return nil, err
			}
			table = append(table, c)
			return nil, nil
		}
		var out []gnltest.Message
		for _, c := range table {
			m, err := gnltest.Reply(3, &c)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	}})
	conn := kernel.Dial(nil)

	ctx := context.Background()
	var batch gnl.Batch
	for i, name := range []string{"rx", "tx", "drops"} {
		if err := add.Add(&batch, &counter{Name: name, Value: uint64(i * 100)}); err != nil {
			log.Fatal(err)
		}
	}
	if err := conn.SendBatch(ctx, &batch); err != nil {
		log.Fatal(err)
	}
	err := list.Dump(ctx, conn, &struct{}{}, func(c *counter) error {
		fmt.Println(c.Name, c.Value)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = conn.Close()
	// Output:
	// rx 0
	// tx 100
	// drops 200
}
