package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// The dashboard test keeps docs/grafana-dashboard.json true to the code: every metric a panel or
// variable queries must be a gmgate collector registered by registerMetrics (metrics.go) or a
// Caddy/process metric of caddyMetricAllowlist, and every label it filters, groups or shows by
// must exist on the metrics of that query. TestDashboardCaddyAllowlistIsLive checks the allowlist
// against the registry of a real in-process Caddy.

const dashboardPath = "../docs/grafana-dashboard.json"

// promMetric is what the dashboard check knows about one metric family.
type promMetric struct {
	histogram bool
	labels    []string
}

func (m promMetric) hasLabel(l string) bool {
	for _, x := range m.labels {
		if x == l {
			return true
		}
	}
	return false
}

// caddyMetricAllowlist lists the Caddy and process metrics the dashboard may use, as Caddy v2.11.9
// defines them: caddy_http_* in modules/caddyhttp/metrics.go (initHTTPMetrics, registered when the
// `metrics` global option is set and the first request is served), process_* and go_* from the
// prometheus process and Go collectors registered in context.go (initMetrics), and
// caddy_config_last_reload_successful in metrics.go. TestDashboardCaddyAllowlistIsLive checks
// every entry (name, type, labels) against a running Caddy.
var caddyMetricAllowlist = map[string]promMetric{
	"caddy_http_requests_total":           {labels: []string{"server", "handler"}},
	"caddy_http_requests_in_flight":       {labels: []string{"server", "handler"}},
	"caddy_http_request_errors_total":     {labels: []string{"server", "handler"}},
	"caddy_http_request_duration_seconds": {histogram: true, labels: []string{"server", "handler", "code", "method"}},
	"caddy_http_response_duration_seconds": {histogram: true,
		labels: []string{"server", "handler", "code", "method"}},
	"caddy_config_last_reload_successful": {},
	"process_resident_memory_bytes":       {},
	"process_cpu_seconds_total":           {},
	"process_open_fds":                    {},
	"process_start_time_seconds":          {},
	"go_goroutines":                       {},
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = map[string]bool{"instance": true, "job": true}

// recordingRegisterer records the collectors registerMetrics registers.
type recordingRegisterer struct{ cs []prometheus.Collector }

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.cs = append(r.cs, c)
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }

func (r *recordingRegisterer) Unregister(prometheus.Collector) bool { return false }

var (
	descNameRE   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabelsRE = regexp.MustCompile(`variableLabels: \{([^}]*)\}\}$`)
)

// gmgateMetrics describes every collector registerMetrics registers, by fully-qualified name.
func gmgateMetrics(t *testing.T) map[string]promMetric {
	t.Helper()
	rec := &recordingRegisterer{}
	if err := registerMetrics(rec); err != nil {
		t.Fatal(err)
	}
	out := describeCollectors(t, rec.cs)
	if len(out) == 0 {
		t.Fatal("registerMetrics registered no collector")
	}
	return out
}

// describeCollectors returns the name, labels and kind of the metrics of some collectors.
func describeCollectors(t *testing.T, cs []prometheus.Collector) map[string]promMetric {
	t.Helper()
	out := map[string]promMetric{}
	for _, c := range cs {
		_, hist := c.(*prometheus.HistogramVec)
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String()
			n := descNameRE.FindStringSubmatch(s)
			l := descLabelsRE.FindStringSubmatch(s)
			if n == nil || l == nil {
				t.Fatalf("cannot read the descriptor %s", s)
			}
			m := promMetric{histogram: hist}
			if l[1] != "" {
				m.labels = strings.Split(l[1], ",")
			}
			out[n[1]] = m
		}
	}
	return out
}

// ---- a small PromQL reader: enough to find metric names and label names ----

type promToken struct {
	kind byte // 'i' identifier, 's' string, 'n' number, 'v' $variable, 'p' punctuation
	text string
}

func lexPromQL(expr string) ([]promToken, error) {
	var out []promToken
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			out = append(out, promToken{'s', expr[i+1 : j]})
			i = j + 1
		case c == '[': // range or subquery: durations and variables only
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated range at %d", i)
			}
			i += j + 1
		case c == '$':
			j := i + 1
			if j < len(expr) && expr[j] == '{' {
				k := strings.IndexByte(expr[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unterminated variable at %d", i)
				}
				j += k + 1
			} else {
				for j < len(expr) && isIdent(expr[j]) {
					j++
				}
			}
			out = append(out, promToken{'v', expr[i:j]})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			j := i
			for j < len(expr) && (isIdent(expr[j]) || expr[j] == '.' ||
				(expr[j] == '-' || expr[j] == '+') && (expr[j-1] == 'e' || expr[j-1] == 'E')) {
				j++
			}
			out = append(out, promToken{'n', expr[i:j]})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			out = append(out, promToken{'i', expr[i:j]})
			i = j
		default:
			out = append(out, promToken{'p', string(c)})
			i++
		}
	}
	return out, nil
}

// promSelector is one metric selector and the labels its matchers name.
type promSelector struct {
	metric string
	labels []string
}

// promRefs is what a PromQL expression refers to.
type promRefs struct {
	selectors []promSelector
	grouping  []string // labels of by/without/on/ignoring/group_left/group_right lists
}

var (
	promAggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "count": true,
		"stddev": true, "stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true, "group": true}
	promFunctions = map[string]bool{"rate": true, "irate": true, "increase": true, "delta": true, "idelta": true,
		"deriv": true, "histogram_quantile": true, "clamp_min": true, "clamp_max": true, "clamp": true, "abs": true,
		"absent": true, "avg_over_time": true, "max_over_time": true, "min_over_time": true, "sum_over_time": true,
		"changes": true, "resets": true, "time": true, "timestamp": true, "vector": true, "scalar": true,
		"round": true, "ceil": true, "floor": true, "label_replace": true, "label_join": true, "sort": true, "sort_desc": true}
	promGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true}
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"atan2": true, "inf": true, "nan": true, "Inf": true, "NaN": true}
)

// parsePromQL finds the selectors and grouping labels of expr.
func parsePromQL(expr string) (promRefs, error) {
	var refs promRefs
	toks, err := lexPromQL(expr)
	if err != nil {
		return refs, err
	}
	next := func(i int) promToken {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return promToken{}
	}
	// matchers reads `label op value, ...}` starting after '{'; it returns the labels and the index of '}'.
	matchers := func(i int) ([]string, int, error) {
		var labels []string
		for ; i < len(toks); i++ {
			tk := toks[i]
			switch {
			case tk.kind == 'p' && tk.text == "}":
				return labels, i, nil
			case tk.kind == 'p' && (tk.text == "," || tk.text == "=" || tk.text == "!" || tk.text == "~"):
			case tk.kind == 'i':
				labels = append(labels, tk.text)
			case tk.kind == 's':
			default:
				return nil, i, fmt.Errorf("unexpected %q in label matchers", tk.text)
			}
		}
		return nil, i, fmt.Errorf("unterminated label matchers")
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch {
		case tk.kind == 'i' && promGrouping[tk.text]:
			if n := next(i); n.kind == 'p' && n.text == "(" {
				j := i + 2
				for ; j < len(toks) && !(toks[j].kind == 'p' && toks[j].text == ")"); j++ {
					if toks[j].kind == 'i' {
						refs.grouping = append(refs.grouping, toks[j].text)
					} else if toks[j].text != "," {
						return refs, fmt.Errorf("unexpected %q in %s (...)", toks[j].text, tk.text)
					}
				}
				i = j
			}
		case tk.kind == 'i' && (promKeywords[tk.text] || promAggregations[tk.text]):
		case tk.kind == 'i' && next(i).kind == 'p' && next(i).text == "(":
			if !promFunctions[tk.text] {
				return refs, fmt.Errorf("unknown PromQL function %q", tk.text)
			}
		case tk.kind == 'i':
			sel := promSelector{metric: tk.text}
			if n := next(i); n.kind == 'p' && n.text == "{" {
				labels, end, err := matchers(i + 2)
				if err != nil {
					return refs, err
				}
				sel.labels, i = labels, end
			}
			refs.selectors = append(refs.selectors, sel)
		case tk.kind == 'p' && tk.text == "{":
			return refs, fmt.Errorf("selector without a metric name")
		}
	}
	return refs, nil
}

// labelValuesRE matches a Grafana variable query label_values(<selector>, <label>).
var labelValuesRE = regexp.MustCompile(`^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

// resolveMetric finds the family of a series name: the name itself, or a histogram's
// _bucket/_sum/_count series.
func resolveMetric(name string, known map[string]promMetric) (promMetric, bool, bool) {
	if m, ok := known[name]; ok && !m.histogram {
		return m, false, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if m, ok := known[base]; ok && m.histogram {
				return m, suf == "_bucket", true
			}
		}
	}
	return promMetric{}, false, false
}

// checkPromQL returns every problem of expr: unknown metrics or functions, and labels (in
// matchers, grouping clauses, extraLabels such as a legend's {{label}}) that are not on the
// metrics the expression reads.
func checkPromQL(expr string, extraLabels []string, known map[string]promMetric) []string {
	var grouping []string
	if m := labelValuesRE.FindStringSubmatch(expr); m != nil {
		expr, grouping = m[1], []string{m[2]}
	}
	refs, err := parsePromQL(expr)
	if err != nil {
		return []string{err.Error()}
	}
	if len(refs.selectors) == 0 {
		return []string{"no metric"}
	}
	var problems []string
	type resolved struct {
		m      promMetric
		bucket bool
	}
	var all []resolved
	allowed := func(r resolved, l string) bool {
		return targetLabels[l] || r.m.hasLabel(l) || l == "le" && r.bucket
	}
	for _, s := range refs.selectors {
		m, bucket, ok := resolveMetric(s.metric, known)
		if !ok {
			problems = append(problems, fmt.Sprintf("unknown metric %q", s.metric))
			continue
		}
		r := resolved{m, bucket}
		all = append(all, r)
		for _, l := range s.labels {
			if !allowed(r, l) {
				problems = append(problems, fmt.Sprintf("metric %q has no label %q", s.metric, l))
			}
		}
	}
	seen := map[string]bool{}
	for _, l := range append(append(grouping, refs.grouping...), extraLabels...) {
		if seen[l] {
			continue
		}
		seen[l] = true
		for _, r := range all {
			if !allowed(r, l) {
				problems = append(problems, fmt.Sprintf("label %q is not on every metric of the query", l))
				break
			}
		}
	}
	return problems
}

// ---- the dashboard ----

type dashTarget struct {
	Datasource   json.RawMessage `json:"datasource"`
	Expr         string          `json:"expr"`
	LegendFormat string          `json:"legendFormat"`
	RefID        string          `json:"refId"`
}

type dashPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []dashTarget    `json:"targets"`
	Panels     []dashPanel     `json:"panels"`
}

type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	SchemaVersion int         `json:"schemaVersion"`
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource json.RawMessage `json:"datasource"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// dashQuery is one PromQL query of the dashboard and where it is.
type dashQuery struct {
	where  string
	expr   string
	legend []string
}

var legendLabelRE = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// dashboardQueries reads the dashboard and returns its queries; structural problems fail t.
func dashboardQueries(t *testing.T, data []byte) []dashQuery {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	if d.SchemaVersion < 36 || d.UID == "" || d.Title == "" {
		t.Errorf("dashboard: schemaVersion %d (want >= 36), uid %q, title %q", d.SchemaVersion, d.UID, d.Title)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("dashboard: want exactly one __inputs entry DS_PROMETHEUS (prometheus), got %+v", d.Inputs)
	}
	checkDS := func(where string, raw json.RawMessage) {
		var ds struct{ Type, UID string }
		if err := json.Unmarshal(raw, &ds); err != nil || ds.Type != "prometheus" || ds.UID != "${DS_PROMETHEUS}" {
			t.Errorf("%s: datasource %s, want {prometheus, ${DS_PROMETHEUS}}", where, raw)
		}
	}
	var out []dashQuery
	ids := map[int]string{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("%s: id not unique (also %s)", where, prev)
			}
			ids[p.ID] = where
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			checkDS(where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			for _, tg := range p.Targets {
				checkDS(where, tg.Datasource)
				var legend []string
				for _, m := range legendLabelRE.FindAllStringSubmatch(tg.LegendFormat, -1) {
					legend = append(legend, m[1])
				}
				out = append(out, dashQuery{where: where + " " + tg.RefID, expr: tg.Expr, legend: legend})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		checkDS("variable "+v.Name, v.Datasource)
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Errorf("variable %s: query %s", v.Name, v.Query)
			}
		}
		out = append(out, dashQuery{where: "variable " + v.Name, expr: q.Query})
	}
	return out
}

// TestDashboardMetricsExist: every metric and label of docs/grafana-dashboard.json exists, every
// gmgate collector is on the dashboard, and so are the Caddy HTTP and process panels.
func TestDashboardMetricsExist(t *testing.T) {
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	gm := gmgateMetrics(t)
	known := map[string]promMetric{}
	for n, m := range caddyMetricAllowlist {
		known[n] = m
	}
	for n, m := range gm {
		if !strings.HasPrefix(n, "gmgate_") {
			t.Errorf("collector %q is not in the gmgate_ namespace", n)
		}
		known[n] = m
	}
	used := map[string]bool{}
	queries := dashboardQueries(t, data)
	for _, q := range queries {
		for _, p := range checkPromQL(q.expr, q.legend, known) {
			t.Errorf("%s: %s\n\texpr: %s", q.where, p, q.expr)
		}
		refs, _ := parsePromQL(strings.TrimSpace(labelValuesRE.ReplaceAllString(q.expr, "$1")))
		for _, s := range refs.selectors {
			for _, suf := range []string{"", "_bucket", "_sum", "_count"} {
				used[strings.TrimSuffix(s.metric, suf)] = true
			}
		}
	}
	var missing []string
	for n := range gm {
		if !used[n] {
			missing = append(missing, n)
		}
	}
	for _, n := range []string{"caddy_http_request_duration_seconds", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if !used[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics with no panel on the dashboard: %v", missing)
	}
	t.Logf("%d queries checked against %d gmgate collectors and %d Caddy/process metrics", len(queries), len(gm), len(caddyMetricAllowlist))
}

// TestDashboardPromQLChecker: the checker the dashboard test relies on finds unknown metrics,
// unknown labels and histogram misuse (so a typo in a panel fails TestDashboardMetricsExist).
func TestDashboardPromQLChecker(t *testing.T) {
	known := map[string]promMetric{
		"gmgate_channel_requests_total":   {labels: []string{"bank", "result"}},
		"gmgate_channel_duration_seconds": {histogram: true, labels: []string{"bank"}},
		"process_cpu_seconds_total":       {},
	}
	tests := []struct {
		name, expr string
		legend     []string
		want       []string // substrings of the problems, in order; none = clean
	}{
		{"counter by labels", `sum by (bank, result) (rate(gmgate_channel_requests_total{instance=~"$instance"}[$__rate_interval]))`, []string{"bank", "result"}, nil},
		{"histogram quantile", `histogram_quantile(0.99, sum by (le, bank) (rate(gmgate_channel_duration_seconds_bucket{job="gw"}[5m])))`, nil, nil},
		{"ratio with matchers", `sum(rate(gmgate_channel_requests_total{result!="ok"}[5m])) / sum(rate(gmgate_channel_requests_total[5m])) > bool 1e-3`, nil, nil},
		{"count series", `rate(gmgate_channel_duration_seconds_count[1h] offset 1d)`, nil, nil},
		{"bare process metric", `rate(process_cpu_seconds_total[5m])`, []string{"instance"}, nil},
		{"variable query", `label_values(gmgate_channel_requests_total, bank)`, nil, nil},
		{"metric typo", `sum(rate(gmgate_channel_request_total[5m]))`, nil, []string{`unknown metric "gmgate_channel_request_total"`}},
		{"bare histogram name", `rate(gmgate_channel_duration_seconds[5m])`, nil, []string{"unknown metric"}},
		{"bucket of a counter", `rate(gmgate_channel_requests_total_bucket[5m])`, nil, []string{"unknown metric"}},
		{"matcher label typo", `rate(gmgate_channel_requests_total{reslut="ok"}[5m])`, nil, []string{`has no label "reslut"`}},
		{"grouping label absent", `sum by (token) (rate(gmgate_channel_requests_total[5m]))`, nil, []string{`label "token"`}},
		{"grouping label on one side only", `sum by (result) (rate(gmgate_channel_requests_total[5m])) / sum by (result) (rate(gmgate_channel_duration_seconds_count[5m]))`, nil, []string{`label "result"`}},
		{"le on a counter", `sum by (le) (rate(gmgate_channel_requests_total[5m]))`, nil, []string{`label "le"`}},
		{"legend label absent", `sum by (bank) (rate(gmgate_channel_requests_total[5m]))`, []string{"bnak"}, []string{`label "bnak"`}},
		{"variable label absent", `label_values(process_cpu_seconds_total, bank)`, nil, []string{`label "bank"`}},
		{"function typo", `histogram_quantil(0.5, rate(gmgate_channel_duration_seconds_bucket[5m]))`, nil, []string{`unknown PromQL function "histogram_quantil"`}},
		{"no metric", `vector(1)`, nil, []string{"no metric"}},
		{"unnamed selector", `{__name__="x"}`, nil, []string{"without a metric name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkPromQL(tc.expr, tc.legend, known)
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("problem %q, want it to contain %q", got[i], tc.want[i])
				}
			}
		})
	}
}

// TestDashboardGmgateCollectors: the descriptor reader sees the collectors with their labels (so
// the dashboard check compares against what metrics.go really registers).
func TestDashboardGmgateCollectors(t *testing.T) {
	gm := gmgateMetrics(t)
	want := map[string]promMetric{
		"gmgate_tlcp_handshakes_total":                   {labels: []string{"suite", "result"}},
		"gmgate_tlcp_handshake_duration_seconds":         {histogram: true, labels: []string{"suite", "resumed"}},
		"gmgate_verify_results_total":                    {labels: []string{"scheme", "result"}},
		"gmgate_verify_replay_rejections_total":          {labels: []string{"scheme"}},
		"gmgate_channel_requests_total":                  {labels: []string{"bank", "result"}},
		"gmgate_channel_duration_seconds":                {histogram: true, labels: []string{"bank"}},
		"gmgate_vault_operations_total":                  {labels: []string{"token", "key", "op", "result"}},
		"gmgate_certificate_not_after_timestamp_seconds": {labels: []string{"module", "role", "name", "subject", "serial"}},
		"gmgate_crl_next_update_timestamp_seconds":       {labels: []string{"module", "file", "issuer"}},
	}
	for n, w := range want {
		g, ok := gm[n]
		if !ok {
			t.Errorf("metrics.go registers no %s (issue 6 item 3 needs it)", n)
			continue
		}
		if g.histogram != w.histogram || strings.Join(g.labels, ",") != strings.Join(w.labels, ",") {
			t.Errorf("%s: histogram %v labels %v, want histogram %v labels %v", n, g.histogram, g.labels, w.histogram, w.labels)
		}
	}
}

// TestDashboardCaddyAllowlistIsLive runs Caddy in-process with metrics on, serves one request and
// checks every allowlisted Caddy/process metric (name, type, labels) in Caddy's registry.
func TestDashboardCaddyAllowlistIsLive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"storage": {"module": "file_system", "root": %q},
		"apps": {"http": {"metrics": {}, "servers": {"dash": {
			"listen": [%q],
			"automatic_https": {"disable": true},
			"routes": [
				{"match": [{"path": ["/error"]}], "handle": [{"handler": "error", "status_code": 500}]},
				{"handle": [{"handler": "static_response", "body": "ok"}]}
			]
		}}}}
	}`, filepath.Join(t.TempDir(), "data"), addr)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	defer caddy.Stop() //nolint:errcheck
	client := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/", "/error"} { // a reply and a handler error
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		resp.Body.Close()
	}

	active := caddy.ActiveContext()
	fams, err := active.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]promMetric{}
	for _, f := range fams {
		m := promMetric{histogram: f.GetType().String() == "HISTOGRAM"}
		if ms := f.GetMetric(); len(ms) > 0 {
			for _, lp := range ms[0].GetLabel() {
				m.labels = append(m.labels, lp.GetName())
			}
		}
		live[f.GetName()] = m
	}
	for n, want := range caddyMetricAllowlist {
		got, ok := live[n]
		if !ok {
			t.Errorf("Caddy does not export %s", n)
			continue
		}
		a, b := append([]string(nil), got.labels...), append([]string(nil), want.labels...)
		sort.Strings(a)
		sort.Strings(b)
		if got.histogram != want.histogram || strings.Join(a, ",") != strings.Join(b, ",") {
			t.Errorf("%s: live histogram %v labels %v, allowlist says histogram %v labels %v", n, got.histogram, a, want.histogram, b)
		}
	}
}
