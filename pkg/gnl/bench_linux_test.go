//go:build linux

package gnl_test

import (
	"context"
	"os"
	"testing"

	"github.com/mdlayher/genetlink"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// Side by side on the real kernel: the family dump through gnl and through mdlayher/genetlink.
func BenchmarkKernelFamilies(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	b.Run("gnl", func(b *testing.B) {
		c, err := gnl.Dial(nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Families(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("genetlink", func(b *testing.B) {
		c, err := genetlink.Dial(nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.ListFamilies(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// 1,000 acknowledged requests: pipelined in one batch versus one round trip each, through gnl
// and through mdlayher/genetlink's Execute.
func BenchmarkKernelRequests(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	const n = 1000
	ctx := context.Background()
	req := &gnl.CtrlRequest{Name: "TASKSTATS"}
	b.Run("gnl-batch", func(b *testing.B) {
		c, err := gnl.Dial(nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		var batch gnl.Batch
		b.ReportAllocs()
		for b.Loop() {
			batch.Reset()
			for range n {
				if err := gnl.CtrlGetFamily.Add(&batch, req); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.SendBatch(ctx, &batch); err != nil || batch.Err(n-1) != nil {
				b.Fatal(err, batch.Err(n-1))
			}
		}
	})
	b.Run("gnl-sequential", func(b *testing.B) {
		c, err := gnl.Dial(nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		var fi gnl.FamilyInfo
		b.ReportAllocs()
		for b.Loop() {
			for range n {
				if err := gnl.CtrlGetFamily.Do(ctx, c, req, &fi); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("genetlink-sequential", func(b *testing.B) {
		c, err := genetlink.Dial(nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		b.ReportAllocs()
		for b.Loop() {
			for range n {
				if _, err := c.GetFamily("TASKSTATS"); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
