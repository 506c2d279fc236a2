package caddymodule

import (
	"go/ast"
	"go/token"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The metrics documentation test keeps every gmgate metric the docs name real: the operations
// guide's table lists every collector with its labels, every other metric table has the right
// labels, and a metric named in prose (`gmgate_x{a,b}`) exists with those labels.

// moduleCollectors are the collectors a module registers at Provision instead of through
// registerMetrics.
func moduleCollectors() []prometheus.Collector {
	return []prometheus.Collector{cosignOps, cosignSeconds, cosignStateErrors, tls13smHandshakes, tls13smHandshakeSeconds}
}

// allGmgateMetrics describes every gmgate collector: registerMetrics's and the modules' own.
func allGmgateMetrics(t *testing.T) map[string]promMetric {
	t.Helper()
	all := gmgateMetrics(t)
	for n, m := range describeCollectors(t, moduleCollectors()) {
		all[n] = m
	}
	return all
}

// definedMetricNames returns the names of the metrics caddymodule's sources define: the
// prometheus *Opts literals in the gmgate namespace and the NewDesc names.
func definedMetricNames(t *testing.T) []string {
	t.Helper()
	pkg := loadGoPackage(t, modulePath+"/caddymodule")
	str := func(e ast.Expr) string {
		if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
			s, _ := strconv.Unquote(bl.Value)
			return s
		}
		return ""
	}
	var out []string
	for _, f := range pkg.all {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				sel, ok := n.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				parts := map[string]string{}
				for _, e := range n.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok {
							parts[k.Name] = str(kv.Value)
						}
					}
				}
				if parts["Namespace"] == "gmgate" {
					out = append(out, prometheus.BuildFQName(parts["Namespace"], parts["Subsystem"], parts["Name"]))
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "NewDesc" && len(n.Args) > 0 {
					if s := str(n.Args[0]); strings.HasPrefix(s, "gmgate_") {
						out = append(out, s)
					}
				}
			}
			return true
		})
	}
	sort.Strings(out)
	return out
}

var (
	docMetricName   = regexp.MustCompile(`\bgmgate_[a-z0-9_]*[a-z0-9]`)
	docMetricLabels = regexp.MustCompile(`\b(gmgate_[a-z0-9_]*[a-z0-9])\{([^}]*)\}`)
	codeSpanText    = regexp.MustCompile("`([^`]+)`")
)

// metricOf returns the collector a documented series name belongs to (a histogram's _bucket,
// _sum and _count series included).
func metricOf(known map[string]promMetric, name string) (string, promMetric, bool) {
	if m, ok := known[name]; ok {
		return name, m, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if m, ok := known[strings.TrimSuffix(name, suf)]; ok && m.histogram && strings.HasSuffix(name, suf) {
			return strings.TrimSuffix(name, suf), m, true
		}
	}
	return "", promMetric{}, false
}

// TestDocMetricsExist: every gmgate metric the docs name exists, with the labels they give it;
// the operations guide lists every collector with exactly its labels.
func TestDocMetricsExist(t *testing.T) {
	known := allGmgateMetrics(t)
	for _, n := range definedMetricNames(t) {
		if _, ok := known[n]; !ok {
			t.Errorf("caddymodule defines the metric %s, which neither registerMetrics nor moduleCollectors registers", n)
		}
	}
	named := 0
	for _, file := range docMarkdownFiles(t) {
		text := readRepoFile(t, file)
		for i, l := range strings.Split(text, "\n") {
			where := file + ":" + strconv.Itoa(i+1)
			for _, n := range docMetricName.FindAllString(l, -1) {
				named++
				if _, _, ok := metricOf(known, n); !ok {
					t.Errorf("%s: names the metric %s, which gmgate does not have", where, n)
				}
			}
			for _, m := range docMetricLabels.FindAllStringSubmatch(l, -1) {
				_, pm, ok := metricOf(known, m[1])
				if !ok {
					continue
				}
				for _, sel := range strings.Split(m[2], ",") {
					name := strings.TrimSpace(sel)
					if j := strings.IndexAny(name, "=!~"); j >= 0 {
						name = strings.TrimSpace(name[:j])
					}
					if name != "" && name != "le" && !pm.hasLabel(name) {
						t.Errorf("%s: %s has no label %q (labels: %v)", where, m[1], name, pm.labels)
					}
				}
			}
		}
		for _, tb := range mdTables(text) {
			mi, li := tb.column("metric"), tb.column("labels")
			if mi < 0 || li < 0 {
				continue
			}
			where := file + ":" + strconv.Itoa(tb.line)
			for _, r := range tb.rows {
				if mi >= len(r) || li >= len(r) {
					continue
				}
				name := strings.Trim(r[mi], "`")
				_, pm, ok := metricOf(known, name)
				if !ok {
					continue // reported above
				}
				var labels []string
				for _, m := range codeSpanText.FindAllStringSubmatch(r[li], -1) {
					labels = append(labels, m[1])
				}
				want := slices.Clone(pm.labels)
				sort.Strings(labels)
				sort.Strings(want)
				if !slices.Equal(labels, want) {
					t.Errorf("%s: %s is listed with labels %v, it has %v", where, name, labels, want)
				}
			}
		}
	}
	if named < 30 {
		t.Errorf("found %d metric names in the docs; the matcher is broken", named)
	}

	// The operations guide's monitoring table lists every collector.
	sec := docSectionOf(t, readRepoFile(t, "docs/operations.md"), "operations.md", "6. Monitoring")
	listed := map[string]bool{}
	for _, tb := range mdTables(sec) {
		if mi := tb.column("metric"); mi >= 0 && tb.column("labels") >= 0 {
			for _, r := range tb.rows {
				listed[strings.Trim(r[mi], "`")] = true
			}
		}
	}
	var missing []string
	for n := range known {
		if !listed[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	for _, n := range missing {
		t.Errorf("docs/operations.md (6. Monitoring): the metric table does not list %s", n)
	}
}
