package validate

import (
	"go/ast"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql/parser"
)

// metric is one series name an exporter can produce, with its labels.
type metric struct {
	from   string
	labels []string
}

// targetLabels are added to every scraped series by Prometheus and the Prometheus Operator's
// ServiceMonitor discovery.
var targetLabels = []string{"job", "instance", "namespace", "service", "pod", "container", "endpoint"}

// metricCatalog reads, from the source, every metric parkd exports (package metrics, which
// also exports asynq's queue metrics under asynq's own names: metrics/queues.go), so that an
// alert cannot name a series that does not exist.
func metricCatalog(t *testing.T) map[string]metric {
	t.Helper()
	cat := map[string]metric{
		"up": {from: "Prometheus"},
	}
	addFromSource(t, cat, "package metrics", repoRoot+"/metrics")
	for _, want := range []string{"parkd_outbox_backlog", "parkd_autostop_lateness_seconds_bucket", "asynq_queue_latency_seconds"} {
		if _, ok := cat[want]; !ok {
			t.Fatalf("metric catalog: %s not found in the source; the reading of metric definitions is broken", want)
		}
	}
	return cat
}

// addFromSource finds metric definitions in a package's source: prometheus.New*(XOpts{Name:
// ...}, []string{labels}) and prometheus.NewDesc(name or BuildFQName(...), help, labels, ...).
func addFromSource(t *testing.T, cat map[string]metric, from, dir string) {
	t.Helper()
	files := parseGoDir(t, dir)
	consts := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if v, ok := stringLit(vs.Values[i], nil); ok {
							consts[n.Name] = v
						}
					}
				}
			}
		}
	}
	found := 0
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !strings.HasPrefix(sel.Sel.Name, "New") || len(call.Args) == 0 {
				return true
			}
			var name string
			var labels []string
			histogram := false
			switch {
			case sel.Sel.Name == "NewDesc" && len(call.Args) >= 3:
				name = fqName(call.Args[0], consts)
				labels = stringList(call.Args[2], consts)
			default:
				lit, ok := call.Args[0].(*ast.CompositeLit)
				if !ok {
					return true
				}
				typ, ok := lit.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(typ.Sel.Name, "Opts") {
					return true
				}
				histogram = typ.Sel.Name == "HistogramOpts" || typ.Sel.Name == "SummaryOpts"
				parts := map[string]string{}
				for _, e := range lit.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						if v, ok := stringLit(kv.Value, consts); ok {
							parts[kv.Key.(*ast.Ident).Name] = v
						}
					}
				}
				name = join(parts["Namespace"], parts["Subsystem"], parts["Name"])
				if len(call.Args) >= 2 {
					labels = stringList(call.Args[1], consts)
				}
			}
			if name == "" {
				return true
			}
			found++
			cat[name] = metric{from: from, labels: labels}
			if histogram {
				cat[name+"_bucket"] = metric{from: from, labels: append(slices.Clone(labels), "le")}
				cat[name+"_sum"] = metric{from: from, labels: labels}
				cat[name+"_count"] = metric{from: from, labels: labels}
			}
			return true
		})
	}
	if found == 0 {
		t.Fatalf("%s (%s): no metric definitions found", from, dir)
	}
}

func join(parts ...string) string {
	var nonEmpty []string
	for _, p := range parts {
		if p != "" {
			nonEmpty = append(nonEmpty, p)
		}
	}
	return strings.Join(nonEmpty, "_")
}

func fqName(e ast.Expr, consts map[string]string) string {
	if v, ok := stringLit(e, consts); ok {
		return v
	}
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 3 {
		return ""
	}
	var parts []string
	for _, a := range call.Args {
		v, _ := stringLit(a, consts)
		parts = append(parts, v)
	}
	return join(parts...)
}

func stringLit(e ast.Expr, consts map[string]string) (string, bool) {
	switch v := e.(type) {
	case *ast.BasicLit:
		if v.Kind == token.STRING {
			s, err := strconv.Unquote(v.Value)
			return s, err == nil
		}
	case *ast.Ident:
		s, ok := consts[v.Name]
		return s, ok
	}
	return "", false
}

func stringList(e ast.Expr, consts map[string]string) []string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	var out []string
	for _, el := range lit.Elts {
		if s, ok := stringLit(el, consts); ok {
			out = append(out, s)
		}
	}
	return out
}

// Prometheus' template functions (prometheus/template): an annotation calling another fails
// when the alert fires, not when the rule loads.
var promTemplateFuncs = func() template.FuncMap {
	fm := template.FuncMap{}
	for _, n := range strings.Fields(`query first label value strvalue args reReplaceAll safeHtml match title
		toUpper toLower graphLink tableLink sortByLabel stripPort stripDomain humanize humanize1024
		humanizeDuration humanizePercentage humanizeTimestamp toTime toDuration now pathPrefix externalURL
		parseDuration urlQueryEscape`) {
		fm[n] = func(...any) any { return nil }
	}
	return fm
}()

// checkRules: every expression parses as PromQL and names only series and labels that exist;
// every alert has a unique name, a severity, a summary that parses as a Prometheus template,
// and (but for info) a `for`, so one bad scrape pages nobody.
func checkRules(t *testing.T, r *monitoringv1.PrometheusRule) {
	t.Helper()
	cat := metricCatalog(t)
	p := parser.NewParser(parser.Options{})
	seen := map[string]bool{}
	for _, g := range r.Spec.Groups {
		for _, rule := range g.Rules {
			where := "PrometheusRule " + r.Name + " alert " + rule.Alert
			if rule.Alert == "" {
				t.Errorf("PrometheusRule %s group %s: a rule without alert (recording rules are not expected)", r.Name, g.Name)
				continue
			}
			if seen[rule.Alert] {
				t.Errorf("%s: defined twice", where)
			}
			seen[rule.Alert] = true
			expr, err := p.ParseExpr(rule.Expr.String())
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				m, ok := cat[vs.Name]
				if !ok {
					t.Errorf("%s: series %q is exported by neither parkd nor asynq", where, vs.Name)
					return nil
				}
				for _, lm := range vs.LabelMatchers {
					if lm.Name != "__name__" && !slices.Contains(m.labels, lm.Name) && !slices.Contains(targetLabels, lm.Name) {
						t.Errorf("%s: %s (from %s) has no label %q; it has %v and the target's %v", where, vs.Name, m.from, lm.Name, m.labels, targetLabels)
					}
				}
				return nil
			})
			sev := rule.Labels["severity"]
			if sev != "critical" && sev != "warning" && sev != "info" {
				t.Errorf("%s: severity %q, want critical, warning or info", where, sev)
			}
			if sev != "info" && (rule.For == nil || *rule.For == "") {
				t.Errorf("%s: no `for`: a single evaluation would page", where)
			}
			if rule.Annotations["summary"] == "" {
				t.Errorf("%s: no summary annotation", where)
			}
			for k, v := range rule.Annotations {
				// Prometheus defines these variables before every annotation template.
				text := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}" + v
				if _, err := template.New(k).Funcs(promTemplateFuncs).Parse(text); err != nil {
					t.Errorf("%s: annotation %s: %v", where, k, err)
				}
			}
		}
	}
	if len(seen) == 0 {
		t.Errorf("PrometheusRule %s has no alerts", r.Name)
	}
}
