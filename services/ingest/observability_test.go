package ingest_test

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/services/ingest"
)

// syncBuffer is a goroutine-safe log sink.
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

var traceresponseRe = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$`)

func TestTraceResponseAndNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	tp, err := telemetry.NewProvider(context.Background(), "scimcord-ingest", telemetry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	var svc *ingest.Service
	e := newEnv(t, 1, func(_ *ingest.Config, d *ingest.Deps) {
		d.TracerProvider = tp.TracerProvider
		d.Logger = telemetry.NewLogger(logs, slog.LevelDebug)
	})
	svc = e.svcs[0]

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := e.doOn(0, tokenA, "POST", "/Users", userBody("traced@example.com"), map[string]string{"traceparent": parent})
	m := traceresponseRe.FindStringSubmatch(r.header.Get("traceresponse"))
	if r.status != 201 || m == nil || m[1] != "4bf92f3577b34da6a3ce929d0e0e4736" || m[2] == "00f067aa0ba902b7" {
		t.Fatalf("traceresponse %q (status %d): want the caller's trace id and ingest's own span id", r.header.Get("traceresponse"), r.status)
	}
	if r := e.do("GET", "/Users?count=1", nil); !traceresponseRe.MatchString(r.header.Get("traceresponse")) {
		t.Fatalf("a request without traceparent starts a trace: %q", r.header.Get("traceresponse"))
	}

	const secret = "very-secret-token-that-must-not-leak"
	for _, path := range []string{"/Users", "/Groups/x", "/nope"} {
		if r := e.doOn(0, secret, "GET", path, nil, nil); r.status != 401 || strings.Contains(string(r.raw), secret) {
			t.Fatalf("GET %s with a bad token: %d %s", path, r.status, r.raw)
		}
	}
	e.do("POST", "/Users", `{"userName":`) // a logged 400
	out := logs.String()
	for _, s := range []string{secret, tokenA} {
		if strings.Contains(out, s) {
			t.Fatalf("a token appears in the logs:\n%s", out)
		}
	}
	if !strings.Contains(out, "trace_id") {
		t.Fatalf("log lines carry no trace id:\n%s", out)
	}
	met := svc.Metrics()
	if met.Requests["POST Users 201"] != 1 || met.Requests["GET Users 401"] != 1 || met.Writes["ok"] != 1 {
		t.Fatalf("metrics: %+v", met)
	}
	var prom bytes.Buffer
	svc.WritePrometheus(&prom)
	if !strings.Contains(prom.String(), `scimcord_ingest_requests_total{method="POST",resource="Users",status="201"} 1`) {
		t.Fatalf("prometheus text:\n%s", prom.String())
	}
}
