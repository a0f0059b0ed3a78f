package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
	"github.com/scimcord/scimcord/pkg/natsembed"
	"github.com/scimcord/scimcord/pkg/tenants"
	"github.com/scimcord/scimcord/services/ingest"
)

const (
	tokenA = "token-tenant-a-0123456789"
	tokenB = "token-tenant-b-9876543210"
)

// env is one test's real system: an embedded NATS and ingest replicas.
type env struct {
	t    testing.TB
	nats *natsembed.Server
	js   jetstream.JetStream
	nc   *nats.Conn
	ts   *tenants.Set
	svcs []*ingest.Service
	urls []string
}

func testTenants(t testing.TB) *tenants.Set {
	t.Helper()
	ts, err := tenants.New(
		&tenants.Tenant{ID: "acme", TokenSHA256: []string{tenants.HashToken(tokenA)}, Guilds: []tenants.Guild{{ID: "1100000000000000000"}}},
		&tenants.Tenant{ID: "globex", TokenSHA256: []string{tenants.HashToken(tokenB)}},
	)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// newEnv starts NATS and n ingest replicas on loopback ports.
func newEnv(t testing.TB, n int, mutate ...func(*ingest.Config, *ingest.Deps)) *env {
	t.Helper()
	// The recommended client: no reconnect buffer (README).
	return newEnvWith(t, n, []nats.Option{nats.ReconnectBufSize(-1)}, mutate...)
}

// newEnvWith is newEnv with extra NATS client options.
func newEnvWith(t testing.TB, n int, natsOpts []nats.Option, mutate ...func(*ingest.Config, *ingest.Deps)) *env {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	e := &env{t: t, nats: ns, ts: testTenants(t)}
	opts := append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond), nats.RetryOnFailedConnect(true)}, natsOpts...)
	nc, err := nats.Connect(ns.URL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e.js = js
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eventbus.EnsureBuckets(ctx, js, eventbus.BucketConfig{}); err != nil {
		t.Fatal(err)
	}
	for range n {
		e.addReplica(mutate...)
	}
	return e
}

func (e *env) addReplica(mutate ...func(*ingest.Config, *ingest.Deps)) *ingest.Service {
	t := e.t
	t.Helper()
	cfg := ingest.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 2 * time.Second
	deps := ingest.Deps{JS: e.js, Tenants: e.ts, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mutate {
		m(&cfg, &deps)
	}
	svc, err := ingest.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-svc.Ready():
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("ingest not ready after 15s")
	}
	e.svcs = append(e.svcs, svc)
	e.urls = append(e.urls, "http://"+svc.Addr()+"/scim/v2")
	return svc
}

// resp is a decoded HTTP response.
type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

// do sends a request to replica 0 with tokenA.
func (e *env) do(method, path string, body any) resp {
	e.t.Helper()
	return e.doOn(0, tokenA, method, path, body, nil)
}

func (e *env) doOn(replica int, token, method, path string, body any, hdr map[string]string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.urls[replica]+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: raw}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &r.body)
	}
	return r
}

func (r resp) str(key string) string {
	v, _ := r.body[key].(string)
	return v
}

func userBody(userName string, extra ...map[string]any) map[string]any {
	b := map[string]any{
		"schemas":  []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName": userName,
		"name":     map[string]any{"givenName": "Test", "familyName": "User"},
		"emails":   []any{map[string]any{"value": userName, "type": "work", "primary": true}},
		"active":   true,
	}
	for _, x := range extra {
		for k, v := range x {
			b[k] = v
		}
	}
	return b
}

func patchBody(ops ...map[string]any) map[string]any {
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": ops}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) mustCreateUser(userName string, extra ...map[string]any) string {
	e.t.Helper()
	r := e.do("POST", "/Users", userBody(userName, extra...))
	if r.status != 201 {
		e.t.Fatalf("create user %s: %d %s", userName, r.status, r.raw)
	}
	return r.str("id")
}
