package applier

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/scimcord/scimcord/pkg/eventbus"
)

// metrics counts what the applier did. Snapshot returns a copy; the cmd main
// can expose it.
type metrics struct {
	mu       sync.Mutex
	calls    map[string]int64 // "route status" → count
	counters map[string]int64
}

func newMetrics() *metrics {
	return &metrics{calls: map[string]int64{}, counters: map[string]int64{}}
}

func (m *metrics) call(route, status string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.calls[route+"|"+status]++
	m.mu.Unlock()
}

func (m *metrics) inc(name string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.counters[name]++
	m.mu.Unlock()
}

// Metrics is a snapshot of the applier's counters.
type Metrics struct {
	// Calls counts Discord calls by "METHOD route|status".
	Calls map[string]int64 `json:"calls"`
	// Counters: reconciles, coalesced, retries, dead_letters, rate_limited, …
	Counters map[string]int64 `json:"counters"`
	// Limiter is the rate limiter's view.
	Limiter LimiterStats `json:"limiter"`
}

func (m *metrics) snapshot() Metrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := Metrics{Calls: map[string]int64{}, Counters: map[string]int64{}}
	for k, v := range m.calls {
		out.Calls[k] = v
	}
	for k, v := range m.counters {
		out.Counters[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// MetricsHandler serves the counters in the Prometheus text format.
func (s *Service) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := s.Metrics()
		if c, err := s.deps.JS.Consumer(r.Context(), eventbus.ResourceStream, s.cfg.Durable); err == nil {
			if info, err := c.Info(r.Context()); err == nil {
				fmt.Fprintf(w, "# HELP scimcord_applier_queue_pending Records not yet delivered to the applier (queue lag).\n# TYPE scimcord_applier_queue_pending gauge\nscimcord_applier_queue_pending %d\n", info.NumPending)
				fmt.Fprintf(w, "# TYPE scimcord_applier_queue_in_flight gauge\nscimcord_applier_queue_in_flight %d\n", info.NumAckPending)
				fmt.Fprintf(w, "# TYPE scimcord_applier_queue_redelivered gauge\nscimcord_applier_queue_redelivered %d\n", info.NumRedelivered)
			}
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# HELP scimcord_applier_discord_calls_total Discord calls by route and status.")
		fmt.Fprintln(w, "# TYPE scimcord_applier_discord_calls_total counter")
		for _, k := range sortedKeys(m.Calls) {
			i := strings.LastIndex(k, "|")
			route, status := k, ""
			if i > 0 {
				route, status = k[:i], k[i+1:]
			}
			fmt.Fprintf(w, "scimcord_applier_discord_calls_total{route=%q,status=%q} %d\n", route, status, m.Calls[k])
		}
		for _, k := range sortedKeys(m.Counters) {
			fmt.Fprintf(w, "# TYPE scimcord_applier_%s_total counter\nscimcord_applier_%s_total %d\n", k, k, m.Counters[k])
		}
		fmt.Fprintf(w, "# TYPE scimcord_applier_ratelimit_429_total counter\nscimcord_applier_ratelimit_429_total %d\n", m.Limiter.RateLimited)
		fmt.Fprintf(w, "# TYPE scimcord_applier_ratelimit_waits_total counter\nscimcord_applier_ratelimit_waits_total %d\n", m.Limiter.Waits)
		fmt.Fprintf(w, "# TYPE scimcord_applier_ratelimit_deferred_total counter\nscimcord_applier_ratelimit_deferred_total %d\n", m.Limiter.Deferred)
		s.writeAdminMetrics(r.Context(), w)
	})
}
