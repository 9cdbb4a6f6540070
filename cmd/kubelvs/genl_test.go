package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// `kubelvs genl families -o json` lists the same families, with the same ids, as iproute2's
// `genl ctrl list`.
func TestGenlFamiliesJSONMatchesGenl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: reads the real kernel's generic netlink families")
	}
	genl, err := exec.LookPath("genl")
	if err != nil {
		out, ierr := exec.Command("../../hack/ensure-packages.sh", "genl:iproute2").CombinedOutput()
		if ierr != nil {
			t.Fatalf("installing iproute2: %v\n%s", ierr, out)
		}
		genl = "genl"
	}
	out, err := exec.Command(genl, "ctrl", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	re := regexp.MustCompile(`(?m)^Name: (\S+)\s*\n\s*ID: 0x([0-9a-f]+)`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		want[m[1]], _ = strconv.ParseUint(m[2], 16, 16)
	}
	var buf bytes.Buffer
	cmd := newRootCommand()
	cmd.SetArgs([]string{"genl", "families", "-o", "json"})
	cmd.SetOut(&buf)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var fams []struct {
		ID   uint64 `json:"id"`
		Name string `json:"name"`
		Ops  []struct {
			ID    uint32   `json:"id"`
			Flags []string `json:"flags"`
		} `json:"ops"`
	}
	if err := json.Unmarshal(buf.Bytes(), &fams); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, buf.String())
	}
	got := map[string]uint64{}
	for _, f := range fams {
		got[f.Name] = f.ID
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("families (-genl ctrl list +kubelvs):\n%s", diff)
	}
	var table bytes.Buffer
	cmd = newRootCommand()
	cmd.SetArgs([]string{"genl", "families"})
	cmd.SetOut(&table)
	if err := cmd.Execute(); err != nil || !bytes.Contains(table.Bytes(), []byte("nlctrl")) {
		t.Errorf("table output: %v\n%s", err, table.String())
	}
}

func TestIDRanges(t *testing.T) {
	for _, tc := range []struct {
		in   []uint32
		want string
	}{
		{nil, ""}, {[]uint32{3}, "3"}, {[]uint32{1, 2, 3, 5, 7, 8}, "1-3,5,7-8"},
	} {
		if got := idRanges(tc.in); got != tc.want {
			t.Errorf("idRanges(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
