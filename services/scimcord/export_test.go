package scimcord_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/services/scimcord"
)

// otlpReceiver is a real OTLP/gRPC trace receiver on a loopback port.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string]map[string]bool // trace id → "service/span name"
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
				tid := bytesHex(sp.GetTraceId())
				if r.spans[tid] == nil {
					r.spans[tid] = map[string]bool{}
				}
				r.spans[tid][svc+"/"+sp.GetName()] = true
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func bytesHex(b []byte) string {
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, len(b)*2)
	for _, c := range b {
		out = append(out, hexd[c>>4], hexd[c&15])
	}
	return string(out)
}

// TestTrace_OTLPExportFromTheRunningSystem exports over OTLP/gRPC to an
// in-process receiver and finds one trace with the spans of all three
// services.
func TestTrace_OTLPExportFromTheRunningSystem(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{spans: map[string]map[string]bool{}}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, rcv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	sys, stop := startWith(t, func(c *scimcord.Config) {
		c.Telemetry = telemetry.FromEnv(func(k string) string {
			return map[string]string{
				"OTEL_TRACES_EXPORTER":        "otlp",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + lis.Addr().String(),
				"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			}[k]
		})
	})
	_, tr := scim(t, sys, "POST", "/Users", userBody("otlp@example.com", member1), 201)
	waitRoles(t, sys.Emulator(), member1, roleStaff)
	waitStatus(t, sys, firstUserID(t, sys, "otlp@example.com"), "in_sync")
	stop() // flushes the three providers

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	got := rcv.spans[tr]
	for _, want := range []string{
		"scimcord-ingest/SCIM POST",
		"scimcord-ingest/publish KV_scim",
		"scimcord-applier/applier.process",
		"scimcord-applier/scimcord.mapping.v1.MappingService/ResolveRoles",
		"scimcord-mapping/scimcord.mapping.v1.MappingService/ResolveRoles",
		"scimcord-applier/discord PUT /guilds/{id}/members/{id}/roles/{id}",
	} {
		if !got[want] {
			t.Errorf("trace %s at the receiver lacks %s; got %v", tr, want, got)
		}
	}
}

func firstUserID(t *testing.T, sys *scimcord.System, userName string) string {
	t.Helper()
	users, _ := scim(t, sys, "GET", "/Users?filter="+strings.ReplaceAll(`userName eq "`+userName+`"`, " ", "%20"), nil, 200)
	rs, _ := users["Resources"].([]any)
	if len(rs) != 1 {
		t.Fatalf("user %s: %v", userName, users)
	}
	return rs[0].(map[string]any)["id"].(string)
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecrets_NoTokenInAnySpanOrLogLine runs a full scenario — creates,
// PATCHes, a failing Discord call, bad tokens, every CLI command — with the
// console exporter and debug JSON logs captured, and scans every span and
// log line for the SCIM token, the admin token and the bot token.
func TestSecrets_NoTokenInAnySpanOrLogLine(t *testing.T) {
	t.Parallel()
	var spans, logs syncBuffer
	const botToken = "emu-dev-bot-token"
	const wrongToken = "wrong-scim-token-that-must-not-leak"
	cfg := scimcord.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.EmulatorAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DevToken, cfg.AdminToken = testToken, testAdminToken
	cfg.MappingFile, cfg.FixtureFile = "../../deploy/dev/mapping.yaml", "../../deploy/dev/guild.yaml"
	cfg.Telemetry = telemetry.Config{Exporter: "console", Console: &spans}
	sys, stop := runSystem(t, cfg, scimcord.Deps{Logger: telemetry.NewLogger(&logs, slog.LevelDebug)})

	sc := newScenario(t, sys)
	t.Cleanup(func() {
		if t.Failed() {
			st, err := sys.Applier().Status(context.Background(), scimcord.DevTenantID, devGuild, sc.aliceID)
			t.Logf("diagnostics: alice status %+v %v", st, err)
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "WARN") || strings.Contains(l, "ERROR") || strings.Contains(l, sc.aliceID) {
					t.Logf("log: %s", l)
				}
			}
		}
	})
	scim(t, sys, "PATCH", "/Users/"+sc.aliceID, patchOp("replace", "active", false), 200, 204)
	waitRoles(t, sys.Emulator(), member1)
	for _, tok := range []string{wrongToken, testAdminToken} {
		req, _ := http.NewRequest("GET", sys.BaseURL()+"/Users", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	req, _ := http.NewRequest("GET", sys.HTTPURL()+"/admin/api/v1/overview", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	mustCLI(t, sys, "status", "bob@example.com")
	mustCLI(t, sys, "explain", "alice@example.com")
	mustCLI(t, sys, "dlq", "list")
	mustCLI(t, sys, "reconcile", devGuild, "--dry-run")
	_, _ = cliRun(t, sys, testAdminToken, "dlq", "replay", "--all")
	_, _ = cliRun(t, sys, wrongToken, "dlq", "list")
	stop() // flushes the console exporters

	// The scan must not be vacuous: spans of all three services, log lines
	// with trace ids.
	services := map[string]int{}
	nSpans := 0
	dec := json.NewDecoder(strings.NewReader(spans.String()))
	for dec.More() {
		var sp struct {
			Resource []struct {
				Key   string
				Value struct{ Value any }
			}
		}
		if err := dec.Decode(&sp); err != nil {
			t.Fatalf("console output is not stdouttrace JSON: %v", err)
		}
		nSpans++
		for _, a := range sp.Resource {
			if a.Key == "service.name" {
				services[a.Value.Value.(string)]++
			}
		}
	}
	if services["scimcord-ingest"] == 0 || services["scimcord-mapping"] == 0 || services["scimcord-applier"] == 0 {
		t.Fatalf("console spans by service: %v", services)
	}
	nLines, withTrace := 0, 0
	sc2 := bufio.NewScanner(strings.NewReader(logs.String()))
	sc2.Buffer(make([]byte, 1<<20), 1<<20)
	for sc2.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc2.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", sc2.Text())
		}
		nLines++
		_, ok := line["trace_id"]
		if ok {
			withTrace++
		}
		// What a request or an event logs (warnings and errors of the
		// services) carries its trace.
		if svc, _ := line["service"].(string); !ok && svc != "" && line["component"] == nil && (line["level"] == "WARN" || line["level"] == "ERROR") {
			t.Errorf("log line of a request or event without trace_id: %s", sc2.Text())
		}
	}
	if nLines == 0 || withTrace == 0 {
		t.Fatalf("%d log lines, %d with a trace id", nLines, withTrace)
	}
	for name, text := range map[string]string{"spans": spans.String(), "logs": logs.String()} {
		for _, secret := range []string{testToken, testAdminToken, botToken, wrongToken} {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("%s contain %q: …%s…", name, secret, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
	t.Logf("scanned %d spans (%v) and %d log lines (%d with trace ids)", nSpans, services, nLines, withTrace)
}
