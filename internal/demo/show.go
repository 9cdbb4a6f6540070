package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// kindTable is a server-side rendered table of one resource (what kubectl get prints).
type kindTable struct {
	// Prefix goes before each row's name, as kubectl writes it when it lists several kinds
	// ("virtualservice.kubelvs.io/").
	Prefix string
	Table  *metav1.Table
}

// fetchTable asks the API server for path rendered as a Table, as kubectl get does: the
// columns are the resource's printer columns (additionalPrinterColumns for a CRD).
func fetchTable(ctx context.Context, cfg *rest.Config, path string) (*metav1.Table, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("demo: http client: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(cfg.Host, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("demo: get %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("demo: get %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("demo: get %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	var t metav1.Table
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("demo: decode the table of %s: %w", path, err)
	}
	return &t, nil
}

// writeTables prints tables as `kubectl get a,b -A` does: one block per kind, a NAMESPACE
// column, the columns of priority 0, names prefixed by kind.
func writeTables(w io.Writer, tables []kindTable) error {
	for i, kt := range tables {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if len(kt.Table.Rows) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
		for _, line := range tableLines(kt) {
			fmt.Fprintln(tw, strings.Join(line, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// tableLines returns the header and the rows of one kind's table, cell by cell, with the
// NAMESPACE column of -A (empty for a cluster-scoped kind, as kubectl leaves it).
func tableLines(kt kindTable) [][]string {
	head := []string{"NAMESPACE"}
	for _, c := range kt.Table.ColumnDefinitions {
		if c.Priority == 0 {
			head = append(head, strings.ToUpper(c.Name))
		}
	}
	lines := [][]string{head}
	for _, row := range kt.Table.Rows {
		var m metav1.PartialObjectMetadata
		if len(row.Object.Raw) > 0 {
			_ = json.Unmarshal(row.Object.Raw, &m) // no metadata: no namespace
		}
		cells := []string{m.Namespace}
		for c, def := range kt.Table.ColumnDefinitions {
			if def.Priority != 0 || c >= len(row.Cells) {
				continue
			}
			cell := cellString(row.Cells[c])
			if def.Name == "Name" {
				cell = kt.Prefix + cell
			}
			cells = append(cells, cell)
		}
		lines = append(lines, cells)
	}
	return lines
}

// cellString formats a table cell as kubectl does: <none> for a missing value, lists joined
// by commas.
func cellString(v any) string {
	switch v := v.(type) {
	case nil:
		return "<none>"
	case string:
		if v == "" {
			return "<none>"
		}
		return v
	case float64:
		return fmt.Sprintf("%g", v)
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = cellString(p)
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v)
	}
}

// Share is one backend's part of the requests sent to a VIP.
type Share struct {
	Backend  string
	Weight   int
	Requests int
}

// Expected is the fraction of requests a weighted scheduler gives the backend.
func expected(shares []Share, i int) float64 {
	total := 0
	for _, s := range shares {
		total += s.Weight
	}
	if total == 0 {
		return 0
	}
	return float64(shares[i].Weight) / float64(total)
}

// writeSpread draws the requests each backend got as a bar beside what its weight predicts.
func writeSpread(w io.Writer, shares []Share) {
	n, most := 0, 1
	for _, s := range shares {
		n += s.Requests
		most = max(most, s.Requests)
	}
	const width = 40
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tWEIGHT\tEXPECTED\tGOT\t")
	for i, s := range shares {
		got := 0.0
		if n > 0 {
			got = float64(s.Requests) / float64(n)
		}
		bar := strings.Repeat("█", s.Requests*width/most)
		fmt.Fprintf(tw, "%s\t%d\t%5.1f%%\t%4d %5.1f%%\t%s\n", s.Backend, s.Weight, 100*expected(shares, i), s.Requests, 100*got, bar)
	}
	_ = tw.Flush()
}

// metricLines returns the lines of a Prometheus text exposition whose metric name is one of
// names and whose labels contain every filter, in their order.
func metricLines(r io.Reader, names []string, filters ...string) []string {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		keep := false
		for _, n := range names {
			keep = keep || name == n
		}
		for _, f := range filters {
			keep = keep && strings.Contains(line, f)
		}
		if keep {
			out = append(out, line)
		}
	}
	return out
}
