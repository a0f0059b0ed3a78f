package mapping

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// metrics counts what the service does (Prometheus text at MetricsHandler).
type metrics struct {
	resolves      atomic.Int64 // members resolved (unary, batch and stream)
	resolveErrors atomic.Int64 // malformed resolve requests
	explains      atomic.Int64
	previews      atomic.Int64
	writes        atomic.Int64 // rule-set puts and deletes stored
	writeRejected atomic.Int64 // refused as invalid
	writeConflict atomic.Int64 // lost compare-and-set
	panics        atomic.Int64 // gRPC handlers that panicked (answered INTERNAL)
	seedStale     atomic.Int64 // rule sets not seeded: the rules file is older than the stored generation
}

// MetricsHandler serves the service's metrics in the Prometheus text format
// (the cmd main mounts it at /metrics on SCIMCORD_METRICS_ADDR).
func (s *Service) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var b strings.Builder
		counter := func(name, help string, v int64) {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
		}
		m := &s.metrics
		counter("scimcord_mapping_resolves_total", "Members resolved.", m.resolves.Load())
		counter("scimcord_mapping_resolve_errors_total", "Resolve requests refused as malformed.", m.resolveErrors.Load())
		counter("scimcord_mapping_explains_total", "Explain calls.", m.explains.Load())
		counter("scimcord_mapping_previews_total", "Preview calls.", m.previews.Load())
		counter("scimcord_mapping_rule_writes_total", "Rule-set writes (put, delete) stored.", m.writes.Load())
		counter("scimcord_mapping_rule_writes_rejected_total", "Rule-set writes refused as invalid.", m.writeRejected.Load())
		counter("scimcord_mapping_rule_write_conflicts_total", "Rule-set writes that lost a compare-and-set.", m.writeConflict.Load())
		counter("scimcord_mapping_grpc_panics_total", "gRPC handlers that panicked (answered INTERNAL, process kept).", m.panics.Load())
		counter("scimcord_mapping_seed_stale_total", "Rule sets this replica did not seed because its rules file is older than the stored generation.", m.seedStale.Load())
		b.WriteString("# HELP scimcord_mapping_rule_set_version Version of the rule set served, per tenant and guild.\n# TYPE scimcord_mapping_rule_set_version gauge\n")
		for _, rs := range s.rules.all() {
			fmt.Fprintf(&b, "scimcord_mapping_rule_set_version{tenant=%q,guild=%q} %d\n", rs.Tenant, rs.Guild, rs.Version)
		}
		b.WriteString("# HELP scimcord_mapping_rules Rules in the rule set served, per tenant and guild.\n# TYPE scimcord_mapping_rules gauge\n")
		for _, rs := range s.rules.all() {
			fmt.Fprintf(&b, "scimcord_mapping_rules{tenant=%q,guild=%q} %d\n", rs.Tenant, rs.Guild, rs.Len())
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte(b.String()))
	})
}
