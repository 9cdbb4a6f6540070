package gnl_test

import (
	"context"
	"testing"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

// benchMsg has 20 attributes and one nested set of 10, shaped like an IPVS service.
type benchMsg struct {
	AF       uint16     `gnl:"1"`
	Protocol uint16     `gnl:"2"`
	Addr     [16]byte   `gnl:"3"`
	Port     uint16     `gnl:"4,net"`
	FWMark   uint32     `gnl:"5"`
	Sched    string     `gnl:"6"`
	Flags    uint64     `gnl:"7"`
	Timeout  uint32     `gnl:"8"`
	Netmask  uint32     `gnl:"9"`
	PE       string     `gnl:"11"`
	A        uint32     `gnl:"12"`
	B        uint32     `gnl:"13"`
	C        uint64     `gnl:"14"`
	D        uint64     `gnl:"15"`
	E        uint16     `gnl:"16"`
	F        uint8      `gnl:"17"`
	G        int32      `gnl:"18"`
	H        int64      `gnl:"19"`
	I        uint32     `gnl:"20,net"`
	J        bool       `gnl:"21"`
	Stats    stats10    `gnl:"10"`
	Unknown  []gnl.Attr `gnl:",unknown"`
}

type stats10 struct {
	Conns    uint64 `gnl:"1"`
	InPkts   uint64 `gnl:"2"`
	OutPkts  uint64 `gnl:"3"`
	InBytes  uint64 `gnl:"4"`
	OutBytes uint64 `gnl:"5"`
	CPS      uint64 `gnl:"6"`
	InPPS    uint64 `gnl:"7"`
	OutPPS   uint64 `gnl:"8"`
	InBPS    uint64 `gnl:"9"`
	OutBPS   uint64 `gnl:"10"`
}

func benchValue(i int) benchMsg {
	return benchMsg{AF: 2, Protocol: 6, Addr: [16]byte{10, 0, byte(i >> 8), byte(i)}, Port: 80, Sched: "wlc",
		Flags: 2, Timeout: 300, Netmask: 0xffffffff, PE: "sip", A: 1, B: 2, C: 3, D: 4, E: 5, F: 6, G: -7, H: -8,
		I: 9, J: true, Stats: stats10{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
}

func BenchmarkEncode(b *testing.B) {
	v := benchValue(1)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = gnl.AppendMarshal(buf[:0], &v); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecode(b *testing.B) {
	v := benchValue(1)
	buf, _ := gnl.Marshal(&v)
	var out benchMsg
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := gnl.Unmarshal(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDumpPage decodes a 50-entry dump page through a Conn (the fake kernel sends all
// 50 messages in one datagram, as the real kernel fills a dump skb).
func BenchmarkDumpPage(b *testing.B) {
	k := &gnltest.Kernel{DumpBatch: 50}
	var page []gnltest.Message
	for i := range 50 {
		v := benchValue(i)
		m, err := gnltest.Reply(1, &v)
		if err != nil {
			b.Fatal(err)
		}
		page = append(page, m)
	}
	fam := &gnl.Family{Name: "BENCH", Version: 1}
	k.Register(&gnltest.Family{Name: "BENCH", Handle: func(gnltest.Request) ([]gnltest.Message, error) { return page, nil }})
	c := k.Dial(nil)
	defer c.Close()
	dump := gnl.Command[struct{}, benchMsg]{Family: fam, Name: "GET", Cmd: 2, Reply: 1}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := dump.Dump(ctx, c, &struct{}{}, func(*benchMsg) error { n++; return nil }); err != nil || n != 50 {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkDecodePage decodes the 50 messages of a page without the connection.
func BenchmarkDecodePage(b *testing.B) {
	var bufs [][]byte
	for i := range 50 {
		v := benchValue(i)
		buf, _ := gnl.Marshal(&v)
		bufs = append(bufs, buf)
	}
	var out benchMsg
	b.ReportAllocs()
	for b.Loop() {
		for _, buf := range bufs {
			if err := gnl.Unmarshal(buf, &out); err != nil {
				b.Fatal(err)
			}
		}
	}
}
