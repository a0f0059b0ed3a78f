package ingest_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/scimcord/scimcord/services/ingest"
)

// TestProtocolDetails: the smaller HTTP and SCIM rules (review findings).
func TestProtocolDetails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	uid := e.mustCreateUser("details@example.com")
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Details"}).str("id")

	t.Run("405 carries Allow", func(t *testing.T) {
		cases := []struct{ method, path, allow string }{
			{"DELETE", "/Users", "GET, HEAD, POST"},
			{"POST", "/Users/" + uid, "GET, HEAD, PUT, PATCH, DELETE"},
			{"POST", "/ServiceProviderConfig", "GET, HEAD"},
			{"GET", "/Bulk", "POST"},
			{"GET", "/.search", "POST"},
			{"GET", "/Users/.search", "POST"},
		}
		for _, tc := range cases {
			r := e.do(tc.method, tc.path, nil)
			if r.status != 405 || r.header.Get("Allow") != tc.allow {
				t.Errorf("%s %s: status %d Allow %q, want 405 %q", tc.method, tc.path, r.status, r.header.Get("Allow"), tc.allow)
			}
		}
	})
	t.Run("HEAD is answered like GET, without a body", func(t *testing.T) {
		for _, p := range []string{"/Users/" + uid, "/Users", "/ServiceProviderConfig", "/Schemas"} {
			r := e.do("HEAD", p, nil)
			if r.status != 200 || len(r.raw) != 0 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/scim+json") {
				t.Errorf("HEAD %s: %d, %d body bytes, Content-Type %q", p, r.status, len(r.raw), r.header.Get("Content-Type"))
			}
		}
		if r := e.do("HEAD", "/Users/"+uid, nil); r.header.Get("ETag") == "" {
			t.Error("HEAD of a user has no ETag")
		}
	})
	t.Run("415 has no scimType and names what is accepted", func(t *testing.T) {
		r := e.doOn(0, tokenA, "POST", "/Users", `<user/>`, map[string]string{"Content-Type": "application/xml"})
		if r.status != 415 || r.str("scimType") != "" || !strings.Contains(r.str("detail"), "text/plain") {
			t.Fatalf("status %d scimType %q: %s", r.status, r.str("scimType"), r.raw)
		}
		// What the message says is accepted, is.
		b := `{"userName":"plain@example.com"}`
		if r := e.doOn(0, tokenA, "POST", "/Users", b, map[string]string{"Content-Type": "text/plain"}); r.status != 201 {
			t.Fatalf("text/plain JSON body: %d %s", r.status, r.raw)
		}
	})
	t.Run("PATCH of a read-only attribute is 400 mutability", func(t *testing.T) {
		cases := []struct{ path, op string }{
			{"/Users/" + uid, `{"op":"replace","path":"id","value":"x"}`},
			{"/Users/" + uid, `{"op":"replace","path":"meta.created","value":"2020-01-01T00:00:00Z"}`},
			{"/Users/" + uid, `{"op":"add","path":"groups","value":[{"value":"` + gid + `"}]}`},
			{"/Users/" + uid, `{"op":"remove","path":"meta"}`},
			{"/Groups/" + gid, `{"op":"replace","path":"id","value":"x"}`},
		}
		for _, tc := range cases {
			r := e.do("PATCH", tc.path, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[`+tc.op+`]}`)
			if r.status != 400 || r.str("scimType") != "mutability" {
				t.Errorf("PATCH %s: status %d scimType %q, want 400 mutability", tc.op, r.status, r.str("scimType"))
			}
		}
		if g := e.do("GET", "/Users/"+uid, nil); g.str("id") != uid {
			t.Fatalf("id changed: %s", g.raw)
		}
		// Read-only keys inside a no-path value are ignored, as in a PUT.
		r := e.do("PATCH", "/Users/"+uid, patchBody(map[string]any{"op": "replace", "value": map[string]any{"id": uid, "meta": map[string]any{}, "nickName": "n"}}))
		if r.status != 204 {
			t.Fatalf("no-path replace with id and meta: %d %s", r.status, r.raw)
		}
	})
}

// TestUnknownMembersAreLoggedOnce: a push naming thousands of unknown member
// ids logs one line with the count and a few sample ids, not one per id.
func TestUnknownMembersAreLoggedOnce(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	e := newEnv(t, 1, func(_ *ingest.Config, d *ingest.Deps) { d.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	uid := e.mustCreateUser("known@example.com")
	members := []any{map[string]any{"value": uid}}
	for i := range 2000 {
		members = append(members, map[string]any{"value": fmt.Sprintf("unknown-%d", i)})
	}
	r := e.do("POST", "/Groups", map[string]any{"displayName": "Mostly unknown", "members": members})
	if r.status != 201 || len(r.body["members"].([]any)) != 1 {
		t.Fatalf("create: %d %.300s", r.status, r.raw)
	}
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "unknown") && strings.Contains(l, "level=WARN") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "count=2000") {
		t.Fatalf("%d warning lines, want 1 with count=2000; first: %.300s", len(lines), strings.Join(lines, "\n"))
	}
}
