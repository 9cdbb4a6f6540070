package taskstats

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// cField is one member of struct taskstats as include/uapi/linux/taskstats.h declares it: the
// synthetic payloads are laid out from the header's member order with the C alignment rules of
// x86-64, independently of the decoder's offset tables.
type cField struct {
	name        string
	size, align int
	off         int
}

func u64f(names ...string) []cField {
	var fs []cField
	for _, n := range names {
		fs = append(fs, cField{name: n, size: 8, align: 8})
	}
	return fs
}

var delayCategories = []string{"cpu", "blkio", "swapin", "freepages", "thrashing", "compact", "wpcopy", "irq"}

// headerFields lists the members of struct taskstats of a version, in declaration order.
func headerFields(v int) []cField {
	maxMin := func(cat string) []cField {
		if v == 15 {
			return u64f(cat+"_delay_max", cat+"_delay_min")
		}
		return nil
	}
	var fs []cField
	add := func(more ...cField) { fs = append(fs, more...) }
	add(cField{name: "version", size: 2, align: 2}, cField{name: "ac_exitcode", size: 4, align: 4},
		cField{name: "ac_flag", size: 1, align: 1}, cField{name: "ac_nice", size: 1, align: 1})
	add(u64f("cpu_count", "cpu_delay_total")...)
	add(maxMin("cpu")...)
	add(u64f("blkio_count", "blkio_delay_total")...)
	add(maxMin("blkio")...)
	add(u64f("swapin_count", "swapin_delay_total")...)
	add(maxMin("swapin")...)
	add(u64f("cpu_run_real_total", "cpu_run_virtual_total")...)
	add(cField{name: "ac_comm", size: 32, align: 1}, cField{name: "ac_sched", size: 1, align: 8},
		cField{name: "ac_pad", size: 3, align: 1}, cField{name: "ac_uid", size: 4, align: 8},
		cField{name: "ac_gid", size: 4, align: 4}, cField{name: "ac_pid", size: 4, align: 4},
		cField{name: "ac_ppid", size: 4, align: 4}, cField{name: "ac_btime", size: 4, align: 4})
	add(u64f("ac_etime", "ac_utime", "ac_stime", "ac_minflt", "ac_majflt", "coremem", "virtmem",
		"hiwater_rss", "hiwater_vm", "read_char", "write_char", "read_syscalls", "write_syscalls",
		"read_bytes", "write_bytes", "cancelled_write_bytes", "nvcsw", "nivcsw", "ac_utimescaled",
		"ac_stimescaled", "cpu_scaled_run_real_total", "freepages_count", "freepages_delay_total")...)
	add(maxMin("freepages")...)
	if v >= 9 {
		add(u64f("thrashing_count", "thrashing_delay_total")...)
		add(maxMin("thrashing")...)
	}
	if v >= 10 {
		add(u64f("ac_btime64")...)
	}
	if v >= 11 {
		add(u64f("compact_count", "compact_delay_total")...)
		add(maxMin("compact")...)
	}
	if v >= 12 {
		add(cField{name: "ac_tgid", size: 4, align: 4})
		add(u64f("ac_tgetime", "ac_exe_dev", "ac_exe_inode")...)
	}
	if v >= 13 {
		add(u64f("wpcopy_count", "wpcopy_delay_total")...)
		add(maxMin("wpcopy")...)
	}
	if v >= 14 {
		add(u64f("irq_count", "irq_delay_total")...)
		add(maxMin("irq")...)
	}
	if v >= 16 {
		for _, c := range delayCategories {
			add(u64f(c+"_delay_max", c+"_delay_min")...)
		}
	}
	if v >= 17 {
		for _, c := range delayCategories {
			add(cField{name: c + "_delay_max_ts", size: 16, align: 8})
		}
	}
	off := 0
	for i := range fs {
		off = (off + fs[i].align - 1) / fs[i].align * fs[i].align
		fs[i].off = off
		off += fs[i].size
	}
	return fs
}

func structSize(fs []cField) int {
	last := fs[len(fs)-1]
	return (last.off + last.size + 7) / 8 * 8
}

func offsetOf(t *testing.T, fs []cField, name string) int {
	for _, f := range fs {
		if f.name == name {
			return f.off
		}
	}
	t.Fatalf("no field %s", name)
	return -1
}

// synthetic builds a payload of version v whose every member holds a distinct value, and the
// Stats the decoder must make of it.
func synthetic(v int) ([]byte, Stats) {
	fs := headerFields(v)
	b := make([]byte, structSize(fs))
	want := Stats{Version: uint16(v)}
	delays := map[string]*Delay{"cpu": &want.CPU, "blkio": &want.BlkIO, "swapin": &want.SwapIn,
		"freepages": &want.FreePages, "thrashing": &want.Thrashing, "compact": &want.Compact,
		"wpcopy": &want.WPCopy, "irq": &want.IRQ}
	var btime32 uint32
	for i, f := range fs {
		n := uint64(v)*1_000_000 + uint64(i+1)*1_000 + 7 // distinct in every version and member
		switch f.size {
		case 1:
			n = uint64(0xF0 + i%16)
			b[f.off] = byte(n)
		case 2:
			n = uint64(v)
			binary.NativeEndian.PutUint16(b[f.off:], uint16(n))
		case 4:
			binary.NativeEndian.PutUint32(b[f.off:], uint32(n))
		case 8:
			binary.NativeEndian.PutUint64(b[f.off:], n)
		case 16: // struct __kernel_timespec
			binary.NativeEndian.PutUint64(b[f.off:], n)
			binary.NativeEndian.PutUint64(b[f.off+8:], n%1_000_000_000)
		}
		us, ns := time.Duration(n)*time.Microsecond, time.Duration(n)
		switch name := f.name; name {
		case "version", "ac_pad":
		case "ac_exitcode":
			want.ExitCode = uint32(n)
		case "ac_flag":
			want.Flag = uint8(n)
		case "ac_nice":
			want.Nice = int8(uint8(n))
		case "ac_comm":
			copy(b[f.off:], fmt.Sprintf("comm-v%d", v))
			want.Comm = fmt.Sprintf("comm-v%d", v)
		case "ac_sched":
			want.Sched = uint8(n)
		case "ac_uid":
			want.UID = uint32(n)
		case "ac_gid":
			want.GID = uint32(n)
		case "ac_pid":
			want.PID = uint32(n)
		case "ac_ppid":
			want.PPID = uint32(n)
		case "ac_tgid":
			want.TGID = uint32(n)
		case "ac_btime":
			btime32 = uint32(n)
		case "ac_btime64":
			want.BeginTime = time.Unix(int64(n), 0)
		case "ac_etime":
			want.Elapsed = us
		case "ac_tgetime":
			want.ThreadGroupElapsed = us
		case "ac_utime":
			want.UserTime = us
		case "ac_stime":
			want.SystemTime = us
		case "ac_utimescaled":
			want.UserTimeScaled = us
		case "ac_stimescaled":
			want.SystemTimeScaled = us
		case "ac_minflt":
			want.MinorFaults = n
		case "ac_majflt":
			want.MajorFaults = n
		case "ac_exe_dev":
			want.ExeDev = n
		case "ac_exe_inode":
			want.ExeInode = n
		case "coremem":
			want.CoreMem = n
		case "virtmem":
			want.VirtMem = n
		case "hiwater_rss":
			want.HiwaterRSSKiB = n
		case "hiwater_vm":
			want.HiwaterVMKiB = n
		case "read_char":
			want.ReadChar = n
		case "write_char":
			want.WriteChar = n
		case "read_syscalls":
			want.ReadSyscalls = n
		case "write_syscalls":
			want.WriteSyscalls = n
		case "read_bytes":
			want.ReadBytes = n
		case "write_bytes":
			want.WriteBytes = n
		case "cancelled_write_bytes":
			want.CancelledWriteBytes = n
		case "nvcsw":
			want.Nvcsw = n
		case "nivcsw":
			want.Nivcsw = n
		case "cpu_run_real_total":
			want.CPURunRealTotal = ns
		case "cpu_run_virtual_total":
			want.CPURunVirtualTotal = ns
		case "cpu_scaled_run_real_total":
			want.CPUScaledRunRealTotal = ns
		default:
			var cat, rest string
			for _, c := range delayCategories {
				if len(name) > len(c) && name[:len(c)+1] == c+"_" {
					cat, rest = c, name[len(c)+1:]
				}
			}
			d := delays[cat]
			switch rest {
			case "count":
				d.Count = n
			case "delay_total":
				d.Total = ns
			case "delay_max":
				d.Max = ns
			case "delay_min":
				d.Min = ns
			case "delay_max_ts":
				d.MaxAt = time.Unix(int64(n), int64(n%1_000_000_000))
			default:
				panic("unknown member " + name)
			}
		}
	}
	if v < 10 {
		want.BeginTime = time.Unix(int64(btime32), 0)
	}
	return b, want
}

func TestHeaderLayoutsMatchTheVersionTable(t *testing.T) {
	// Sizes and offsets from ../shared/ANCHORS.md §4, checked against the header-derived layouts.
	sizes := map[int]int{8: 328, 9: 344, 10: 352, 11: 368, 12: 400, 13: 416, 14: 432, 15: 560, 16: 560, 17: 688}
	for v, size := range sizes {
		fs := headerFields(v)
		if got := structSize(fs); got != size || SizeOf(uint16(v)) != size {
			t.Errorf("v%d: header layout %d bytes, SizeOf %d, want %d", v, got, SizeOf(uint16(v)), size)
		}
	}
	stableOffsets := map[string]int{"cpu_count": 16, "cpu_delay_total": 24, "blkio_count": 32, "blkio_delay_total": 40,
		"swapin_delay_total": 56, "ac_comm": 80, "ac_uid": 120, "ac_pid": 128, "ac_btime": 136, "ac_etime": 144,
		"read_bytes": 248, "nvcsw": 272, "freepages_count": 312, "thrashing_count": 328, "ac_btime64": 344,
		"compact_count": 352, "ac_tgid": 368, "ac_tgetime": 376, "wpcopy_count": 400, "irq_count": 416,
		"cpu_delay_max": 432, "irq_delay_min": 552, "cpu_delay_max_ts": 560, "irq_delay_max_ts": 672}
	for _, v := range []int{16, 17} {
		fs := headerFields(v)
		for name, off := range stableOffsets {
			if v == 16 && name[len(name)-2:] == "ts" {
				continue
			}
			if got := offsetOf(t, fs, name); got != off {
				t.Errorf("v%d %s at %d, want %d", v, name, got, off)
			}
		}
	}
	v15Offsets := map[string]int{"blkio_count": 48, "swapin_count": 80, "ac_comm": 128, "ac_pid": 176, "read_bytes": 296}
	for name, off := range v15Offsets {
		if got := offsetOf(t, headerFields(15), name); got != off {
			t.Errorf("v15 %s at %d, want %d", name, got, off)
		}
	}
}

func TestUnmarshalEveryVersion(t *testing.T) {
	for v := MinVersion; v <= MaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			b, want := synthetic(v)
			var got Stats
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decode (-want +got):\n%s", diff)
			}
			// A longer payload of a known version (a padded attribute) decodes the same.
			if err := got.UnmarshalBinary(append(b, make([]byte, 24)...)); err != nil || !cmp.Equal(want, got) {
				t.Errorf("padded payload: %v, diff %s", err, cmp.Diff(want, got))
			}
		})
	}
}

func TestV15AndV16DifferOnlyByVersion(t *testing.T) {
	b15, want15 := synthetic(15)
	b16, want16 := synthetic(16)
	if len(b15) != len(b16) {
		t.Fatalf("sizes %d and %d, want equal", len(b15), len(b16))
	}
	// The same bytes read as the other version give other values: the version field decides.
	wrong := bytes.Clone(b15)
	binary.NativeEndian.PutUint16(wrong, 16)
	var got Stats
	if err := got.UnmarshalBinary(wrong); err != nil {
		t.Fatal(err)
	}
	if got.BlkIO.Count == want15.BlkIO.Count || got.Comm == want15.Comm {
		t.Errorf("v15 bytes read as v16 gave v15's blkio count and comm; the layouts should differ")
	}
	if err := got.UnmarshalBinary(b15); err != nil || got.BlkIO != want15.BlkIO || got.Comm != "comm-v15" {
		t.Errorf("v15: %v %+v %q", err, got.BlkIO, got.Comm)
	}
	if err := got.UnmarshalBinary(b16); err != nil || got.BlkIO != want16.BlkIO || got.Comm != "comm-v16" {
		t.Errorf("v16: %v %+v %q", err, got.BlkIO, got.Comm)
	}
}

func TestUnmarshalTruncated(t *testing.T) {
	for v := MinVersion; v <= MaxVersion+1; v++ {
		b, _ := synthetic(min(v, MaxVersion))
		binary.NativeEndian.PutUint16(b, uint16(v))
		for n := range SizeOf(uint16(v)) {
			var s Stats
			err := s.UnmarshalBinary(b[:n])
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("v%d, %d of %d bytes: %v, want ErrTruncated", v, n, SizeOf(uint16(v)), err)
			}
		}
	}
}

func TestUnmarshalNewerVersion(t *testing.T) {
	b, want := synthetic(MaxVersion)
	b = append(b, bytes.Repeat([]byte{0xAB}, 40)...) // a future version's new members
	binary.NativeEndian.PutUint16(b, MaxVersion+1)
	want.Version = MaxVersion + 1
	want.Raw = b
	var got Stats
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("newer version (-want +got):\n%s", diff)
	}
	b[100] ^= 0xFF
	if got.Raw[100] == b[100] {
		t.Error("Raw aliases the input; the receive buffer is reused")
	}
}

func TestUnmarshalOlderVersion(t *testing.T) {
	for _, v := range []uint16{0, 1, 7} {
		b := make([]byte, 400)
		binary.NativeEndian.PutUint16(b, v)
		var s Stats
		if err := s.UnmarshalBinary(b); !errors.Is(err, ErrUnsupportedVersion) || s.Version != v {
			t.Errorf("v%d: %v (version %d), want ErrUnsupportedVersion", v, err, s.Version)
		}
	}
}

func TestUnmarshalSaturates(t *testing.T) {
	b, _ := synthetic(16)
	off := offsetOf(t, headerFields(16), "ac_utime")
	binary.NativeEndian.PutUint64(b[off:], math.MaxUint64)
	var s Stats
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if s.UserTime != time.Duration(math.MaxInt64) {
		t.Errorf("utime of 2^64-1 µs decoded as %v, want the largest Duration", s.UserTime)
	}
}

// nla builds one netlink attribute, padded to 4 bytes.
func nla(typ uint16, payload ...[]byte) []byte {
	p := bytes.Join(payload, nil)
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(p)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, p...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u32b(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

const null = 6 // TASKSTATS_TYPE_NULL

func TestReplyPaddingAndUnknownAttributes(t *testing.T) {
	payload, want := synthetic(16)
	for _, tc := range []struct {
		name   string
		outer  uint16
		idAttr uint16
		nested uint16
	}{
		{"AGGR_PID", 4, 1, gnl.FlagNested},
		{"AGGR_TGID", 5, 2, gnl.FlagNested},
		{"AGGR_PID without NLA_F_NESTED", 4, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := bytes.Join([][]byte{
				nla(null),
				nla(tc.outer|tc.nested,
					nla(null), nla(tc.idAttr, u32b(4242)), nla(null, make([]byte, 4)),
					nla(3, payload), nla(null), nla(9, []byte("future"))),
				nla(null),
				nla(12, []byte("top-level future attribute")),
			}, nil)
			var rep reply
			if err := gnl.Unmarshal(msg, &rep); err != nil {
				t.Fatal(err)
			}
			agg := &rep.AggrPID
			if tc.outer == 5 {
				agg = &rep.AggrTGID
			}
			if !rep.Seen.Has(tc.outer) || !agg.Seen.Has(3) {
				t.Fatalf("aggregate or stats missing: %+v", rep.Seen)
			}
			if id := agg.PID + agg.TGID; id != 4242 {
				t.Errorf("id %d, want 4242", id)
			}
			if diff := cmp.Diff(want, agg.Stats); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			if len(agg.Unknown) != 1 || agg.Unknown[0].Type != 9 || string(agg.Unknown[0].Data) != "future" {
				t.Errorf("unknown attributes in the aggregate: %+v", agg.Unknown)
			}
			if len(rep.Unknown) != 1 || rep.Unknown[0].Type != 12 {
				t.Errorf("unknown top-level attributes: %+v", rep.Unknown)
			}
		})
	}
	// A truncated struct inside a reply is a decode error, not a short record.
	msg := nla(4|gnl.FlagNested, nla(1, u32b(1)), nla(3, payload[:300]))
	var rep reply
	if err := gnl.Unmarshal(msg, &rep); !errors.Is(err, ErrTruncated) || !errors.Is(err, gnl.ErrMalformed) {
		t.Errorf("truncated stats in a reply: %v, want ErrTruncated and gnl.ErrMalformed", err)
	}
}

func TestCgroupStatsRoundTrip(t *testing.T) {
	in := CgroupStats{Sleeping: 1, Running: 2, Stopped: 3, Uninterruptible: 4, IOWait: 5}
	b, err := in.AppendBinary(nil)
	if err != nil || len(b) != cgroupStatsSize {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	var out CgroupStats
	if err := out.UnmarshalBinary(b); err != nil || out != in {
		t.Errorf("round trip: %+v, %v", out, err)
	}
	if err := out.UnmarshalBinary(b[:39]); !errors.Is(err, ErrTruncated) {
		t.Errorf("39 bytes: %v, want ErrTruncated", err)
	}
}

func TestDeclarations(t *testing.T) {
	for _, err := range []error{get.Check(), register.Check(), cgroupstatsGet.Check()} {
		if err != nil {
			t.Error(err)
		}
	}
}
