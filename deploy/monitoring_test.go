package deploy_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-dev/switchboard/internal/redistest"
	"github.com/switchboard-dev/switchboard/internal/testutil"
)

// The monitoring profile's files (docs/observability.md).
const (
	promConfigPath = "deploy/monitoring/prometheus.yml"
	alertsPath     = "deploy/monitoring/alerts.yml"
	dashboardPath  = "deploy/monitoring/grafana/dashboards/switchboard.json"
	datasourcePath = "deploy/monitoring/grafana/provisioning/datasources/prometheus.yml"
	dashProvPath   = "deploy/monitoring/grafana/provisioning/dashboards/switchboard.yml"
)

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type dashboardPanel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // a collapsed row's
}

type dashboard struct {
	UID    string           `json:"uid"`
	Title  string           `json:"title"`
	Panels []dashboardPanel `json:"panels"`
}

func loadYAML(t *testing.T, rel string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, rel), v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, dashboardPath), &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// monitoringExprs returns every PromQL expression of the alert rules and the dashboard,
// each with where it is.
func monitoringExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	var rules alertRules
	loadYAML(t, alertsPath, &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	var walk func(ps []dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			for i, tg := range p.Targets {
				exprs["panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(loadDashboard(t).Panels)
	return exprs
}

func TestMonitoringFilesParse(t *testing.T) {
	t.Run("prometheus.yml scrapes every compose node and loads the mounted rules", func(t *testing.T) {
		var cfg struct {
			RuleFiles     []string `yaml:"rule_files"`
			ScrapeConfigs []struct {
				JobName       string `yaml:"job_name"`
				MetricsPath   string `yaml:"metrics_path"`
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
			} `yaml:"scrape_configs"`
		}
		loadYAML(t, promConfigPath, &cfg)
		var targets []string
		for _, sc := range cfg.ScrapeConfigs {
			if sc.JobName == "switchboard" && sc.MetricsPath == "/metrics" {
				for _, s := range sc.StaticConfigs {
					targets = append(targets, s.Targets...)
				}
			}
		}
		var want []string
		for _, n := range switchboardNodes(loadCompose(t)) {
			want = append(want, n+":8080")
		}
		slices.Sort(targets)
		if !slices.Equal(targets, want) {
			t.Errorf("job switchboard scrapes %v at /metrics, want the compose nodes %v", targets, want)
		}
		mounts := composeMounts(t, "prometheus")
		for _, rf := range cfg.RuleFiles {
			if !slices.Contains(mounts, rf) {
				t.Errorf("rule file %s is not mounted into the prometheus service (%v)", rf, mounts)
			}
		}
		if len(cfg.RuleFiles) == 0 {
			t.Error("no rule_files: the alert rules are not loaded")
		}
	})

	t.Run("alerts.yml rules are whole", func(t *testing.T) {
		var rules alertRules
		loadYAML(t, alertsPath, &rules)
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				n++
				if r.Alert == "" || strings.TrimSpace(r.Expr) == "" || r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
					t.Errorf("rule %+v needs an alert name, an expr, a severity label and a summary", r)
				}
				if r.For != "" {
					if _, err := time.ParseDuration(r.For); err != nil {
						t.Errorf("alert %s: for %q is not a duration", r.Alert, r.For)
					}
				}
				if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") || strings.Count(r.Expr, "{") != strings.Count(r.Expr, "}") {
					t.Errorf("alert %s: unbalanced brackets in %q", r.Alert, r.Expr)
				}
			}
		}
		if n < 8 {
			t.Errorf("%d alert rules, want the set docs/observability.md describes", n)
		}
	})

	t.Run("the dashboard is Grafana JSON on the provisioned data source", func(t *testing.T) {
		var ds struct {
			Datasources []struct {
				UID  string `yaml:"uid"`
				Type string `yaml:"type"`
				URL  string `yaml:"url"`
			} `yaml:"datasources"`
		}
		loadYAML(t, datasourcePath, &ds)
		if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
			t.Fatalf("data sources %+v, want the compose prometheus service", ds.Datasources)
		}
		uid := ds.Datasources[0].UID
		d := loadDashboard(t)
		if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
			t.Fatalf("dashboard uid %q title %q with %d panels", d.UID, d.Title, len(d.Panels))
		}
		for _, p := range d.Panels {
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != uid || len(p.Targets) == 0 {
				t.Errorf("panel %q: data source %+v and %d queries, want data source %q", p.Title, p.Datasource, len(p.Targets), uid)
			}
		}
		var prov struct {
			Providers []struct {
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		loadYAML(t, dashProvPath, &prov)
		if len(prov.Providers) != 1 || !slices.Contains(composeMounts(t, "grafana"), prov.Providers[0].Options.Path) {
			t.Errorf("dashboard provider %+v does not read the mounted dashboards (%v)", prov.Providers, composeMounts(t, "grafana"))
		}
	})

	t.Run("compose runs them only in the monitoring profile, on loopback", func(t *testing.T) {
		var c struct {
			Services map[string]struct {
				Profiles []string `yaml:"profiles"`
				Ports    []string `yaml:"ports"`
			} `yaml:"services"`
		}
		loadYAML(t, "compose.yaml", &c)
		for _, name := range []string{"prometheus", "grafana"} {
			s, ok := c.Services[name]
			if !ok || !slices.Equal(s.Profiles, []string{"monitoring"}) {
				t.Errorf("service %s: %+v, want profile monitoring", name, s)
			}
			for _, p := range s.Ports {
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("service %s publishes %s beyond loopback", name, p)
				}
			}
		}
	})
}

// composeMounts returns the container paths a compose service mounts from files that exist
// in the repository (and its named volumes' paths).
func composeMounts(t *testing.T, service string) []string {
	t.Helper()
	var c struct {
		Services map[string]struct {
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	loadYAML(t, "compose.yaml", &c)
	var out []string
	for _, v := range c.Services[service].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		if strings.HasPrefix(parts[0], "./") {
			if _, err := os.Stat(filepath.Join(root(t), parts[0])); err != nil {
				t.Errorf("service %s mounts %s, which does not exist", service, parts[0])
			}
		}
		out = append(out, parts[1])
	}
	return out
}

var (
	// metricName finds the series names in a PromQL expression: this project's and the Go
	// client's process and runtime metrics; up is Prometheus's own.
	metricName = regexp.MustCompile(`\b((?:switchboard|process|go)_[a-zA-Z0-9_]+|up)\b`)
	// selector finds name{matchers}; labelEq finds its label="value" matchers.
	selector = regexp.MustCompile(`\b((?:switchboard|process|go)_[a-zA-Z0-9_]+)\{([^}]*)\}`)
	labelEq  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"`)
)

// TestMonitoringMetricsExist starts a node on a real Redis, scrapes its /metrics, and
// checks that every metric the dashboard and the alert rules query is there, and every
// label="value" they match on has a series (job and instance are Prometheus's own).
func TestMonitoringMetricsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Redis and a node")
	}
	bin := buildLikeDockerfile(t)
	redis := redistest.Start(t)
	addr := freeAddr(t)
	start(t, bin, []string{"PATH=" + os.Getenv("PATH"), "SWITCHBOARD_ADDR=" + addr, "SWITCHBOARD_REDIS=" + redis.URL(), "SWITCHBOARD_NODE_ID=metrics"})
	base := "http://" + addr
	testutil.WaitFor(t, 20*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, "the node to be ready")
	// One API request, so that the API latency histogram has a series.
	resp, err := http.Post(base+"/v1/users/alice/messages", "application/json", strings.NewReader(`{"hello":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST a message: %d", resp.StatusCode)
	}

	types, samples := scrape(t, base+"/metrics")
	exists := func(name string) bool {
		if _, ok := types[name]; ok || name == "up" {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && (types[base] == "histogram" || types[base] == "summary") {
				return true
			}
		}
		return false
	}
	for where, expr := range monitoringExprs(t) {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: no metric found in %q", where, expr)
		}
		for _, name := range names {
			if !exists(name) {
				t.Errorf("%s: metric %s is not in /metrics (%q)", where, name, expr)
			}
		}
		for _, sel := range selector.FindAllStringSubmatch(expr, -1) {
			for _, m := range labelEq.FindAllStringSubmatch(sel[2], -1) {
				if m[1] == "job" || m[1] == "instance" {
					continue
				}
				pair := m[1] + `="` + m[2] + `"`
				if !slices.ContainsFunc(samples[sel[1]], func(labels string) bool { return strings.Contains(labels, pair) }) {
					t.Errorf("%s: no series %s{%s} in /metrics", where, sel[1], pair)
				}
			}
		}
	}
}

// scrape reads a Prometheus text exposition: each family's type by name, and each
// sample's label text by its series name.
func scrape(t *testing.T, url string) (types map[string]string, samples map[string][]string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	types, samples = map[string]string{}, map[string][]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				types[f[0]] = f[1]
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
			if line[i] == '{' {
				labels = line[i:]
			}
		}
		samples[name] = append(samples[name], labels)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(types) == 0 {
		t.Fatal("/metrics has no metric families")
	}
	return types, samples
}
