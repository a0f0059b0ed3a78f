package applier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// spanTransport makes one client span per Discord HTTP call, a child of the
// reconcile that made it, with the route, the rate-limit bucket, the time the
// limiter made the call wait, the status and Discord's JSON error code. It
// records no header (the Authorization header carries the bot token) and no
// body. It also counts Discord's invalid requests (401, 403, 429).
type spanTransport struct {
	base    http.RoundTripper
	tracer  trace.Tracer
	invalid *invalidWindow
	stats   *discordStats // nil: no metrics
}

func (t *spanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tmpl := routeTemplate(req.URL.Path)
	if rest, ok := strings.CutPrefix(tmpl, "/api/v"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			tmpl = rest[i:] // "/api/v9/guilds/…" → "/guilds/…"
		}
	}
	route := req.Method + " " + tmpl // span name and attributes: ids as {id}
	metricRoute := limiterRoute(req.Method, req.URL.Path)
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", req.Method),
		attribute.String("url.template", tmpl),
		attribute.String("server.address", req.URL.Hostname()),
		attribute.String("discord.route", route),
	}
	if g := majorOf(req.URL.Path); g != "" {
		attrs = append(attrs, attribute.String("discord.guild_id", g))
	}
	if tk, _ := req.Context().Value(ticketKey{}).(*Ticket); tk != nil {
		if tk.route.Name != "" {
			metricRoute = tk.route.Name
		}
		attrs = append(attrs, attribute.Float64("discord.ratelimit.wait_ms", float64(tk.waited.Microseconds())/1000))
		t.stats.wait(tk.waited)
	}
	ctx, span := t.tracer.Start(req.Context(), "discord "+route, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	defer span.End()
	start := time.Now()
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.stats.call(metricRoute, "error", "", time.Since(start))
		span.SetStatus(codes.Error, "transport error")
		span.SetAttributes(attribute.String("error.type", "transport"))
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if b := resp.Header.Get("X-RateLimit-Bucket"); b != "" {
		span.SetAttributes(attribute.String("discord.ratelimit.bucket", b))
	}
	if v := resp.Header.Get("X-RateLimit-Remaining"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			span.SetAttributes(attribute.Int("discord.ratelimit.remaining", n))
		}
	}
	if v := resp.Header.Get("X-RateLimit-Scope"); v != "" {
		span.SetAttributes(attribute.String("discord.ratelimit.scope", v))
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		t.invalid.add(time.Now())
	}
	dcode := ""
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
		span.SetAttributes(attribute.String("error.type", strconv.Itoa(resp.StatusCode)))
		if code, ok := peekCode(resp); ok {
			span.SetAttributes(attribute.Int("discord.error_code", code))
			dcode = strconv.Itoa(code)
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		scope := resp.Header.Get("X-RateLimit-Scope")
		if scope == "" {
			scope = "unknown" // a Cloudflare ban page has none
		}
		t.stats.tooMany(scope)
	}
	t.stats.call(metricRoute, strconv.Itoa(resp.StatusCode), dcode, time.Since(start))
	return resp, nil
}

// limiterRoute is the route label of the Discord metrics: the limiter's
// route template (discord.go: "PUT /guilds/{g}/members/{u}/roles/{r}",
// "GET /users/@me"), the same in every scimcord_applier_discord_* series.
// The call's ticket names it; this derives it for a call without one.
func limiterRoute(method, path string) string {
	if rest, ok := strings.CutPrefix(path, "/api/v"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			path = rest[i:]
		}
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, p := range parts {
		if p == "" || p[0] < '0' || p[0] > '9' {
			continue
		}
		prev := ""
		if i > 0 {
			prev = parts[i-1]
		}
		switch prev {
		case "guilds":
			parts[i] = "{g}"
		case "members", "bans", "users":
			parts[i] = "{u}"
		case "roles":
			parts[i] = "{r}"
		case "channels":
			parts[i] = "{c}"
		default:
			parts[i] = "{id}"
		}
	}
	return method + " /" + strings.Join(parts, "/")
}

// peekCode reads Discord's JSON error code from an error response and puts
// the body back for discordgo.
func peekCode(resp *http.Response) (int, bool) {
	if resp.Body == nil {
		return 0, false
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	rest := resp.Body
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(data), rest), rest}
	if err != nil {
		return 0, false
	}
	var body struct {
		Code *int `json:"code"`
	}
	if json.Unmarshal(data, &body) != nil || body.Code == nil {
		return 0, false
	}
	return *body.Code, true
}

// invalidWindow counts events over the last ten minutes in 10-second slots.
type invalidWindow struct {
	mu    sync.Mutex
	slots [60]struct {
		at int64 // slot number (unix seconds / 10)
		n  int
	}
}

func newInvalidWindow() *invalidWindow { return &invalidWindow{} }

func (w *invalidWindow) add(now time.Time) {
	if w == nil {
		return
	}
	at := now.Unix() / 10
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.slots[at%60]
	if s.at != at {
		s.at, s.n = at, 0
	}
	s.n++
}

func (w *invalidWindow) count(now time.Time) int {
	if w == nil {
		return 0
	}
	at := now.Unix() / 10
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.slots {
		if s.at > at-60 && s.at <= at {
			n += s.n
		}
	}
	return n
}

// discordStats are the Discord call metrics: calls by route, status and
// Discord code, latency by route, the limiter's wait and 429s by scope.
type discordStats struct {
	mu      sync.Mutex
	calls   map[[3]string]int64
	latency map[string]*histogram
	waits   *histogram
	r429    map[string]int64
}

func newDiscordStats() *discordStats {
	return &discordStats{calls: map[[3]string]int64{}, latency: map[string]*histogram{},
		waits: newHistogram(waitBuckets), r429: map[string]int64{}}
}

var (
	latencyBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	waitBuckets    = []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5}
)

func (d *discordStats) call(route, status, code string, took time.Duration) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls[[3]string{route, status, code}]++
	h := d.latency[route]
	if h == nil {
		h = newHistogram(latencyBuckets)
		d.latency[route] = h
	}
	h.observe(took.Seconds())
}

func (d *discordStats) wait(w time.Duration) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.waits.observe(w.Seconds())
	d.mu.Unlock()
}

func (d *discordStats) tooMany(scope string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.r429[scope]++
	d.mu.Unlock()
}

// histogram is a Prometheus-style cumulative histogram.
type histogram struct {
	bounds []float64
	counts []int64 // per bucket, +Inf last
	sum    float64
	n      int64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]int64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.n++
}

// write renders h as name_bucket/_sum/_count with the given labels
// (`k="v",` pairs, possibly empty).
func (h *histogram) write(w io.Writer, name, labels string) {
	var cum int64
	for i, b := range h.bounds {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{%sle=\"%g\"} %d\n", name, labels, b, cum)
	}
	cum += h.counts[len(h.bounds)]
	fmt.Fprintf(w, "%s_bucket{%sle=\"+Inf\"} %d\n", name, labels, cum)
	l := strings.TrimSuffix(labels, ",")
	if l != "" {
		l = "{" + l + "}"
	}
	fmt.Fprintf(w, "%s_sum%s %g\n%s_count%s %d\n", name, l, h.sum, name, l, h.n)
}
