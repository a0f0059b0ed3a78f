package ingest_test

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/services/ingest"
)

// promValue reads one series' value from the Prometheus text (-1: absent).
func promValue(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMetrics_InventedMethodsShareOneSeriesAndSpanName: the method is client
// input (even unauthenticated); an invented one is "_OTHER" in the metric
// labels and the span name, so a client cannot grow the series without bound.
func TestMetrics_InventedMethodsShareOneSeriesAndSpanName(t *testing.T) {
	t.Parallel()
	var spans syncBuffer
	tp, err := telemetry.NewProvider(context.Background(), "scimcord-ingest", telemetry.Config{Exporter: "console", Console: &spans})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 1, func(_ *ingest.Config, d *ingest.Deps) { d.TracerProvider = tp.TracerProvider })
	for _, m := range []string{"NOAUTH23138", "NOAUTH4711", "FROB"} {
		e.doOn(0, "", m, "/Users", nil, nil)
		e.doOn(0, tokenA, m, "/Frobs/x", nil, nil)
	}
	e.do("GET", "/Users", nil)
	var prom bytes.Buffer
	e.svcs[0].WritePrometheus(&prom)
	text := prom.String()
	if strings.Contains(text, "NOAUTH") || strings.Contains(text, "FROB") || strings.Contains(text, "Frobs") {
		t.Fatalf("an invented method or resource became a label:\n%s", text)
	}
	var other float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, `scimcord_ingest_requests_total{method="_OTHER"`) {
			v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			other += v
		}
	}
	if other != 6 {
		t.Fatalf("_OTHER requests = %v, want 6:\n%s", other, text)
	}
	if promValue(t, text, `scimcord_ingest_requests_total{method="GET",resource="Users",status="200"}`) != 1 {
		t.Fatalf("GET Users 200 not counted once:\n%s", text)
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := spans.String()
	if strings.Contains(out, `"Name":"SCIM NOAUTH`) || strings.Contains(out, `"Name":"SCIM FROB`) || !strings.Contains(out, `"Name":"SCIM _OTHER"`) {
		t.Fatalf("span names of invented methods: want only \"SCIM _OTHER\":\n%.3000s", out)
	}
}

// TestMetrics_EventsPublishedCountsEachKind: the counter's value moves with
// every write, per kind (it stayed 0: the kind label was "resource_kind_user").
func TestMetrics_EventsPublishedCountsEachKind(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	uid := e.mustCreateUser("published@example.com")
	if r := e.do("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"},
		"displayName": "Published", "members": []map[string]any{{"value": uid}}}); r.status != 201 {
		t.Fatalf("create group: %d %s", r.status, r.raw)
	}
	var prom bytes.Buffer
	e.svcs[0].WritePrometheus(&prom)
	text := prom.String()
	for kind, want := range map[string]float64{"user": 1, "group": 1, "membership": 1} {
		if got := promValue(t, text, `scimcord_ingest_events_published_total{kind="`+kind+`"}`); got < want {
			t.Errorf("events_published_total{kind=%q} = %v, want ≥ %v", kind, got, want)
		}
	}
	if strings.Contains(text, "resource_kind") {
		t.Errorf("a raw enum name became a label:\n%s", text)
	}
}
