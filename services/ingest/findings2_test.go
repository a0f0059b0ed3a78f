package ingest_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/scimcord/scimcord/services/ingest"
)

// Tests for the second independent review (findings 1–16).

// TestListEndpointsSurviveExtremePaging: every list endpoint, with
// startIndex and count at the ends of the integer range, answers 200 or a
// 400 SCIM error — never a dropped connection (finding 1).
func TestListEndpointsSurviveExtremePaging(t *testing.T) {
	t.Parallel()
	roles := func(context.Context, string) ([]ingest.Role, error) {
		return []ingest.Role{{ID: "1", Name: "a", GuildID: "g"}, {ID: "2", Name: "b", GuildID: "g"}, {ID: "3", Name: "c", GuildID: "g"}}, nil
	}
	e := newEnv(t, 1, func(_ *ingest.Config, d *ingest.Deps) { d.Roles = roles })
	e.mustCreateUser("paging1@example.com")
	e.mustCreateUser("paging2@example.com")
	e.do("POST", "/Groups", map[string]any{"displayName": "Paging 1"})
	e.do("POST", "/Groups", map[string]any{"displayName": "Paging 2"})
	extremes := []string{"-9223372036854775808", "-1", "0", "1", "2", "3", "9223372036854775806", "9223372036854775807", "9223372036854775808"}
	check := func(t *testing.T, what string, r resp, si, cnt string) {
		t.Helper()
		if r.status != 200 && r.status != 400 {
			t.Fatalf("%s startIndex=%s count=%s: %d %s", what, si, cnt, r.status, r.raw)
		}
		if r.status == 400 && r.str("scimType") != "invalidValue" {
			t.Errorf("%s startIndex=%s count=%s: 400 without scimType invalidValue: %s", what, si, cnt, r.raw)
		}
		if r.status == 200 {
			n, _ := r.body["itemsPerPage"].(float64)
			total, _ := r.body["totalResults"].(float64)
			if n > total || n > 1000 {
				t.Errorf("%s startIndex=%s count=%s: itemsPerPage %v of %v", what, si, cnt, n, total)
			}
		}
	}
	for _, si := range extremes {
		for _, cnt := range extremes {
			qs := "?startIndex=" + url.QueryEscape(si) + "&count=" + url.QueryEscape(cnt)
			for _, p := range []string{"/Users", "/Groups", "/Roles", "/Entitlements"} {
				check(t, "GET "+p, e.do("GET", p+qs, nil), si, cnt)
			}
			body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"startIndex":%s,"count":%s}`, si, cnt)
			for _, p := range []string{"/.search", "/Users/.search", "/Groups/.search"} {
				check(t, "POST "+p, e.do("POST", p, body), si, cnt)
			}
		}
	}
	// The reported case answers the rest of the list.
	r := e.do("POST", "/.search", `{"startIndex":2,"count":9223372036854775807}`)
	if r.status != 200 || r.body["itemsPerPage"].(float64) != 3 {
		t.Fatalf("root search from 2: %d %s", r.status, r.raw)
	}
	r = e.do("GET", "/Roles?startIndex=2&count=9223372036854775807", nil)
	if r.status != 200 || r.body["itemsPerPage"].(float64) != 2 {
		t.Fatalf("roles from 2: %d %s", r.status, r.raw)
	}
}

// TestHandlerPanicIsA500SCIMError: a panic anywhere in a handler answers a
// logged 500 SCIM error, and the service keeps serving (finding 1).
func TestHandlerPanicIsA500SCIMError(t *testing.T) {
	t.Parallel()
	roles := func(context.Context, string) ([]ingest.Role, error) { panic("roles exploded") }
	e := newEnv(t, 1, func(_ *ingest.Config, d *ingest.Deps) { d.Roles = roles })
	r := e.do("GET", "/Roles", nil)
	if r.status != 500 || r.body["schemas"] == nil || r.str("status") != "500" {
		t.Fatalf("panicking handler: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/Users", nil); r.status != 200 {
		t.Fatalf("after the panic: %d %s", r.status, r.raw)
	}
}

// memberIDsOf returns the member ids of a group, as GET renders them.
func (e *env) memberIDsOf(gid string) map[string]bool {
	e.t.Helper()
	r := e.do("GET", "/Groups/"+gid, nil)
	if r.status != 200 {
		e.t.Fatalf("GET group: %d %s", r.status, r.raw)
	}
	out := map[string]bool{}
	for _, m := range asAnyList(r.body["members"]) {
		out[m.(map[string]any)["value"].(string)] = true
	}
	return out
}

// TestMemberSubAttributePathsNeverRemoveMembers: PATCH on members.display
// or members[value eq "x"].display is 400 mutability and leaves the
// memberships alone (finding 2).
func TestMemberSubAttributePathsNeverRemoveMembers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	u1 := e.mustCreateUser("sub1@example.com")
	u2 := e.mustCreateUser("sub2@example.com")
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Sub", "members": []any{map[string]any{"value": u1}, map[string]any{"value": u2}}}).str("id")
	cases := []map[string]any{
		{"op": "remove", "path": "members.display"},
		{"op": "remove", "path": "members.value"},
		{"op": "remove", "path": `members[value eq "` + u1 + `"].display`},
		{"op": "remove", "path": `members[value eq "` + u1 + `"].value`},
		{"op": "replace", "path": `members[value eq "` + u1 + `"].display`, "value": "x"},
		{"op": "add", "path": "members.display", "value": "x"},
	}
	for _, op := range cases {
		r := e.do("PATCH", "/Groups/"+gid, patchBody(op))
		if r.status != 400 || r.str("scimType") != "mutability" {
			t.Errorf("%v: %d %s, want 400 mutability", op, r.status, r.raw)
		}
		if got := e.memberIDsOf(gid); !got[u1] || !got[u2] || len(got) != 2 {
			t.Fatalf("%v: members now %v", op, got)
		}
	}
	// Removing the member itself still works.
	if r := e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "remove", "path": `members[value eq "` + u1 + `"]`})); r.status != 204 {
		t.Fatalf("remove member: %d %s", r.status, r.raw)
	}
	if got := e.memberIDsOf(gid); got[u1] || !got[u2] {
		t.Fatalf("after remove: %v", got)
	}
}
