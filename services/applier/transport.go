package applier

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

type ticketKey struct{}

// withTicket attaches a limiter ticket to a request context.
func withTicket(ctx context.Context, t *Ticket) context.Context {
	return context.WithValue(ctx, ticketKey{}, t)
}

// limitTransport wraps discordgo's HTTP transport: it feeds every response's
// rate-limit headers to the ticket of the request (the wait happened before
// discordgo was called), then removes them, so that discordgo's own bucket
// logic — which sleeps without a context while holding a lock — never acts.
// A request without a ticket (a route the applier did not plan) acquires one
// here.
type limitTransport struct {
	base    http.RoundTripper
	limiter *Limiter
	metrics *metrics
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tk, _ := req.Context().Value(ticketKey{}).(*Ticket)
	if tk == nil {
		var err error
		tk, err = t.limiter.Acquire(req.Context(), Route{Name: req.Method + " " + routeTemplate(req.URL.Path), Major: majorOf(req.URL.Path)})
		if err != nil {
			return nil, err
		}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		tk.Observe(nil)
		t.metrics.call(tk.route.Name, "error")
		return nil, err
	}
	tk.Observe(resp)
	t.metrics.call(tk.route.Name, strconv.Itoa(resp.StatusCode))
	for k := range resp.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-ratelimit-") {
			resp.Header.Del(k)
		}
	}
	return resp, nil
}

// routeTemplate replaces the ids of a Discord API path by placeholders.
func routeTemplate(path string) string {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, p := range parts {
		if p != "" && (p[0] >= '0' && p[0] <= '9' || p == "@me") {
			parts[i] = "{id}"
		}
	}
	return "/" + strings.Join(parts, "/")
}

// majorOf returns the guild id of a guild route.
func majorOf(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if p == "guilds" && i+1 < len(parts) {
			return parts[i+1]
		}
	}
	return ""
}
