package scimcord_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/services/scimcord"
)

const testAdminToken = "e2e-admin-token-not-a-secret-0123"

// startWith runs the all-in-one like startSystem, with cfg changed by mutate.
func startWith(t *testing.T, mutate func(*scimcord.Config)) (*scimcord.System, func()) {
	t.Helper()
	cfg := scimcord.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.EmulatorAddr = "127.0.0.1:0"
	cfg.DevToken = testToken
	cfg.AdminToken = testAdminToken
	cfg.MappingFile = "../../deploy/dev/mapping.yaml"
	cfg.FixtureFile = "../../deploy/dev/guild.yaml"
	deps := scimcord.Deps{}
	if mutate != nil {
		mutate(&cfg)
	}
	return runSystem(t, cfg, deps)
}

func runSystem(t *testing.T, cfg scimcord.Config, deps scimcord.Deps) (*scimcord.System, func()) {
	t.Helper()
	sys, err := scimcord.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	select {
	case <-sys.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("system stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("system not ready in 30s")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("system stopped with: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("system did not stop within 20s")
		}
	}
	t.Cleanup(stop)
	return sys, stop
}

// scim sends one SCIM request and returns the status, the decoded body and
// the trace id of the traceresponse header.
func scim(t *testing.T, sys *scimcord.System, method, path string, body any, want ...int) (map[string]any, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, sys.BaseURL()+path, rd)
	req.Header.Set("Content-Type", "application/scim+json")
	req.Header.Set("Authorization", "Bearer "+sys.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	ok := false
	for _, w := range want {
		ok = ok || w == resp.StatusCode
	}
	if !ok {
		t.Fatalf("%s %s: status %d, want %v: %s", method, path, resp.StatusCode, want, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	tr := strings.Split(resp.Header.Get("traceresponse"), "-")
	if len(tr) != 4 || len(tr[1]) != 32 {
		t.Fatalf("%s %s: traceresponse %q is not 00-<trace>-<span>-<flags>", method, path, resp.Header.Get("traceresponse"))
	}
	return out, tr[1]
}

// spanSet is the ended spans of one trace.
type spanSet []sdktrace.ReadOnlySpan

func service(s sdktrace.ReadOnlySpan) string {
	for _, kv := range s.Resource().Attributes() {
		if kv.Key == "service.name" {
			return kv.Value.AsString()
		}
	}
	return ""
}

func attr(s sdktrace.ReadOnlySpan, k string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// find returns the spans whose name starts with prefix, made by svc.
func (ss spanSet) find(svc, prefix string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range ss {
		if service(s) == svc && strings.HasPrefix(s.Name(), prefix) {
			out = append(out, s)
		}
	}
	return out
}

func (ss spanSet) byID(id trace.SpanID) sdktrace.ReadOnlySpan {
	for _, s := range ss {
		if s.SpanContext().SpanID() == id {
			return s
		}
	}
	return nil
}

// descends reports whether s is below anc in the trace.
func (ss spanSet) descends(s, anc sdktrace.ReadOnlySpan) bool {
	for p := s; p != nil; p = ss.byID(p.Parent().SpanID()) {
		if p.Parent().SpanID() == anc.SpanContext().SpanID() {
			return true
		}
	}
	return false
}

func (ss spanSet) String() string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "\n  %s [%s] span=%s parent=%s", s.Name(), service(s), s.SpanContext().SpanID(), s.Parent().SpanID())
	}
	return b.String()
}

// waitTrace polls the recorder until ok holds for the spans of traceID.
func waitTrace(t *testing.T, rec *tracetest.SpanRecorder, traceID string, ok func(spanSet) bool) spanSet {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ss spanSet
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID().String() == traceID {
				ss = append(ss, s)
			}
		}
		if ok(ss) {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s incomplete after 20s:%s", traceID, ss)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// chain checks the whole path of one SCIM change: ingest's server span →
// its publish → the applier's processing span (child of the publish) →
// mapping's gRPC client span (applier) → its server span (mapping) → a
// Discord call (applier) for route, below the processing span. It returns
// the Discord span.
func chain(t *testing.T, ss spanSet, method, discordRoute string) sdktrace.ReadOnlySpan {
	t.Helper()
	one := func(svc, prefix string) sdktrace.ReadOnlySpan {
		t.Helper()
		got := ss.find(svc, prefix)
		if len(got) == 0 {
			t.Fatalf("no %q span of %s in the trace:%s", prefix, svc, ss)
		}
		return got[0]
	}
	server := one("scimcord-ingest", "SCIM "+method)
	if server.SpanKind() != trace.SpanKindServer {
		t.Errorf("%s: kind %v, want server", server.Name(), server.SpanKind())
	}
	var pub sdktrace.ReadOnlySpan
	for _, p := range ss.find("scimcord-ingest", "publish KV_scim") {
		if p.Parent().SpanID() == server.SpanContext().SpanID() {
			pub = p
		}
	}
	if pub == nil || pub.SpanKind() != trace.SpanKindProducer {
		t.Fatalf("no producer publish span child of %s:%s", server.Name(), ss)
	}
	var proc sdktrace.ReadOnlySpan
	for _, p := range ss.find("scimcord-applier", "applier.process") {
		if p.Parent().SpanID() == pub.SpanContext().SpanID() {
			proc = p
		}
	}
	if proc == nil || proc.SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("no consumer applier.process span child of the publish:%s", ss)
	}
	var client, srv sdktrace.ReadOnlySpan
	for _, c := range ss.find("scimcord-applier", "scimcord.mapping.v1.MappingService/ResolveRoles") {
		if c.SpanKind() == trace.SpanKindClient && ss.descends(c, proc) {
			client = c
		}
	}
	if client == nil {
		t.Fatalf("no mapping gRPC client span below applier.process:%s", ss)
	}
	for _, s := range ss.find("scimcord-mapping", "scimcord.mapping.v1.MappingService/ResolveRoles") {
		if s.SpanKind() == trace.SpanKindServer && s.Parent().SpanID() == client.SpanContext().SpanID() {
			srv = s
		}
	}
	if srv == nil {
		t.Fatalf("no mapping gRPC server span (scimcord-mapping) child of the client span:%s", ss)
	}
	for _, d := range ss.find("scimcord-applier", "discord "+discordRoute) {
		if d.SpanKind() == trace.SpanKindClient && ss.descends(d, proc) {
			for _, k := range []string{"discord.route", "http.response.status_code", "discord.ratelimit.wait_ms"} {
				if _, ok := attr(d, k); !ok {
					t.Errorf("Discord span %s lacks %s: %v", d.Name(), k, d.Attributes())
				}
			}
			return d
		}
	}
	t.Fatalf("no Discord client span %q below applier.process:%s", discordRoute, ss)
	return nil
}

func hasSpan(svc, prefix string) func(spanSet) bool {
	return func(ss spanSet) bool { return len(ss.find(svc, prefix)) > 0 }
}

// spanOf names a span by service and name prefix.
type spanOf struct{ svc, prefix string }

// hasSpans holds once every named span has ended (a parent ends after its
// children: the Discord call's span is recorded before applier.process).
func hasSpans(want ...spanOf) func(spanSet) bool {
	return func(ss spanSet) bool {
		for _, w := range want {
			if len(ss.find(w.svc, w.prefix)) == 0 {
				return false
			}
		}
		return true
	}
}

// TestTrace_OneTraceFromSCIMRequestToDiscordCall records every span of the
// three services (each with its own provider and service.name) and checks
// the parent/child structure of a create, a group membership PATCH and a
// Discord call that fails with 50013.
func TestTrace_OneTraceFromSCIMRequestToDiscordCall(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	sys, _ := startWith(t, func(c *scimcord.Config) { c.Telemetry.SpanProcessors = []sdktrace.SpanProcessor{rec} })
	emu := sys.Emulator()
	ctx := context.Background()

	// A create: POST /Users with a Discord id → Staff (PUT member role).
	_, tr := scim(t, sys, "POST", "/Users", userBody("trace-create@example.com", member1), 201)
	waitRoles(t, emu, member1, roleStaff)
	ss := waitTrace(t, rec, tr, hasSpans(spanOf{"scimcord-ingest", "SCIM POST"}, spanOf{"scimcord-applier", "discord PUT"}, spanOf{"scimcord-applier", "applier.process"}))
	d := chain(t, ss, "POST", "PUT /guilds/{id}/members/{id}/roles/{id}")
	if v, _ := attr(d, "http.response.status_code"); v.AsInt64() != 204 {
		t.Errorf("create: Discord status %v, want 204", v.AsInt64())
	}

	// A group membership PATCH → Engineering (one PUT member role).
	grp, _ := scim(t, sys, "POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Engineering"}, 201)
	users, _ := scim(t, sys, "GET", "/Users?filter="+strings.ReplaceAll(`userName eq "trace-create@example.com"`, " ", "%20"), nil, 200)
	uid := users["Resources"].([]any)[0].(map[string]any)["id"].(string)
	_, tr = scim(t, sys, "PATCH", "/Groups/"+grp["id"].(string), patchOp("add", "members", []map[string]any{{"value": uid}}), 200, 204)
	waitRoles(t, emu, member1, roleStaff, roleEng)
	ss = waitTrace(t, rec, tr, hasSpans(spanOf{"scimcord-ingest", "SCIM PATCH"}, spanOf{"scimcord-applier", "discord PUT"}, spanOf{"scimcord-applier", "applier.process"}))
	chain(t, ss, "PATCH", "PUT /guilds/{id}/members/{id}/roles/{id}")

	// A failing call: Design above the bot's role → Discord 403 code 50013.
	if _, err := emu.Admin().EditRole(ctx, devGuild, roleDesign, discordemu.RolePatch{Position: intp(10)}); err != nil {
		t.Fatal(err)
	}
	design, _ := scim(t, sys, "POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Design"}, 201)
	_, tr = scim(t, sys, "PATCH", "/Groups/"+design["id"].(string), patchOp("add", "members", []map[string]any{{"value": uid}}), 200, 204)
	ss = waitTrace(t, rec, tr, func(ss spanSet) bool {
		for _, d := range ss.find("scimcord-applier", "discord") {
			if v, ok := attr(d, "discord.error_code"); ok && v.AsInt64() == 50013 {
				return len(ss.find("scimcord-applier", "applier.process")) > 0 && len(ss.find("scimcord-ingest", "SCIM PATCH")) > 0
			}
		}
		return false
	})
	d = chain(t, ss, "PATCH", "PUT /guilds/{id}/members/{id}/roles/{id}")
	if v, _ := attr(d, "http.response.status_code"); v.AsInt64() != 403 || d.Status().Code.String() != "Error" {
		t.Errorf("failing call: status %v, span status %v; want 403 and Error", v.AsInt64(), d.Status())
	}
	if v, _ := attr(d, "discord.error_code"); v.AsInt64() != 50013 {
		t.Errorf("failing call: discord.error_code %v, want 50013", v.AsInt64())
	}
	// The member's sync status points at a trace with the failing call (this
	// one, or the group create's when its record was handled after the PATCH).
	st, err := sys.Applier().Status(ctx, scimcord.DevTenantID, devGuild, uid)
	if err != nil || st.State != "failed" || st.Code != 50013 {
		t.Fatalf("sync status %+v (%v); want failed with 50013", st, err)
	}
	failing := false
	for _, s := range rec.Ended() {
		if v, ok := attr(s, "discord.error_code"); ok && v.AsInt64() == 50013 && s.SpanContext().TraceID().String() == st.TraceID {
			failing = true
		}
	}
	if !failing {
		t.Errorf("sync status trace %s has no Discord span with 50013", st.TraceID)
	}
	// An operator's question is traced too: admin API (ingest) → NATS
	// request → the applier's operator span → mapping and Discord reads.
	req, _ := http.NewRequest("GET", sys.HTTPURL()+"/admin/api/v1/status?user="+uid, nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	atr := strings.Split(resp.Header.Get("traceresponse"), "-")
	if resp.StatusCode != 200 || len(atr) != 4 {
		t.Fatalf("admin status: %d, traceresponse %q", resp.StatusCode, resp.Header.Get("traceresponse"))
	}
	ss = waitTrace(t, rec, atr[1], func(ss spanSet) bool {
		return len(ss.find("scimcord-ingest", "admin GET")) > 0 && len(ss.find("scimcord-applier", "discord GET")) > 0 &&
			len(ss.find("scimcord-mapping", "scimcord.mapping.v1.MappingService/ResolveRoles")) > 0
	})
	adm, op := ss.find("scimcord-ingest", "admin GET")[0], ss.find("scimcord-applier", "applier.admin status")
	if len(op) != 1 || op[0].Parent().SpanID() != adm.SpanContext().SpanID() {
		t.Errorf("applier.admin status is not a child of the admin request span:%s", ss)
	}
	for _, d := range ss.find("scimcord-applier", "discord GET") {
		if !ss.descends(d, adm) {
			t.Errorf("Discord read %s is not below the admin request:%s", d.Name(), ss)
		}
	}

	// No span carries a header or a token.
	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			k, v := strings.ToLower(string(kv.Key)), kv.Value.Emit()
			if strings.Contains(k, "authorization") || strings.Contains(v, testToken) || strings.Contains(v, "emu-dev-bot-token") {
				t.Errorf("span %s records %s=%s", s.Name(), kv.Key, v)
			}
		}
	}
}

// TestTrace_SCIMErrorDetailNamesTheTrace: the IdP's log keeps the detail of
// an error, so it carries the trace id of the traceresponse header.
func TestTrace_SCIMErrorDetailNamesTheTrace(t *testing.T) {
	t.Parallel()
	sys, _ := startWith(t, nil)
	body, tr := scim(t, sys, "GET", "/Users/00000000-0000-4000-8000-000000000000", nil, 404)
	if d, _ := body["detail"].(string); !strings.Contains(d, tr) {
		t.Fatalf("detail %q does not name trace %s", d, tr)
	}
}

func intp(i int) *int { return &i }
