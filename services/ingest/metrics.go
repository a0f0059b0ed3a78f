package ingest

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
)

// metrics counts requests and store writes. Metrics returns a snapshot;
// WritePrometheus renders it in the Prometheus text format (cmd/ingest
// serves it on SCIMCORD_METRICS_ADDR).
type metrics struct {
	mu       sync.Mutex
	requests map[reqKey]*reqStat
	writes   map[string]int64 // ok, conflict, unavailable
	// published counts events written, by kind (user, group, membership).
	published map[string]int64
	// latency is the request duration histogram (latencyBuckets, +Inf last).
	latency      [len(latencyBuckets) + 1]int64
	latencySum   float64
	latencyCount int64
}

// latencyBuckets are the upper bounds (seconds) of the request duration histogram.
var latencyBuckets = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func (m *metrics) publish(kind string) {
	m.mu.Lock()
	if m.published == nil {
		m.published = map[string]int64{}
	}
	m.published[kind]++
	m.mu.Unlock()
}

type reqKey struct{ method, resource, status string }

type reqStat struct {
	count   int64
	seconds float64
}

func newMetrics() *metrics {
	return &metrics{requests: map[reqKey]*reqStat{}, writes: map[string]int64{}}
}

func (m *metrics) request(method, resource string, status int, d time.Duration) {
	k := reqKey{methodLabel(method), resource, fmt.Sprint(status)}
	m.mu.Lock()
	st := m.requests[k]
	if st == nil {
		st = &reqStat{}
		m.requests[k] = st
	}
	st.count++
	st.seconds += d.Seconds()
	i := 0
	for i < len(latencyBuckets) && d.Seconds() > latencyBuckets[i] {
		i++
	}
	m.latency[i]++
	m.latencySum += d.Seconds()
	m.latencyCount++
	m.mu.Unlock()
}

func (m *metrics) write(result string) {
	m.mu.Lock()
	m.writes[result]++
	m.mu.Unlock()
}

// Metrics is a snapshot of the service's counters.
type Metrics struct {
	// Requests counts SCIM requests by "METHOD resource status".
	Requests map[string]int64 `json:"requests"`
	// Writes counts JetStream writes by result: ok, conflict, unavailable.
	Writes map[string]int64 `json:"writes"`
	// Watermark is the last stream sequence the view has applied.
	Watermark uint64 `json:"watermark"`
}

// Metrics returns a snapshot of the counters.
func (s *Service) Metrics() Metrics {
	out := Metrics{Requests: map[string]int64{}, Writes: map[string]int64{}}
	s.metrics.mu.Lock()
	for k, v := range s.metrics.requests {
		out.Requests[k.method+" "+k.resource+" "+k.status] = v.count
	}
	for k, v := range s.metrics.writes {
		out.Writes[k] = v
	}
	s.metrics.mu.Unlock()
	s.view.mu.RLock()
	out.Watermark = s.view.watermark
	s.view.mu.RUnlock()
	return out
}

// WritePrometheus writes the counters in the Prometheus text format.
func (s *Service) WritePrometheus(w io.Writer) {
	s.metrics.mu.Lock()
	keys := make([]reqKey, 0, len(s.metrics.requests))
	for k := range s.metrics.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b reqKey) int {
		return strings.Compare(a.method+a.resource+a.status, b.method+b.resource+b.status)
	})
	fmt.Fprintln(w, "# HELP scimcord_ingest_requests_total SCIM requests by method, resource type and status.")
	fmt.Fprintln(w, "# TYPE scimcord_ingest_requests_total counter")
	for _, k := range keys {
		fmt.Fprintf(w, "scimcord_ingest_requests_total{method=%q,resource=%q,status=%q} %d\n", k.method, k.resource, k.status, s.metrics.requests[k].count)
	}
	fmt.Fprintln(w, "# HELP scimcord_ingest_request_seconds_total Time spent answering SCIM requests.")
	fmt.Fprintln(w, "# TYPE scimcord_ingest_request_seconds_total counter")
	for _, k := range keys {
		fmt.Fprintf(w, "scimcord_ingest_request_seconds_total{method=%q,resource=%q,status=%q} %g\n", k.method, k.resource, k.status, s.metrics.requests[k].seconds)
	}
	fmt.Fprintln(w, "# HELP scimcord_ingest_store_writes_total JetStream writes by result.")
	fmt.Fprintln(w, "# TYPE scimcord_ingest_store_writes_total counter")
	for _, r := range []string{"ok", "conflict", "unavailable"} {
		fmt.Fprintf(w, "scimcord_ingest_store_writes_total{result=%q} %d\n", r, s.metrics.writes[r])
	}
	fmt.Fprintln(w, "# HELP scimcord_ingest_events_published_total Events (state changes) written to JetStream, by kind.")
	fmt.Fprintln(w, "# TYPE scimcord_ingest_events_published_total counter")
	for _, k := range []string{"user", "group", "membership"} {
		fmt.Fprintf(w, "scimcord_ingest_events_published_total{kind=%q} %d\n", k, s.metrics.published[k])
	}
	fmt.Fprintln(w, "# HELP scimcord_ingest_request_duration_seconds SCIM request latency.")
	fmt.Fprintln(w, "# TYPE scimcord_ingest_request_duration_seconds histogram")
	var cum int64
	for i, le := range latencyBuckets {
		cum += s.metrics.latency[i]
		fmt.Fprintf(w, "scimcord_ingest_request_duration_seconds_bucket{le=\"%g\"} %d\n", le, cum)
	}
	cum += s.metrics.latency[len(latencyBuckets)]
	fmt.Fprintf(w, "scimcord_ingest_request_duration_seconds_bucket{le=\"+Inf\"} %d\n", cum)
	fmt.Fprintf(w, "scimcord_ingest_request_duration_seconds_sum %g\n", s.metrics.latencySum)
	fmt.Fprintf(w, "scimcord_ingest_request_duration_seconds_count %d\n", s.metrics.latencyCount)
	s.metrics.mu.Unlock()
	s.view.mu.RLock()
	wm := s.view.watermark
	s.view.mu.RUnlock()
	fmt.Fprintln(w, "# HELP scimcord_ingest_view_watermark Last resource stream sequence applied to the in-memory view.")
	fmt.Fprintln(w, "# TYPE scimcord_ingest_view_watermark gauge")
	fmt.Fprintf(w, "scimcord_ingest_view_watermark %d\n", wm)
}

// MetricsHandler serves WritePrometheus.
func (s *Service) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.WritePrometheus(w)
	})
}

// methodLabel is the metrics label and span-name part of a request method:
// the methods SCIM and HTTP know, anything else "_OTHER" (the method is
// client input: one series or span name per invented method would grow
// without bound).
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// kindLabel is the kind label of scimcord_ingest_events_published_total.
func kindLabel(k eventv1.ResourceKind) string {
	switch k {
	case eventv1.ResourceKind_RESOURCE_KIND_USER:
		return "user"
	case eventv1.ResourceKind_RESOURCE_KIND_GROUP:
		return "group"
	case eventv1.ResourceKind_RESOURCE_KIND_MEMBERSHIP:
		return "membership"
	}
	return "other"
}

// resourceLabel is the metrics label of a request path.
func (s *Service) resourceLabel(path string) string {
	if !hasPrefixFold(path, s.cfg.BasePath) {
		return "other"
	}
	seg, _, _ := strings.Cut(strings.Trim(path[len(s.cfg.BasePath):], "/"), "/")
	switch strings.ToLower(seg) {
	case "users":
		return "Users"
	case "groups":
		return "Groups"
	case "bulk":
		return "Bulk"
	case ".search":
		return "search"
	case "serviceproviderconfig", "serviceconfiguration", "resourcetypes", "schemas":
		return "discovery"
	case "roles", "entitlements":
		return "Roles"
	}
	return "other"
}
