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
		`scimcord_applier_discord_requests_total{route="PUT /guilds/{id}/members/{id}/roles/{id}",status="403",code="50013"} 1`,
		`scimcord_applier_discord_request_duration_seconds_bucket{route="GET /guilds/{id}/members/{id}",le="+Inf"}`,
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
