package deploy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/internal/agent"
	"github.com/kubelvs/kubelvs/internal/dataplane"
	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/internal/testenv"
)

// exported gathers the names of the metric families the binaries export: scraped from the
// running controller (after it reconciled) and agent with a kubelvs-metrics-reader token, plus
// every descriptor the agent's metrics, dataplane, pod taskstats and IPVS collector declare (this host has no IPVS, and
// a labelled counter shows up in a scrape only once it counted something).
func exported(t *testing.T) map[string]bool {
	t.Helper()
	c := startController(t)
	a := startAgent(t, "node-a")
	appNamespace(t, "dash")
	must(t, k8s.Create(ctx, virtualService("dash", "web", "192.0.2.200", nil)))
	statusObserved(t, types.NamespacedName{Namespace: "dash", Name: "web"}, c.logs)
	names := map[string]bool{}
	for _, comp := range []*component{c, a} {
		var body string
		eventually(t, "scraping "+comp.metrics, func() error {
			code, b := scrape(t, comp.metrics, scraperToken(t))
			if code != http.StatusOK {
				return fmt.Errorf("status %d: %.200s", code, b)
			}
			body = b
			return nil
		}, comp.logs)
		for _, l := range strings.Split(body, "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
				names[f[2]] = true
			}
		}
	}
	rec := &recorder{}
	must(t, agent.NewMetrics().Register(rec))
	must(t, podstats.NewMetrics().Register(rec))
	must(t, dataplane.NewMetrics().Register(rec))
	rec.cs = append(rec.cs, agent.NewStatsCollector(nil, nil))
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, col := range rec.cs {
		ch := make(chan *prometheus.Desc, 64)
		go func() { col.Describe(ch); close(ch) }()
		for d := range ch {
			m := fq.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			names[m[1]] = true
		}
	}
	return names
}

// recorder is a prometheus.Registerer that keeps what is registered.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

var (
	promqlWords = map[string]bool{}
	identRE     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

func init() {
	for _, w := range strings.Fields(`sum min max avg count stddev stdvar topk bottomk quantile count_values group
		rate irate increase delta idelta deriv histogram_quantile label_values label_replace clamp_min clamp_max
		abs ceil floor round sort sort_desc time vector scalar absent and or unless by without on ignoring
		group_left group_right offset bool inf nan`) {
		promqlWords[w] = true
	}
}

// metricNames returns the metric names a PromQL expression refers to: what is left once
// label matchers, grouping clauses, range selectors, strings, Grafana variables, numbers and
// PromQL's own words are removed.
func metricNames(expr string) []string {
	expr = regexp.MustCompile(`label_values\(([^,]*),[^)]*\)`).ReplaceAllString(expr, "$1") // Grafana's variable query
	for _, re := range []string{`"[^"]*"`, `\{[^}]*\}`, `\[[^\]]*\]`, `\$[a-zA-Z_]+`, `\b(by|without|on|ignoring)\s*\([^)]*\)`, `\b[0-9.]+\b`} {
		expr = regexp.MustCompile(re).ReplaceAllString(expr, " ")
	}
	var out []string
	for _, id := range identRE.FindAllString(expr, -1) {
		if !promqlWords[id] {
			out = append(out, id)
		}
	}
	return out
}

// TestDashboardQueriesNameExportedMetrics checks that every query of the Grafana dashboard
// (panels and template variables) names only metrics the binaries export.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "grafana", "kubelvs-dashboard.json"))
	must(t, err)
	var d struct {
		Title  string
		UID    string
		Panels []struct {
			Type, Title string
			Targets     []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name, Type string
				Definition string
			}
		}
	}
	must(t, json.Unmarshal(b, &d))
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard without uid or title")
	}
	names := exported(t)
	exprs := map[string]string{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			exprs[fmt.Sprintf("panel %q query %d", p.Title, i)] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			exprs["variable "+v.Name] = v.Definition
		}
	}
	used := map[string]bool{}
	for where, e := range exprs {
		ms := metricNames(e)
		if len(ms) == 0 {
			t.Errorf("%s names no metric: %s", where, e)
		}
		for _, m := range ms {
			base := m
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if s, ok := strings.CutSuffix(m, suf); ok && names[s] {
					base = s
				}
			}
			if !names[base] {
				t.Errorf("%s: %s is not exported by the controller or the agent (%s)", where, m, e)
			}
			used[base] = true
		}
	}
	// Every kubelvs metric is on the dashboard.
	var missing []string
	for n := range names {
		if strings.HasPrefix(n, "kubelvs_") && !used[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("kubelvs metrics not on the dashboard: %v", missing)
	}
	if !slices.Contains(metricNames(`sum by (le) (rate(x_bucket{a="b"}[5m]))`), "x_bucket") {
		t.Fatal("metricNames is broken")
	}
}
