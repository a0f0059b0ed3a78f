package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scimcord/scimcord/pkg/telemetry"
)

// exportOne sends one span through a provider built from env and flushes it.
func exportOne(t *testing.T, env map[string]string) {
	t.Helper()
	ctx := context.Background()
	tp, err := telemetry.NewProvider(ctx, "scimcord-test", telemetry.FromEnv(func(k string) string { return env[k] }))
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("t").Start(ctx, "endpoint-span")
	span.End()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = tp.Shutdown(sctx)
}

// TestOTLPEndpoints_SignalURLAsIsBaseGetsThePath: per the OTel spec the
// signal-specific OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is a URL used as is,
// and the base OTEL_EXPORTER_OTLP_ENDPOINT gets /v1/traces appended (the
// full URL used to be handed to WithEndpoint, which wants host:port).
func TestOTLPEndpoints_SignalURLAsIsBaseGetsThePath(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	paths := map[string]int{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths[r.URL.Path]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hs.Close)
	for _, tc := range []struct {
		name, want string
		env        map[string]string
	}{
		{"signal URL with its own path", "/custom/v1/traces", map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": hs.URL + "/custom/v1/traces"}},
		{"base URL", "/v1/traces", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": hs.URL}},
		{"base URL with a path", "/otel/v1/traces", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": hs.URL + "/otel/"}},
		{"signal URL wins over the base", "/sig/v1/traces", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": hs.URL + "/base", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": hs.URL + "/sig/v1/traces"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
			for k, v := range tc.env {
				env[k] = v
			}
			exportOne(t, env)
			mu.Lock()
			defer mu.Unlock()
			if paths[tc.want] == 0 {
				t.Fatalf("no export to %s; got %v", tc.want, paths)
			}
		})
	}
}

// TestOTLPEndpoints_GRPCSignalURL: a URL in the traces variable reaches a
// gRPC receiver too.
func TestOTLPEndpoints_GRPCSignalURL(t *testing.T) {
	t.Parallel()
	rcv, addr := startReceiver(t)
	exportOne(t, map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://" + addr})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.spans["endpoint-span"] == "" {
		t.Fatalf("receiver got %v", rcv.spans)
	}
}

// TestSampler_UnsampledRemoteParentIsStillSampled: an IdP's traceparent
// with flags 00 used to be continued unsampled (traceresponse -00, a trace id
// never exported); scimcord samples its spans anyway, in the caller's trace.
// OTEL_TRACES_SAMPLER hands the choice back to the SDK.
func TestSampler_UnsampledRemoteParentIsStillSampled(t *testing.T) {
	t.Parallel()
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	for _, tc := range []struct {
		name    string
		sampler string
		want    bool
	}{
		{"default", "", true},
		{"OTEL_TRACES_SAMPLER=parentbased_always_on", "parentbased_always_on", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			cfg := telemetry.FromEnv(func(k string) string {
				return map[string]string{"OTEL_TRACES_SAMPLER": tc.sampler}[k]
			})
			cfg.Exporter = ""
			cfg.SpanProcessors = append(cfg.SpanProcessors, rec)
			tp, err := telemetry.NewProvider(context.Background(), "scimcord-test", cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := telemetry.Propagator().Extract(context.Background(), propagation.MapCarrier{"traceparent": parent})
			_, span := tp.Tracer("t").Start(ctx, "server")
			span.End()
			sc := span.SpanContext()
			if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Fatalf("trace id %s: want the caller's", sc.TraceID())
			}
			if sc.IsSampled() != tc.want || (len(rec.Ended()) == 1) != tc.want {
				t.Fatalf("sampled %v, recorded %d spans; want sampled %v", sc.IsSampled(), len(rec.Ended()), tc.want)
			}
		})
	}
}
