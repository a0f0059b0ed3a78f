package applier

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/scimcord/scimcord/pkg/eventbus"
)

// writeAdminMetrics adds the gauges the alerts and the dashboard use
// (deploy/prometheus, deploy/grafana): members by sync status, the consumer
// lag by consumer name and Discord's invalid requests of the last 10 minutes.
func (s *Service) writeAdminMetrics(ctx context.Context, w io.Writer) {
	fmt.Fprintln(w, "# HELP scimcord_applier_members Members by tenant, guild and sync status.")
	fmt.Fprintln(w, "# TYPE scimcord_applier_members gauge")
	counts := s.MemberCounts()
	keys := make([][3]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		return a[0]+"|"+a[1]+"|"+a[2] < b[0]+"|"+b[1]+"|"+b[2]
	})
	for _, k := range keys {
		fmt.Fprintf(w, "scimcord_applier_members{tenant=%q,guild=%q,status=%q} %d\n", k[0], k[1], k[2], counts[k])
	}
	fmt.Fprintln(w, "# HELP scimcord_applier_applies_total Applies (reconciles that recorded a status) by outcome, the sync status they ended in.")
	fmt.Fprintln(w, "# TYPE scimcord_applier_applies_total counter")
	s.admin.mu.Lock()
	for _, st := range []State{StateInSync, StatePending, StateRetrying, StateFailed, StatePendingLink, StatePendingJoin} {
		fmt.Fprintf(w, "scimcord_applier_applies_total{outcome=%q} %d\n", st, s.admin.outcome[st])
	}
	s.admin.mu.Unlock()
	if c, err := s.deps.JS.Consumer(ctx, eventbus.ResourceStream, s.cfg.Durable); err == nil {
		if info, err := c.Info(ctx); err == nil {
			fmt.Fprintln(w, "# HELP scimcord_applier_consumer_pending Records not yet delivered to the consumer (lag).")
			fmt.Fprintln(w, "# TYPE scimcord_applier_consumer_pending gauge")
			fmt.Fprintf(w, "scimcord_applier_consumer_pending{consumer=%q} %d\n", s.cfg.Durable, info.NumPending)
			fmt.Fprintln(w, "# TYPE scimcord_applier_consumer_redelivered gauge")
			fmt.Fprintf(w, "scimcord_applier_consumer_redelivered{consumer=%q} %d\n", s.cfg.Durable, info.NumRedelivered)
		}
	}
	// Counters the alerts use are exported from zero, so that rate() and
	// increase() see their first increment.
	have := s.metrics.snapshot().Counters
	for _, k := range []string{"brake_held", "changes", "dead_letters", "drift_fixes", "drift_runs", "rate_limited", "reconciles", "retries"} {
		if _, ok := have[k]; !ok {
			fmt.Fprintf(w, "# TYPE scimcord_applier_%s_total counter\nscimcord_applier_%s_total 0\n", k, k)
		}
	}
	if d := s.admin.discord; d != nil {
		d.mu.Lock()
		fmt.Fprintln(w, "# HELP scimcord_applier_discord_requests_total Discord calls by route, HTTP status and Discord error code.")
		fmt.Fprintln(w, "# TYPE scimcord_applier_discord_requests_total counter")
		keys := make([][3]string, 0, len(d.calls))
		for k := range d.calls {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			return keys[i][0]+"|"+keys[i][1]+"|"+keys[i][2] < keys[j][0]+"|"+keys[j][1]+"|"+keys[j][2]
		})
		for _, k := range keys {
			fmt.Fprintf(w, "scimcord_applier_discord_requests_total{route=%q,status=%q,code=%q} %d\n", k[0], k[1], k[2], d.calls[k])
		}
		fmt.Fprintln(w, "# HELP scimcord_applier_discord_request_duration_seconds Discord call latency by route.")
		fmt.Fprintln(w, "# TYPE scimcord_applier_discord_request_duration_seconds histogram")
		for _, r := range sortedKeys(d.latency) {
			d.latency[r].write(w, "scimcord_applier_discord_request_duration_seconds", fmt.Sprintf("route=%q,", r))
		}
		fmt.Fprintln(w, "# HELP scimcord_applier_ratelimit_wait_seconds Time a Discord call waited for the applier's rate limiter.")
		fmt.Fprintln(w, "# TYPE scimcord_applier_ratelimit_wait_seconds histogram")
		d.waits.write(w, "scimcord_applier_ratelimit_wait_seconds", "")
		fmt.Fprintln(w, "# HELP scimcord_applier_discord_429_total Discord 429 answers by X-RateLimit-Scope (user, global, shared, unknown).")
		fmt.Fprintln(w, "# TYPE scimcord_applier_discord_429_total counter")
		for _, sc := range []string{"user", "global", "shared", "unknown"} {
			fmt.Fprintf(w, "scimcord_applier_discord_429_total{scope=%q} %d\n", sc, d.r429[sc])
		}
		d.mu.Unlock()
	}
	fmt.Fprintln(w, "# HELP scimcord_applier_discord_invalid_requests_10m Discord 401/403/429 answers in the last 10 minutes (ban at 10000).")
	fmt.Fprintln(w, "# TYPE scimcord_applier_discord_invalid_requests_10m gauge")
	fmt.Fprintf(w, "scimcord_applier_discord_invalid_requests_10m %d\n", s.InvalidRequests10m())
}
