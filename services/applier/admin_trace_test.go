package applier

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/telemetry"
)

// consoleSpan is the part of stdouttrace's JSON the tests read.
type consoleSpan struct {
	Name        string
	SpanContext struct{ SpanID string }
	Links       []struct {
		SpanContext struct{ SpanID string }
	}
	Attributes []struct {
		Key   string
		Value struct{ Value any }
	}
}

func readSpans(t *testing.T, buf *bytes.Buffer) map[string]consoleSpan {
	t.Helper()
	out := map[string]consoleSpan{}
	dec := json.NewDecoder(buf)
	for dec.More() {
		var s consoleSpan
		if err := dec.Decode(&s); err != nil {
			t.Fatal(err)
		}
		out[s.Name] = s
	}
	return out
}

// TestCoalesce_ReconcileLinksEveryCoveredMessage: when a message is covered
// by another message's reconcile (coalesced), the running one's span links
// to it, and the covered one is marked coalesced.
func TestCoalesce_ReconcileLinksEveryCoveredMessage(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	ctx := context.Background()
	tp, err := telemetry.NewProvider(ctx, "scimcord-applier", telemetry.Config{Exporter: "console", Console: &buf})
	if err != nil {
		t.Fatal(err)
	}
	tr := tp.Tracer("test")
	c := newCoalescer()
	ctxA, spanA := tr.Start(ctx, "message A")
	ctxB, spanB := tr.Start(ctx, "message B")
	registered := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		e := c.m["k"]
		return e != nil && e.gen == 2
	}
	runs := 0
	doneA := make(chan error, 1)
	go func() {
		doneA <- c.Do(ctxA, "k", func(_ context.Context, mark func(), _ func() bool) error {
			runs++
			deadline := time.Now().Add(10 * time.Second)
			for !registered() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // poll until B waits on this member
			}
			mark()
			return nil
		})
	}()
	for !func() bool { c.mu.Lock(); defer c.mu.Unlock(); e := c.m["k"]; return e != nil && e.running }() {
		time.Sleep(time.Millisecond) // poll until A runs
	}
	if err := c.Do(ctxB, "k", func(context.Context, func(), func() bool) error { runs++; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	spanA.End()
	spanB.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if runs != 1 {
		t.Fatalf("%d reconciles, want 1 (B coalesced into A)", runs)
	}
	spans := readSpans(t, &buf)
	a, b := spans["message A"], spans["message B"]
	if len(a.Links) != 1 || a.Links[0].SpanContext.SpanID != b.SpanContext.SpanID {
		t.Errorf("A links %+v, want one link to B (%s)", a.Links, b.SpanContext.SpanID)
	}
	coalesced := false
	for _, kv := range b.Attributes {
		coalesced = coalesced || (kv.Key == "scimcord.coalesced" && kv.Value.Value == true)
	}
	if !coalesced {
		t.Errorf("B attributes %+v lack scimcord.coalesced=true", b.Attributes)
	}
	// A ran its own reconcile: it is not coalesced.
	for _, kv := range a.Attributes {
		if kv.Key == "scimcord.coalesced" {
			t.Errorf("A (which ran the reconcile) has scimcord.coalesced=%v", kv.Value.Value)
		}
	}
}

type fixedTransport struct {
	status int
	body   string
}

func (f fixedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h := http.Header{}
	h.Set("X-RateLimit-Bucket", "abcd1234")
	return &http.Response{StatusCode: f.status, Header: h, Body: io.NopCloser(strings.NewReader(f.body)), Request: req}, nil
}

// TestSpanTransport_RecordsRouteBucketAndCodeNeverTheToken checks the
// attributes of a Discord call span and that discordgo still reads the body.
func TestSpanTransport_RecordsRouteBucketAndCodeNeverTheToken(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	ctx := context.Background()
	tp, err := telemetry.NewProvider(ctx, "scimcord-applier", telemetry.Config{Exporter: "console", Console: &buf})
	if err != nil {
		t.Fatal(err)
	}
	inv := newInvalidWindow()
	body := `{"message": "Missing Permissions", "code": 50013}`
	st := &spanTransport{base: fixedTransport{403, body}, tracer: tp.Tracer("t"), invalid: inv}
	req, _ := http.NewRequestWithContext(withTicket(ctx, &Ticket{waited: 1500 * time.Microsecond}), "PUT",
		"https://discord.com/api/v9/guilds/1100000000000000000/members/1100000000000001001/roles/1100000000000000102", nil)
	req.Header.Set("Authorization", "Bot secret-bot-token")
	resp, err := st.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if string(got) != body {
		t.Fatalf("body after the span read it: %q", got)
	}
	if n := inv.count(time.Now()); n != 1 {
		t.Errorf("invalid requests = %d, want 1", n)
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "secret-bot-token") || strings.Contains(strings.ToLower(out), "authorization") {
		t.Fatalf("span records the token: %s", out)
	}
	for _, want := range []string{`"discord PUT /guilds/{id}/members/{id}/roles/{id}"`, `"discord.error_code"`, `50013`,
		`"discord.ratelimit.bucket"`, `"abcd1234"`, `"discord.ratelimit.wait_ms"`, `1.5`, `"http.response.status_code"`, `403`} {
		if !strings.Contains(out, want) {
			t.Errorf("span lacks %s: %s", want, out)
		}
	}
}

// TestInvalidWindow_CountsTheLastTenMinutes: old slots fall out.
func TestInvalidWindow_CountsTheLastTenMinutes(t *testing.T) {
	t.Parallel()
	w := newInvalidWindow()
	t0 := time.Unix(1_700_000_000, 0)
	w.add(t0)
	w.add(t0.Add(5 * time.Minute))
	w.add(t0.Add(9 * time.Minute))
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{{9 * time.Minute, 3}, {10*time.Minute + 10*time.Second, 2}, {16 * time.Minute, 1}, {30 * time.Minute, 0}} {
		if got := w.count(t0.Add(tc.at)); got != tc.want {
			t.Errorf("count at +%s = %d, want %d", tc.at, got, tc.want)
		}
	}
}

// BenchmarkSpanTransport reports the cost of the Discord call span (and its
// metrics) relative to the bare transport call it wraps.
func BenchmarkSpanTransport(b *testing.B) {
	ctx := context.Background()
	tp, err := telemetry.NewProvider(ctx, "scimcord-applier", telemetry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	base := fixedTransport{204, ""}
	st := &spanTransport{base: base, tracer: tp.Tracer("b"), invalid: newInvalidWindow(), stats: newDiscordStats()}
	req, _ := http.NewRequestWithContext(withTicket(ctx, &Ticket{}), "PUT",
		"https://discord.com/api/v9/guilds/1100000000000000000/members/1100000000000001001/roles/1100000000000000102", nil)
	run := func(rt http.RoundTripper, n int) time.Duration {
		start := time.Now()
		for range n {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
		return time.Since(start)
	}
	bare := run(base, b.N)
	b.ResetTimer()
	traced := run(st, b.N)
	b.StopTimer()
	b.ReportMetric(float64(traced)/float64(max(bare, 1)), "traced/bare")
	b.ReportMetric(float64((traced-bare).Nanoseconds())/float64(b.N), "ns-added/call")
}

// TestLimiterRoute_MetricsUseTheLimitersTemplates: every Discord series
// (discord_calls_total, discord_requests_total, the latency histogram) has
// one route vocabulary, the limiter's (discord.go).
func TestLimiterRoute_MetricsUseTheLimitersTemplates(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/api/v9/guilds/1100000000000000000/members/1100000000000001001/roles/1100000000000000102": routeRoleAdd,
		"/api/v10/guilds/1100000000000000000/members/1100000000000001001":                          routeMemberGet,
		"/api/v9/guilds/1100000000000000000/roles":                                                 routeRolesList,
		"/api/v9/users/@me":                  routeUsersMe,
		"/api/v9/guilds/1100000000000000000": routeGuildGet,
	} {
		method, _, _ := strings.Cut(want, " ")
		if got := limiterRoute(method, path); got != want {
			t.Errorf("limiterRoute(%s %s) = %q, want %q", method, path, got, want)
		}
	}
}
