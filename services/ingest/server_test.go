package ingest_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/services/ingest"
)

// TestShortBodyIsCutOff: a request that announces more body than it sends
// gets an answer (400) after HTTPReadTimeout instead of holding the
// connection forever.
func TestShortBodyIsCutOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, func(c *ingest.Config, _ *ingest.Deps) { c.HTTPReadTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", e.svcs[0].Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "POST /scim/v2/Users HTTP/1.1\r\nHost: scim\r\nAuthorization: Bearer " + tokenA +
		"\r\nContent-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n{\"a\":"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if errorsAs(err, &ne) && ne.Timeout() {
			t.Fatal("no answer after 10s: the server still waits for the missing body")
		}
		return // closed by the server: cut off, as wanted
	}
	defer res.Body.Close()
	if res.StatusCode != 400 {
		t.Fatalf("status %d, want 400", res.StatusCode)
	}
}

func errorsAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

// TestShutdownDoesNotWaitForSpareConnections: a connection that never sent
// a request (HTTP clients dial spares) does not hold up a graceful
// shutdown; Run returns at once, long before ShutdownTimeout. The same
// holds for an idle keep-alive connection.
func TestShutdownDoesNotWaitForSpareConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	cfg := ingest.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 30 * time.Second
	svc, err := ingest.New(cfg, ingest.Deps{JS: e.js, Tenants: e.ts, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("not ready")
	}
	spare, err := net.Dial("tcp", svc.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer spare.Close()
	client := &http.Client{}
	res, err := client.Get("http://" + svc.Addr() + "/healthz") // leaves an idle keep-alive connection
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	// The server accepts connections in order: having answered the request,
	// it has accepted the spare connection too.
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("shutdown took %s: it waited for a connection without a request", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20s after cancel")
	}
	_ = spare.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := spare.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("spare connection still open after the shutdown: %v", err)
	}
}
