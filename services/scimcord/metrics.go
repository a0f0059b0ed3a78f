package scimcord

import (
	"net/http"

	"github.com/scimcord/scimcord/services/applier"
	"github.com/scimcord/scimcord/services/ingest"
	"github.com/scimcord/scimcord/services/mapping"
)

// metricsMux serves the Prometheus text of the three services on one
// /metrics: the metric names are prefixed by service (scimcord_ingest_…,
// scimcord_mapping_…, scimcord_applier_…), so they never collide.
func metricsMux(i *ingest.Service, m *mapping.Service, a *applier.Service) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		i.WritePrometheus(w)
		m.MetricsHandler().ServeHTTP(w, r)
		a.MetricsHandler().ServeHTTP(w, r)
	})
	return mux
}
