package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

func init() { subcommands = append(subcommands, newGenlCommand) }

func newGenlCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "genl",
		Short: "Inspect the kernel's generic netlink families",
	}
	var output string
	families := &cobra.Command{
		Use:   "families",
		Short: "List every generic netlink family: id, version, header size, max attribute, operations, multicast groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := gnl.Dial(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			fams, err := c.Families(cmd.Context())
			if err != nil {
				return err
			}
			return printFamilies(cmd.OutOrStdout(), output, fams)
		},
	}
	families.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(families)
	return cmd
}

func printFamilies(w io.Writer, format string, fams []gnl.FamilyInfo) error {
	switch format {
	case "json":
		type op struct {
			ID    uint32   `json:"id"`
			Flags []string `json:"flags"`
		}
		type family struct {
			gnl.FamilyInfo
			Ops []op `json:"ops"`
		}
		out := make([]family, 0, len(fams))
		for _, f := range fams {
			fam := family{FamilyInfo: f, Ops: []op{}}
			for _, o := range f.Ops {
				fam.Ops = append(fam.Ops, op{ID: o.ID, Flags: opFlags(o.Flags)})
			}
			if fam.Groups == nil {
				fam.Groups = []gnl.McastGrp{}
			}
			out = append(out, fam)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tVERSION\tHDRSIZE\tMAXATTR\tOPS\tGROUPS")
		for _, f := range fams {
			ids := make([]uint32, 0, len(f.Ops))
			for _, o := range f.Ops {
				ids = append(ids, o.ID)
			}
			groups := make([]string, 0, len(f.Groups))
			for _, g := range f.Groups {
				groups = append(groups, fmt.Sprintf("%s=%d", g.Name, g.ID))
			}
			fmt.Fprintf(tw, "%#x\t%s\t%d\t%d\t%d\t%s\t%s\n", f.ID, f.Name, f.Version, f.HeaderSize, f.MaxAttr,
				dash(idRanges(ids)), dash(strings.Join(groups, " ")))
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown output format %q (want table or json)", format)
}

// idRanges prints operation ids compactly: "1-27,29,31-50".
func idRanges(ids []uint32) string {
	var parts []string
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", ids[i], ids[j]))
		} else {
			parts = append(parts, fmt.Sprint(ids[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// opFlags names GENL_* operation flags as `genl ctrl list` does.
func opFlags(f uint32) []string {
	names := []struct {
		bit  uint32
		name string
	}{
		{gnl.OpAdminPerm, "admin"}, {gnl.OpCmdCapDo, "do"}, {gnl.OpCmdCapDump, "dump"},
		{gnl.OpCmdCapHaspol, "policy"}, {gnl.OpUnsAdminPerm, "netns-admin"},
	}
	out := []string{}
	for _, n := range names {
		if f&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}
