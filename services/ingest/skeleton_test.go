package ingest_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/eventbus"
)

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	cases := []struct {
		name   string
		token  string
		method string
		path   string
	}{
		{"missing token is 401", "", "GET", "/Users"},
		{"wrong token is 401", "nope-" + tokenA, "GET", "/Users"},
		{"wrong token on an unknown path is 401, not 404", "nope", "GET", "/NoSuchThing"},
		{"wrong token on a write is 401", "nope", "POST", "/Users"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doOn(0, tc.token, tc.method, tc.path, nil, nil)
			if r.status != 401 {
				t.Fatalf("status %d, want 401: %s", r.status, r.raw)
			}
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
			}
			if r.str("status") != "401" || !strings.Contains(string(r.raw), "messages:2.0:Error") {
				t.Errorf("not a SCIM error body: %s", r.raw)
			}
			if tc.token != "" && strings.Contains(string(r.raw), tc.token) {
				t.Errorf("token echoed: %s", r.raw)
			}
		})
	}
}

func TestUserLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	id := e.mustCreateUser("ada@example.com", map[string]any{
		"urn:ietf:params:scim:schemas:extension:discord:2.0:User": map[string]any{"userId": "1100000000000001001"},
	})
	r := e.do("GET", "/Users/"+id, nil)
	if r.status != 200 || r.str("userName") != "ada@example.com" {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}
	ext, _ := r.body["urn:ietf:params:scim:schemas:extension:discord:2.0:User"].(map[string]any)
	if ext["userId"] != "1100000000000001001" {
		t.Fatalf("discord extension not returned: %s", r.raw)
	}
	steps := []struct {
		name       string
		ops        map[string]any
		wantActive bool
	}{
		{"Entra capitalised Replace with string False deactivates", map[string]any{"op": "Replace", "path": "active", "value": "False"}, false},
		{"no-path replace with boolean reactivates", map[string]any{"op": "replace", "value": map[string]any{"active": true}}, true},
		{"string false without path deactivates", map[string]any{"op": "replace", "value": map[string]any{"active": "false"}}, false},
	}
	for _, st := range steps {
		r := e.do("PATCH", "/Users/"+id, patchBody(st.ops))
		if r.status != 204 {
			t.Fatalf("%s: PATCH status %d %s", st.name, r.status, r.raw)
		}
		g := e.do("GET", "/Users/"+id, nil)
		if g.body["active"] != st.wantActive {
			t.Fatalf("%s: active = %v, want %v", st.name, g.body["active"], st.wantActive)
		}
	}
}

func TestUserRejections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.mustCreateUser("taken@example.com", map[string]any{
		"urn:ietf:params:scim:schemas:extension:discord:2.0:User": map[string]any{"userId": "1100000000000001002"},
	})
	disc := func(v any) map[string]any {
		return map[string]any{"urn:ietf:params:scim:schemas:extension:discord:2.0:User": map[string]any{"userId": v}}
	}
	cases := []struct {
		name     string
		method   string
		path     string
		body     any
		status   int
		scimType string
	}{
		{"malformed JSON is 400 invalidSyntax", "POST", "/Users", `{"userName": `, 400, "invalidSyntax"},
		{"a JSON array body is 400 invalidSyntax", "POST", "/Users", `[]`, 400, "invalidSyntax"},
		{"missing userName is 400 invalidValue", "POST", "/Users", map[string]any{"active": true}, 400, "invalidValue"},
		{"snowflake as a JSON number is 400 invalidValue", "POST", "/Users", `{"userName":"n@example.com","urn:ietf:params:scim:schemas:extension:discord:2.0:User":{"userId":1100000000000001003}}`, 400, "invalidValue"},
		{"snowflake with letters is 400 invalidValue", "POST", "/Users", userBody("l@example.com", disc("11000000000000010x3")), 400, "invalidValue"},
		{"snowflake too short is 400 invalidValue", "POST", "/Users", userBody("s@example.com", disc("1234")), 400, "invalidValue"},
		{"duplicate snowflake is 409 uniqueness", "POST", "/Users", userBody("d@example.com", disc("1100000000000001002")), 409, "uniqueness"},
		{"duplicate userName in other case is 409 uniqueness", "POST", "/Users", userBody("TAKEN@example.com"), 409, "uniqueness"},
		{"unknown user id is 404", "GET", "/Users/00000000-0000-4000-8000-000000000000", nil, 404, ""},
		{"PATCH of an unknown user is 404", "PATCH", "/Users/00000000-0000-4000-8000-000000000000", patchBody(map[string]any{"op": "replace", "path": "active", "value": false}), 404, ""},
		{"PATCH with op move is 400", "PATCH", "/Users/x", patchBody(map[string]any{"op": "move", "path": "active", "value": false}), 400, "invalidSyntax"},
		{"active as a number is 400 invalidValue", "POST", "/Users", `{"userName":"a1@example.com","active":1}`, 400, "invalidValue"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doOn(0, tokenA, tc.method, tc.path, tc.body, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if r.str("status") != fmt.Sprint(tc.status) || r.str("scimType") != tc.scimType {
				t.Fatalf("error body %s, want scimType %q", r.raw, tc.scimType)
			}
		})
	}
}

func TestGroupMembership(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	u1 := e.mustCreateUser("g1@example.com")
	u2 := e.mustCreateUser("g2@example.com")
	r := e.do("POST", "/Groups", map[string]any{
		"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Engineering",
		"members": []any{map[string]any{"value": u1}, map[string]any{"value": "no-such-user"}},
	})
	if r.status != 201 {
		t.Fatalf("create group: %d %s", r.status, r.raw)
	}
	gid := r.str("id")
	members := func() []string {
		g := e.do("GET", "/Groups/"+gid, nil)
		var out []string
		for _, m := range g.body["members"].([]any) {
			out = append(out, m.(map[string]any)["value"].(string))
		}
		return out
	}
	if got := members(); len(got) != 1 || got[0] != u1 {
		t.Fatalf("members after create = %v, want [%s] (unknown id skipped)", got, u1)
	}
	steps := []struct {
		name string
		op   map[string]any
		want []string
	}{
		{"add a member, skipping an unknown id", map[string]any{"op": "Add", "path": "members", "value": []any{map[string]any{"value": u2}, map[string]any{"value": "ghost"}}}, []string{u1, u2}},
		{"remove by value filter", map[string]any{"op": "remove", "path": fmt.Sprintf("members[value eq %q]", u1)}, []string{u2}},
		{"Entra remove with a value array", map[string]any{"op": "Remove", "path": "members", "value": []any{map[string]any{"value": u2}}}, nil},
	}
	for _, st := range steps {
		r := e.do("PATCH", "/Groups/"+gid, patchBody(st.op))
		if r.status != 204 {
			t.Fatalf("%s: %d %s", st.name, r.status, r.raw)
		}
		got := members()
		if strings.Join(sorted(got), ",") != strings.Join(sorted(st.want), ",") {
			t.Fatalf("%s: members %v, want %v", st.name, got, st.want)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestNATSOutageNeverAcknowledgesALostWrite: no 2xx for a write JetStream did
// not store; after NATS is back, nothing is half-written and writes succeed.
func TestNATSOutageNeverAcknowledgesALostWrite(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts []nats.Option
	}{
		{"client without reconnect buffer (recommended)", []nats.Option{nats.ReconnectBufSize(-1)}},
		{"client with nats.go's default reconnect buffer", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testNATSOutage(t, newEnvWith(t, 1, tc.opts))
		})
	}
}

func testNATSOutage(t *testing.T, e *env) {
	before := e.mustCreateUser("before@example.com")
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Outage"}).str("id")

	health := func(path string) int {
		res, err := http.Get("http://" + e.svcs[0].Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if health("/readyz") != 200 || health("/healthz") != 200 {
		t.Fatal("not ready before the outage")
	}
	e.nats.Shutdown()
	if got := health("/readyz"); got != 503 {
		t.Fatalf("/readyz with NATS down: %d, want 503", got)
	}
	if got := health("/healthz"); got != 200 {
		t.Fatalf("/healthz with NATS down: %d, want 200", got)
	}
	writes := []struct {
		name   string
		method string
		path   string
		body   any
	}{
		{"create user", "POST", "/Users", userBody("during@example.com")},
		{"patch user", "PATCH", "/Users/" + before, patchBody(map[string]any{"op": "replace", "path": "active", "value": false})},
		{"add member", "PATCH", "/Groups/" + gid, patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": before}}})},
	}
	for _, w := range writes {
		r := e.doOn(0, tokenA, w.method, w.path, w.body, nil)
		if r.status < 500 || r.str("status") == "" {
			t.Fatalf("%s with NATS down: status %d %s, want a 5xx SCIM error", w.name, r.status, r.raw)
		}
	}
	if err := e.nats.Restart(); err != nil {
		t.Fatal(err)
	}
	// Nothing half-written: the stream holds exactly the two records from before.
	eventually(t, 10*time.Second, "JetStream back", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := e.js.Stream(ctx, eventbus.ResourceStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil {
			return false
		}
		if info.State.Msgs != 2 {
			t.Fatalf("stream has %d records after the outage, want 2", info.State.Msgs)
		}
		return true
	})
	if r := e.do("GET", "/Users/"+before, nil); r.body["active"] != true {
		t.Fatalf("failed PATCH changed the user: %s", r.raw)
	}
	if r := e.do("GET", `/Users?filter=userName+eq+"during@example.com"`, nil); r.body["totalResults"] != float64(0) {
		t.Fatalf("failed create is visible: %s", r.raw)
	}
	eventually(t, 10*time.Second, "/readyz after the restart", func() bool { return health("/readyz") == 200 })
	var created resp
	eventually(t, 10*time.Second, "a write after the restart", func() bool {
		created = e.do("POST", "/Users", userBody("after@example.com"))
		return created.status == 201
	})
	if r := e.do("GET", "/Users/"+created.str("id"), nil); r.status != 200 {
		t.Fatalf("created after restart not readable: %d", r.status)
	}
}

// TestReplicaViewRecoversAfterNATSRestart: after an outage, each replica's
// watch resumes, so writes made through one replica are seen by the other.
func TestReplicaViewRecoversAfterNATSRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.mustCreateUser("pre@example.com")
	e.nats.Shutdown()
	if err := e.nats.Restart(); err != nil {
		t.Fatal(err)
	}
	var id string
	eventually(t, 10*time.Second, "a create after the restart", func() bool {
		r := e.doOn(0, tokenA, "POST", "/Users", userBody("post@example.com"), nil)
		id = r.str("id")
		return r.status == 201
	})
	start := time.Now()
	if r := e.doOn(1, tokenA, "GET", "/Users/"+id, nil, nil); r.status != 200 {
		t.Fatalf("other replica after the restart: %d %s", r.status, r.raw)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("other replica needed %s to see the write (its watch did not resume)", d)
	}
}
