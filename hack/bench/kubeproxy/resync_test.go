package kubeproxy

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestDiff(t *testing.T) {
	d := func(a string, w int) Dest { return Dest{Addr: netip.MustParseAddr(a), Port: 8080, Weight: w} }
	cur := []Dest{d("10.0.0.1", 1), d("10.0.0.2", 1), d("10.0.0.3", 1)}
	want := []Dest{d("10.0.0.2", 1), d("10.0.0.3", 2), d("10.0.0.4", 1)}
	add, del, upd := Diff(cur, want)
	if !reflect.DeepEqual(add, []Dest{d("10.0.0.4", 1)}) || !reflect.DeepEqual(del, []Dest{d("10.0.0.1", 1)}) ||
		!reflect.DeepEqual(upd, []Dest{d("10.0.0.3", 2)}) {
		t.Fatalf("add %v del %v update %v", add, del, upd)
	}
	if a, dl, u := Diff(want, want); a != nil || dl != nil || u != nil {
		t.Fatalf("no change: add %v del %v update %v", a, dl, u)
	}
}

func TestClone(t *testing.T) {
	s := []Service{{Dests: []Dest{{Weight: 1}}}}
	c := Clone(s)
	c[0].Dests[0].Weight = 2
	if s[0].Dests[0].Weight != 1 {
		t.Fatal("Clone shares destinations")
	}
}
