package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/scimcord/scimcord/pkg/telemetry"
)

// otlpReceiver is a real OTLP/gRPC trace receiver on a loopback port.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string]string // span name → service.name
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				svc = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				r.spans[sp.GetName()] = svc
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func startReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{spans: map[string]string{}}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, rcv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return rcv, lis.Addr().String()
}

func TestNewProvider_OTLPgRPCReachesReceiver(t *testing.T) {
	t.Parallel()
	rcv, addr := startReceiver(t)
	cfg := telemetry.FromEnv(func(k string) string {
		return map[string]string{
			"OTEL_TRACES_EXPORTER":        "otlp",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		}[k]
	})
	ctx := context.Background()
	tp, err := telemetry.NewProvider(ctx, "scimcord-test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("t").Start(ctx, "otlp-span")
	span.End()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(sctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if got := rcv.spans["otlp-span"]; got != "scimcord-test" {
		t.Fatalf("receiver got spans %v, want otlp-span from scimcord-test", rcv.spans)
	}
}

func TestNewProvider_ConsoleWritesStdouttraceJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	ctx := context.Background()
	tp, err := telemetry.NewProvider(ctx, "scimcord-ingest", telemetry.Config{Exporter: "console", Console: &buf})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("t").Start(ctx, "console-span")
	span.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Name     string
		Resource []struct {
			Key   string
			Value struct{ Value any }
		}
	}
	out := buf.String()
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&got); err != nil {
		t.Fatalf("console output is not stdouttrace JSON: %v: %q", err, out)
	}
	if got.Name != "console-span" || !strings.Contains(out, "scimcord-ingest") {
		t.Fatalf("console span: %+v", got)
	}
}

func TestConfig_ValidateRejectsUnknownExporter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg telemetry.Config
		ok  bool
	}{
		{telemetry.Config{}, true},
		{telemetry.Config{Exporter: "none"}, true},
		{telemetry.Config{Exporter: "zipkin"}, false},
		{telemetry.Config{Exporter: "otlp", OTLPProtocol: "http/json"}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

func TestNewLogger_StampsTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, 0)
	tp, _ := telemetry.NewProvider(context.Background(), "x", telemetry.Config{})
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	log.InfoContext(ctx, "hello")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["trace_id"] != span.SpanContext().TraceID().String() || line["span_id"] == nil {
		t.Fatalf("log line without trace ids: %v", line)
	}
}

func TestNewProvider_OTELServiceNameOverridesTheDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ env, want string }{{"", "scimcord-ingest"}, {"ingest-eu-1", "ingest-eu-1"}} {
		var buf bytes.Buffer
		cfg := telemetry.FromEnv(func(k string) string {
			return map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": tc.env}[k]
		})
		cfg.Console = &buf
		ctx := context.Background()
		tp, err := telemetry.NewProvider(ctx, "scimcord-ingest", cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, span := tp.Tracer("t").Start(ctx, "s")
		span.End()
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), `"Value":"`+tc.want+`"`) {
			t.Errorf("OTEL_SERVICE_NAME=%q: service.name %q not in %s", tc.env, tc.want, buf.String())
		}
	}
}
