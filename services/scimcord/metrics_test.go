package scimcord_test

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMetrics_EveryNameTheAlertsAndDashboardUse scrapes the all-in-one's
// /metrics after a scenario and finds every scimcord_* series that the
// Prometheus alerts and the Grafana dashboard in deploy/ query.
func TestMetrics_EveryNameTheAlertsAndDashboardUse(t *testing.T) {
	t.Parallel()
	sys, _ := startWith(t, nil)
	newScenario(t, sys)
	if sys.MetricsURL() == "" {
		t.Fatal("no metrics listener")
	}
	resp, err := http.Get(sys.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	scrape := string(raw)
	have := map[string]bool{}
	for _, line := range strings.Split(scrape, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		have[name] = true
	}
	re := regexp.MustCompile(`scimcord_[a-z0-9_]+`)
	for _, f := range []string{"../../deploy/prometheus/scimcord-alerts.yaml", "../../deploy/grafana/scimcord-dashboard.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range re.FindAllString(string(data), -1) {
			if !have[name] {
				t.Errorf("%s uses %s, not exported", f, name)
			}
		}
	}
	for _, want := range []string{
		`scimcord_applier_members{tenant="dev",guild="1100000000000000000",status="failed"} 1`,
		`scimcord_applier_consumer_pending{consumer="applier"}`,
		`scimcord_ingest_events_published_total{kind="membership"}`,
		`scimcord_applier_discord_invalid_requests_10m 1`,
		`scimcord_applier_discord_requests_total{route="PUT /guilds/{g}/members/{u}/roles/{r}",status="403",code="50013"} 1`,
		`scimcord_applier_discord_request_duration_seconds_bucket{route="GET /guilds/{g}/members/{u}",le="+Inf"}`,
		`scimcord_applier_ratelimit_wait_seconds_count`,
		`scimcord_applier_discord_429_total{scope="global"} 0`,
		`scimcord_ingest_request_duration_seconds_count`,
		`scimcord_applier_applies_total{outcome="failed"} 1`,
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// metricFamilies scrapes the all-in-one's /metrics after a scenario and
// returns the exported metric families (histogram suffixes folded) and the
// whole text.
func metricFamilies(t *testing.T) (map[string]bool, string) {
	t.Helper()
	sys, _ := startWith(t, nil)
	newScenario(t, sys)
	resp, err := http.Get(sys.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fams := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && strings.Contains(string(raw), "# TYPE "+base+" histogram") {
				name = base
			}
		}
		fams[name] = true
	}
	return fams, string(raw)
}

// readmeMetrics returns the metric names of the README's metrics table
// ("`…_x`" abbreviates the prefix of the first name of its cell), true for
// the counters that "appear at their first increment" (a scenario need not
// export them).
func readmeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(data), "\n## Metrics\n")
	table, _, _ = strings.Cut(table, "\n## ")
	out := map[string]bool{}
	name := regexp.MustCompile("`((?:scimcord|…)_[a-z0-9_{},]+)`")
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		cell, lazy := cells[1], strings.Contains(line, "appear at their first increment")
		prefix := ""
		for _, m := range name.FindAllStringSubmatch(cell, -1) {
			n := m[1]
			if strings.HasPrefix(n, "…_") {
				n = prefix + strings.TrimPrefix(n, "…_")
			} else {
				parts := strings.SplitN(n, "_", 3) // scimcord_<service>_…
				if len(parts) == 3 {
					prefix = parts[0] + "_" + parts[1] + "_"
				}
			}
			out[n] = lazy
		}
	}
	return out
}

// TestMetrics_ReadmeTableListsEveryExportedName: the README's metrics table
// documents every exported family, and names nothing that is not exported.
func TestMetrics_ReadmeTableListsEveryExportedName(t *testing.T) {
	t.Parallel()
	fams, _ := metricFamilies(t)
	doc := readmeMetrics(t)
	for n := range fams {
		if _, ok := doc[n]; strings.HasPrefix(n, "scimcord_") && !ok {
			t.Errorf("%s is exported but not in the README metrics table", n)
		}
	}
	for n, lazy := range doc {
		if !fams[n] && !lazy {
			t.Errorf("the README metrics table lists %s, which is not exported", n)
		}
	}
}
