package chart

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	controller "github.com/stocksync/smaregi-operator/controllers"
	_ "github.com/stocksync/smaregi-operator/internal/hubapi" // registers the hub API's metrics
	"github.com/stocksync/smaregi-operator/internal/inventory"
	_ "github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/mirror"
	"github.com/stocksync/smaregi-operator/internal/pusher"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/internal/storemetrics"
	"github.com/stocksync/smaregi-operator/internal/testenv"
	_ "github.com/stocksync/smaregi-operator/webhookserver" // registers the receiver's metrics
)

// promql parses like Prometheus does by default (no experimental functions).
var promql = parser.NewParser(parser.Options{})

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func loadAlerts(t *testing.T) []alertRule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir, "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &spec); err != nil {
		t.Fatalf("files/alerts.yaml: %v", err)
	}
	var rules []alertRule
	for _, g := range spec.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatal("files/alerts.yaml has no rules")
	}
	return rules
}

// metricNames parses a PromQL expression and returns the metric names its
// selectors read.
func metricNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				name = m.Value
			}
		}
		if name == "" {
			err = fmt.Errorf("selector %s has no metric name", vs)
		}
		names = append(names, name)
		return nil
	})
	return names, err
}

var (
	registerOnce sync.Once
	registerErr  error
)

// registerOperatorMetrics registers every collector the operator serves, the
// way cmd/main.go does: the receiver's and hub API's at import, the Smaregi
// client's, the pusher's and the mirror's when they are built, the mirror's
// per-store gauges and the store gauges when they are set up with a
// manager.
func registerOperatorMetrics(t *testing.T) error {
	registerOnce.Do(func() {
		ctx := context.Background()
		mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
			Scheme:  testenv.Scheme(),
			Metrics: metricsserver.Options{BindAddress: "0"},
			Cache:   controller.CacheOptions(),
		})
		if err != nil {
			registerErr = fmt.Errorf("manager: %w", err)
			return
		}
		if err := storemetrics.Register(mgr.GetCache(), logr.Discard()); err != nil {
			registerErr = fmt.Errorf("store metrics: %w", err)
			return
		}
		inv, err := inventory.Open(ctx, "bolt://"+filepath.Join(os.TempDir(), fmt.Sprintf("chart-test-%d.db", os.Getpid())))
		if err != nil {
			registerErr = fmt.Errorf("inventory: %w", err)
			return
		}
		engine, err := mirror.New(mirror.Options{Inventory: inv})
		if err != nil {
			registerErr = fmt.Errorf("mirror: %w", err)
			return
		}
		if err := engine.SetupWithManager(mgr); err != nil {
			registerErr = fmt.Errorf("mirror setup: %w", err)
			return
		}
		if _, err := pusher.New(pusher.Options{Store: inv, Targets: noTargets{}}); err != nil {
			registerErr = fmt.Errorf("pusher: %w", err)
			return
		}
		if _, err := smaregi.New(smaregi.Options{ContractID: "chart-test", AccessToken: "chart-test"}); err != nil {
			registerErr = fmt.Errorf("smaregi client: %w", err)
		}
	})
	return registerErr
}

type noTargets struct{}

func (noTargets) Target(context.Context, inventory.StoreKey) (storeaccess.Target, error) {
	return storeaccess.Target{}, fmt.Errorf("chart test: no targets")
}

// registered reports whether a metric family name is registered on the
// registry the operator serves. A registry only lists families that have
// series, and a vector without children has none; so this registers a probe
// gauge under the name with another help string: the registry refuses it
// exactly when a collector already describes that name.
func registered(name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "chart test probe"})
	if err := metrics.Registry.Register(probe); err != nil {
		return true
	}
	metrics.Registry.Unregister(probe)
	return false
}

// servedBy reports whether a series name is served: a family's own name, or
// a histogram's _bucket, _sum or _count. (The probe cannot tell a histogram
// from a counter, so a counter's name plus _bucket passes too; PromQL's
// histogram_quantile on a counter would show as an empty panel in review.)
func servedBy(name string) bool {
	if registered(name) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && registered(base) {
			return true
		}
	}
	return false
}

func TestProbeTellsRegisteredNamesApart(t *testing.T) {
	if err := registerOperatorMetrics(t); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"smaregi_store_condition", "smaregi_receiver_requests_total", "smaregi_mirror_rows",
		"smaregi_pusher_adjustments_total", "smaregi_client_requests_total", "smaregi_hubapi_requests_total"} {
		if !registered(name) {
			t.Errorf("%s is not seen as registered", name)
		}
	}
	if registered("smaregi_no_such_metric") || servedBy("smaregi_no_such_metric_bucket") {
		t.Error("an unregistered name is seen as registered")
	}
}

func TestAlertsParseAndUseOnlyOperatorMetrics(t *testing.T) {
	if err := registerOperatorMetrics(t); err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile(filepath.Join(repoRoot, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range loadAlerts(t) {
		names, err := metricNames(r.Expr)
		if err != nil {
			t.Errorf("%s: expr does not parse as PromQL: %v", r.Alert, err)
			continue
		}
		for _, n := range names {
			if !servedBy(n) {
				t.Errorf("%s reads %s, which the operator does not register", r.Alert, n)
			}
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s has no %s", r.Alert, a)
			}
		}
		if r.Labels["severity"] == "" {
			t.Errorf("%s has no severity", r.Alert)
		}
		anchor := "operations.md#" + strings.ToLower(r.Alert)
		if !strings.HasSuffix(r.Annotations["runbook_url"], anchor) {
			t.Errorf("%s: runbook_url %q does not end in %s", r.Alert, r.Annotations["runbook_url"], anchor)
		}
		if !regexp.MustCompile(`(?m)^## ` + regexp.QuoteMeta(r.Alert) + `$`).Match(ops) {
			t.Errorf("%s has no runbook section (## %s) in docs/operations.md", r.Alert, r.Alert)
		}
	}
}

// grafanaVars are replaced before parsing: Grafana substitutes them, and
// PromQL does not accept them as range durations.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

func TestDashboardUsesOnlyOperatorMetrics(t *testing.T) {
	if err := registerOperatorMetrics(t); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(chartDir, "dashboards", "*.json"))
	if len(files) == 0 {
		t.Fatal("no dashboards")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name       string `json:"name"`
					Type       string `json:"type"`
					Definition string `json:"definition"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		exprs := map[string]string{}
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for i, tg := range p.Targets {
				exprs[fmt.Sprintf("panel %q query %d", p.Title, i)] = tg.Expr
			}
		}
		var vars []string
		for _, v := range d.Templating.List {
			vars = append(vars, v.Name)
			if v.Type != "query" {
				continue
			}
			m := labelValuesRE.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("%s: variable %s: %q is not label_values(selector, label)", f, v.Name, v.Definition)
				continue
			}
			exprs["variable "+v.Name] = m[1]
		}
		for _, want := range []string{"namespace", "store"} {
			if !slices.Contains(vars, want) {
				t.Errorf("%s: no %s variable", f, want)
			}
		}
		for where, expr := range exprs {
			names, err := metricNames(grafanaVars.Replace(expr))
			if err != nil {
				t.Errorf("%s: %s does not parse as PromQL: %v\n%s", filepath.Base(f), where, err, expr)
				continue
			}
			for _, n := range names {
				if !servedBy(n) {
					t.Errorf("%s: %s reads %s, which the operator does not register", filepath.Base(f), where, n)
				}
			}
		}
	}
}
