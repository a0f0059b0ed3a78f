package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestUserVersionFollowsItsGroups: a user's ETag and meta.lastModified
// change when its groups change (member added or removed, group renamed),
// so If-None-Match never answers 304 for a changed representation
// (finding 3).
func TestUserVersionFollowsItsGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	uid := e.mustCreateUser("ver@example.com")
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Ver"}).str("id")
	get := func() (string, string, resp) {
		t.Helper()
		r := e.do("GET", "/Users/"+uid, nil)
		meta, _ := r.body["meta"].(map[string]any)
		v, _ := meta["version"].(string)
		lm, _ := meta["lastModified"].(string)
		if r.status != 200 || v == "" || lm == "" || r.header.Get("ETag") != v {
			t.Fatalf("GET user: %d ETag %q %s", r.status, r.header.Get("ETag"), r.raw)
		}
		return v, lm, r
	}
	changes := []struct {
		name  string
		patch map[string]any
	}{
		{"member added", patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": uid}}})},
		{"group renamed", patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "Ver renamed"})},
		{"member removed", patchBody(map[string]any{"op": "remove", "path": `members[value eq "` + uid + `"]`})},
	}
	for _, c := range changes {
		v0, lm0, _ := get()
		if r := e.do("PATCH", "/Groups/"+gid, c.patch); r.status != 204 {
			t.Fatalf("%s: %d %s", c.name, r.status, r.raw)
		}
		v1, lm1, r := get()
		if v1 == v0 || lm1 <= lm0 {
			t.Errorf("%s: version %s → %s, lastModified %s → %s", c.name, v0, v1, lm0, lm1)
		}
		if c.name == "group renamed" && !strings.Contains(string(r.raw), "Ver renamed") {
			t.Errorf("%s: groups not renamed: %s", c.name, r.raw)
		}
		if r := e.doOn(0, tokenA, "GET", "/Users/"+uid, nil, map[string]string{"If-None-Match": v0}); r.status != 200 {
			t.Errorf("%s: If-None-Match of the old version: %d", c.name, r.status)
		}
		if r := e.doOn(0, tokenA, "GET", "/Users/"+uid, nil, map[string]string{"If-None-Match": v1}); r.status != 304 {
			t.Errorf("%s: If-None-Match of the current version: %d", c.name, r.status)
		}
		// If-Match compares with the same version.
		upd := patchBody(map[string]any{"op": "replace", "path": "title", "value": c.name})
		if r := e.doOn(0, tokenA, "PATCH", "/Users/"+uid, upd, map[string]string{"If-Match": v0}); r.status != 412 {
			t.Errorf("%s: If-Match of the old version: %d %s", c.name, r.status, r.raw)
		}
		if r := e.doOn(0, tokenA, "PATCH", "/Users/"+uid, upd, map[string]string{"If-Match": v1}); r.status != 204 {
			t.Errorf("%s: If-Match of the current version: %d %s", c.name, r.status, r.raw)
		} else if v2, _, _ := get(); r.header.Get("ETag") != v2 {
			t.Errorf("%s: PATCH ETag %s, GET %s", c.name, r.header.Get("ETag"), v2)
		}
	}
}

// ids lists the ids of a ListResponse's resources in order.
func (r resp) ids() []string {
	var out []string
	for _, x := range asAnyList(r.body["Resources"]) {
		id, _ := x.(map[string]any)["id"].(string)
		out = append(out, id)
	}
	return out
}

// TestRootSearchIsOneList: the root /.search counts every match, refuses
// an invalid filter, and sorts users and groups together (finding 4).
func TestRootSearchIsOneList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, func(c *ingest.Config, _ *ingest.Deps) { c.MaxResults = 2 })
	ub := e.mustCreateUser("root-b@example.com", map[string]any{"displayName": "B"})
	ud := e.mustCreateUser("root-d@example.com", map[string]any{"displayName": "D"})
	uf := e.mustCreateUser("root-f@example.com", map[string]any{"displayName": "F"})
	ga := e.do("POST", "/Groups", map[string]any{"displayName": "A"}).str("id")
	gc := e.do("POST", "/Groups", map[string]any{"displayName": "C"}).str("id")
	search := func(body string) resp {
		t.Helper()
		return e.do("POST", "/.search", body)
	}
	if r := search(`{"startIndex":1}`); r.status != 200 || r.body["totalResults"].(float64) != 5 || r.body["itemsPerPage"].(float64) != 2 {
		t.Errorf("totalResults of all: %d %s", r.status, r.raw)
	}
	for _, f := range []string{`bogus eq "x"`, `userName eq`, `(`} {
		b, _ := json.Marshal(map[string]any{"filter": f})
		if r := search(string(b)); r.status != 400 || r.str("scimType") != "invalidFilter" {
			t.Errorf("filter %q: %d %s", f, r.status, r.raw)
		}
	}
	// A filter on an attribute only users have selects users.
	if r := search(`{"filter":"userName sw \"root-\""}`); r.status != 200 || r.body["totalResults"].(float64) != 3 {
		t.Errorf("users-only filter: %d %s", r.status, r.raw)
	}
	if r := search(`{"sortBy":"bogus"}`); r.status != 400 || r.str("scimType") != "invalidValue" {
		t.Errorf("sortBy bogus: %d %s", r.status, r.raw)
	}
	want := []string{ga, ub, gc, ud, uf}
	var got []string
	for si := 1; si <= 5; si += 2 {
		r := search(fmt.Sprintf(`{"sortBy":"displayName","startIndex":%d,"count":2}`, si))
		if r.status != 200 || r.body["totalResults"].(float64) != 5 {
			t.Fatalf("sorted page %d: %d %s", si, r.status, r.raw)
		}
		got = append(got, r.ids()...)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sortBy displayName across kinds: %v, want %v", got, want)
	}
	r := search(`{"sortBy":"displayName","sortOrder":"descending","count":2}`)
	if fmt.Sprint(r.ids()) != fmt.Sprint([]string{uf, ud}) {
		t.Errorf("descending: %v", r.ids())
	}
}

// TestSortByUsesPrimaryAndPlacesMissingValues: sortBy on a multi-valued
// attribute sorts by the primary value; resources without a value come
// last ascending and first descending (finding 10, RFC 7644 §3.4.2.3).
func TestSortByUsesPrimaryAndPlacesMissingValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	// Primary "b…" but first value "z…".
	u1 := e.mustCreateUser("sort1@example.com", map[string]any{"emails": []any{
		map[string]any{"value": "z@example.com", "type": "home"}, map[string]any{"value": "b@example.com", "type": "work", "primary": true}}})
	u2 := e.mustCreateUser("sort2@example.com", map[string]any{"emails": []any{map[string]any{"value": "m@example.com", "type": "work"}}})
	u3 := e.do("POST", "/Users", map[string]any{"userName": "sort3@example.com"}).str("id")
	asc := e.do("GET", "/Users?sortBy=emails.value", nil)
	if fmt.Sprint(asc.ids()) != fmt.Sprint([]string{u1, u2, u3}) {
		t.Errorf("ascending: %v, want %v", asc.ids(), []string{u1, u2, u3})
	}
	desc := e.do("GET", "/Users?sortBy=emails.value&sortOrder=descending", nil)
	if fmt.Sprint(desc.ids()) != fmt.Sprint([]string{u3, u2, u1}) {
		t.Errorf("descending: %v, want %v", desc.ids(), []string{u3, u2, u1})
	}
	if r := e.do("GET", "/Users?sortBy=emails", nil); fmt.Sprint(r.ids()) != fmt.Sprint([]string{u1, u2, u3}) {
		t.Errorf("sortBy emails: %v", r.ids())
	}
}

// TestBulkRefusesDuplicateBulkIDs: a second operation with a bulkId
// already used is 400 invalidValue; references bind to the first (finding
// 5, RFC 7644 §3.7).
func TestBulkRefusesDuplicateBulkIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	body := map[string]any{
		"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:BulkRequest"},
		"Operations": []any{
			map[string]any{"method": "POST", "path": "/Users", "bulkId": "u", "data": map[string]any{"userName": "bulk-first@example.com"}},
			map[string]any{"method": "POST", "path": "/Users", "bulkId": "u", "data": map[string]any{"userName": "bulk-second@example.com"}},
			map[string]any{"method": "POST", "path": "/Groups", "bulkId": "g", "data": map[string]any{"displayName": "Bulk dup", "members": []any{map[string]any{"value": "bulkId:u"}}}},
		},
	}
	r := e.do("POST", "/Bulk", body)
	if r.status != 200 {
		t.Fatalf("bulk: %d %s", r.status, r.raw)
	}
	ops := asAnyList(r.body["Operations"])
	if len(ops) != 3 {
		t.Fatalf("results: %s", r.raw)
	}
	st := func(i int) string { return ops[i].(map[string]any)["status"].(string) }
	if st(0) != "201" || st(1) != "400" || st(2) != "201" {
		t.Fatalf("statuses %s %s %s: %s", st(0), st(1), st(2), r.raw)
	}
	if resp := ops[1].(map[string]any)["response"].(map[string]any); resp["scimType"] != "invalidValue" {
		t.Errorf("duplicate: %v", resp)
	}
	if l := e.do("GET", "/Users?filter="+url.QueryEscape(`userName eq "bulk-second@example.com"`), nil); l.body["totalResults"].(float64) != 0 {
		t.Errorf("the duplicate was created: %s", l.raw)
	}
	first := e.do("GET", "/Users?filter="+url.QueryEscape(`userName eq "bulk-first@example.com"`), nil).ids()
	loc, _ := ops[2].(map[string]any)["location"].(string)
	g := e.do("GET", loc[strings.LastIndex(loc, "/Groups/"):], nil)
	if len(first) != 1 || !strings.Contains(string(g.raw), first[0]) {
		t.Errorf("the reference did not bind to the first bulkId: %v %s", first, g.raw)
	}
}

// primaries lists the values of attr marked primary in a user.
func primaries(r resp, attr string) []string {
	var out []string
	for _, x := range asAnyList(r.body[attr]) {
		m := x.(map[string]any)
		if m["primary"] == true {
			out = append(out, fmt.Sprint(m["value"]))
		}
	}
	return out
}

// TestAtMostOnePrimary: two primary values in a POST or PUT are 400
// invalidValue (RFC 7643 §2.4); a PATCH that makes a value primary takes
// the flag from the previous one (RFC 7644 §3.5.2.1) (finding 6).
func TestAtMostOnePrimary(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	two := []any{map[string]any{"value": "a@example.com", "primary": true}, map[string]any{"value": "b@example.com", "primary": true}}
	if r := e.do("POST", "/Users", map[string]any{"userName": "prim0@example.com", "emails": two}); r.status != 400 || r.str("scimType") != "invalidValue" {
		t.Errorf("POST with two primary emails: %d %s", r.status, r.raw)
	}
	uid := e.mustCreateUser("prim@example.com") // one primary work e-mail
	phones := []any{map[string]any{"value": "1", "primary": true}, map[string]any{"value": "2", "primary": "True"}}
	if r := e.do("PUT", "/Users/"+uid, map[string]any{"userName": "prim@example.com", "phoneNumbers": phones}); r.status != 400 || r.str("scimType") != "invalidValue" {
		t.Errorf("PUT with two primary phoneNumbers: %d %s", r.status, r.raw)
	}
	if r := e.do("PATCH", "/Users/"+uid, patchBody(map[string]any{"op": "replace", "path": "emails", "value": two})); r.status != 400 {
		t.Errorf("PATCH replace with two primaries: %d %s", r.status, r.raw)
	}
	steps := []struct {
		name string
		op   map[string]any
		want string
	}{
		{"add a new primary", map[string]any{"op": "add", "path": "emails", "value": []any{map[string]any{"value": "home@example.com", "type": "home", "primary": true}}}, "home@example.com"},
		{"filtered primary", map[string]any{"op": "replace", "path": `emails[type eq "work"].primary`, "value": true}, "prim@example.com"},
		{"no-path add", map[string]any{"op": "add", "value": map[string]any{"emails": []any{map[string]any{"value": "other@example.com", "type": "other", "primary": true}}}}, "other@example.com"},
	}
	for _, st := range steps {
		if r := e.do("PATCH", "/Users/"+uid, patchBody(st.op)); r.status != 204 {
			t.Fatalf("%s: %d %s", st.name, r.status, r.raw)
		}
		r := e.do("GET", "/Users/"+uid, nil)
		if got := primaries(r, "emails"); len(got) != 1 || got[0] != st.want {
			t.Errorf("%s: primary e-mails %v, want [%s]: %s", st.name, got, st.want, r.raw)
		}
	}
}

// TestPatchPathBareSchemaURN: a PATCH path that is a schema URN applies
// the value's attributes on that schema, never answers 2xx while dropping
// them (finding 7).
func TestPatchPathBareSchemaURN(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	uid := e.mustCreateUser("urnpath@example.com")
	const ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	steps := []struct {
		name   string
		op     map[string]any
		status int
		check  func(doc map[string]any) bool
	}{
		{"extension URN", map[string]any{"op": "add", "path": ent, "value": map[string]any{"costCenter": "C", "department": "D"}}, 204,
			func(d map[string]any) bool {
				x, _ := d[ent].(map[string]any)
				return x["costCenter"] == "C" && x["department"] == "D"
			}},
		{"core URN", map[string]any{"op": "Replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User", "value": map[string]any{"title": "T", "name": map[string]any{"givenName": "G"}}}, 204,
			func(d map[string]any) bool {
				n, _ := d["name"].(map[string]any)
				return d["title"] == "T" && n["givenName"] == "G"
			}},
		{"extension URN in another case", map[string]any{"op": "replace", "path": strings.ToUpper(ent[:3]) + ent[3:], "value": map[string]any{"costCenter": "C2"}}, 204,
			func(d map[string]any) bool {
				x, _ := d[ent].(map[string]any)
				return x["costCenter"] == "C2" && x["department"] == "D"
			}},
		{"a non-object value", map[string]any{"op": "replace", "path": ent, "value": "C"}, 400, nil},
		{"remove of the core URN", map[string]any{"op": "remove", "path": "urn:ietf:params:scim:schemas:core:2.0:User"}, 400, nil},
		{"remove of the extension URN", map[string]any{"op": "remove", "path": ent}, 204,
			func(d map[string]any) bool { _, ok := d[ent]; return !ok && d["title"] == "T" }},
	}
	for _, st := range steps {
		r := e.do("PATCH", "/Users/"+uid, patchBody(st.op))
		if r.status != st.status {
			t.Fatalf("%s: %d %s", st.name, r.status, r.raw)
		}
		if st.check != nil {
			if g := e.do("GET", "/Users/"+uid, nil); !st.check(g.body) {
				t.Errorf("%s: %s", st.name, g.raw)
			}
		}
	}
}

// streamLastSeq is the last sequence of the resource bucket's stream.
func (e *env) streamLastSeq() uint64 {
	e.t.Helper()
	st, err := e.js.Stream(context.Background(), "KV_scim")
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.LastSeq
}

// TestNoOpUserWritesStoreNothing: a PUT or PATCH that leaves a user as it
// is writes no record (same ETag, no UPDATE event); a real change still
// does (finding 8).
func TestNoOpUserWritesStoreNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	body := userBody("noop@example.com", map[string]any{"title": "T", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "D"}})
	uid := e.mustCreateUser("noop@example.com", body)
	v0 := e.do("GET", "/Users/"+uid, nil).header.Get("ETag")
	seq := e.streamLastSeq()
	noops := []struct {
		name, method string
		body         any
	}{
		{"PUT of the same body", "PUT", body},
		{"PUT with read-only attributes and key case", "PUT", map[string]any{"id": uid, "meta": map[string]any{"version": "x"}, "USERNAME": "noop@example.com", "title": "T",
			"name": map[string]any{"givenName": "Test", "familyName": "User"}, "emails": []any{map[string]any{"value": "noop@example.com", "type": "work", "primary": true}}, "active": true,
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "D"}}},
		{"PATCH replace with the current value", "PATCH", patchBody(map[string]any{"op": "replace", "path": "title", "value": "T"})},
		{"PATCH no-path with current values", "PATCH", patchBody(map[string]any{"op": "replace", "value": map[string]any{"active": "True", "name.givenName": "Test"}})},
		{"PATCH remove of an absent attribute", "PATCH", patchBody(map[string]any{"op": "remove", "path": "nickName"})},
	}
	for _, c := range noops {
		for replica := range 2 { // the second replica decides on the same state
			r := e.doOn(replica, tokenA, c.method, "/Users/"+uid, c.body, nil)
			if r.status != 200 && r.status != 204 {
				t.Fatalf("%s: %d %s", c.name, r.status, r.raw)
			}
			if r.header.Get("ETag") != v0 {
				t.Errorf("%s on replica %d: ETag %s, want %s", c.name, replica, r.header.Get("ETag"), v0)
			}
			if got := e.streamLastSeq(); got != seq {
				t.Errorf("%s on replica %d: stream moved %d → %d", c.name, replica, seq, got)
				seq = got
			}
		}
	}
	if r := e.do("PATCH", "/Users/"+uid, patchBody(map[string]any{"op": "replace", "path": "title", "value": "T2"})); r.status != 204 || r.header.Get("ETag") == v0 || e.streamLastSeq() != seq+1 {
		t.Errorf("a real change: %d ETag %s, stream %d → %d", r.status, r.header.Get("ETag"), seq, e.streamLastSeq())
	}
}

// TestProjectionKeepsAlwaysReturnedAndTrimsSchemas: excludedAttributes
// never removes a returned "always" attribute (id, userName), and after a
// projection "schemas" lists only the extensions still present (finding 9).
func TestProjectionKeepsAlwaysReturnedAndTrimsSchemas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	const ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	uid := e.mustCreateUser("proj@example.com", map[string]any{"title": "T", ent: map[string]any{"department": "D"}})
	schemasOf := func(r resp) string { return fmt.Sprint(r.body["schemas"]) }
	r := e.do("GET", "/Users/"+uid+"?excludedAttributes=userName,id,schemas,title", nil)
	if r.str("userName") != "proj@example.com" || r.str("id") != uid || r.body["schemas"] == nil || r.body["title"] != nil {
		t.Errorf("excludedAttributes=userName,id,schemas,title: %s", r.raw)
	}
	r = e.do("GET", "/Users/"+uid+"?excludedAttributes="+url.QueryEscape(ent), nil)
	if r.body[ent] != nil || strings.Contains(schemasOf(r), ent) || !strings.Contains(schemasOf(r), "core:2.0:User") {
		t.Errorf("excluding the extension: %s", r.raw)
	}
	r = e.do("GET", "/Users?attributes=title&filter="+url.QueryEscape(`userName eq "proj@example.com"`), nil)
	res := asAnyList(r.body["Resources"])
	if len(res) != 1 || strings.Contains(fmt.Sprint(res[0].(map[string]any)["schemas"]), ent) || res[0].(map[string]any)["userName"] == nil {
		t.Errorf("attributes=title: %s", r.raw)
	}
	r = e.do("GET", "/Users/"+uid+"?attributes="+url.QueryEscape(ent+":department"), nil)
	if !strings.Contains(schemasOf(r), ent) {
		t.Errorf("attributes of the extension: %s", r.raw)
	}
}

// TestCaseVariantKeysAndOverlappingNoPathKeys: two keys differing only in
// case in one object are 400 invalidSyntax; overlapping no-path keys apply
// parents before dotted children, every time (finding 11).
func TestCaseVariantKeysAndOverlappingNoPathKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	uid := e.mustCreateUser("keys@example.com")
	bad := []struct{ method, path, body string }{
		{"POST", "/Users", `{"userName":"a@example.com","USERNAME":"b@example.com"}`},
		{"POST", "/Users", `{"userName":"c@example.com","name":{"givenName":"a","GivenName":"b"}}`},
		{"PUT", "/Users/" + uid, `{"userName":"keys@example.com","Title":"a","title":"b"}`},
		{"PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","value":{"title":"a","TITLE":"b"}}]}`},
		{"PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"title","value":"a","Value":"b"}]}`},
	}
	for _, c := range bad {
		if r := e.do(c.method, c.path, c.body); r.status != 400 || r.str("scimType") != "invalidSyntax" {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, r.status, r.raw)
		}
	}
	// The same request, many times: the dotted child wins over its parent.
	for i := range 20 {
		op := map[string]any{"op": "replace", "value": map[string]any{
			"name.givenName": fmt.Sprint("child", i), "name": map[string]any{"givenName": "parent", "familyName": "F"},
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "flat",
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":            map[string]any{"department": "object", "costCenter": "CC"},
		}}
		if r := e.do("PATCH", "/Users/"+uid, patchBody(op)); r.status != 204 {
			t.Fatalf("no-path PATCH: %d %s", r.status, r.raw)
		}
		g := e.do("GET", "/Users/"+uid, nil)
		name, _ := g.body["name"].(map[string]any)
		ent, _ := g.body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)
		if name["givenName"] != fmt.Sprint("child", i) || name["familyName"] != "F" || ent["department"] != "flat" || ent["costCenter"] != "CC" {
			t.Fatalf("round %d: name %v enterprise %v", i, name, ent)
		}
	}
}

// TestSmallerProtocolFindings: 413 carries no scimType (tooMany is for
// filters); Bulk takes "bulkId:" references only where a resource is
// named and answers a GET operation 405; a simple single-valued attribute
// sent as an array is 400 invalidValue (finding 13).
func TestSmallerProtocolFindings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, func(c *ingest.Config, _ *ingest.Deps) {
		c.BulkMaxOperations = 3
		c.MaxBodyBytes = 4096
		c.BulkMaxPayload = 4096
	})
	if r := e.do("POST", "/Bulk", map[string]any{"Operations": []any{1, 2, 3, 4}}); r.status != 413 || r.str("scimType") != "" {
		t.Errorf("too many bulk operations: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/Users", map[string]any{"userName": strings.Repeat("x", 5000)}); r.status != 413 || r.str("scimType") != "" {
		t.Errorf("body too large: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/Users", `{"userName":["single@example.com"]}`); r.status != 400 || r.str("scimType") != "invalidValue" {
		t.Errorf("userName as an array: %d %s", r.status, r.raw)
	}
	uid := e.mustCreateUser("bulkref@example.com")
	r := e.do("POST", "/Bulk", map[string]any{"Operations": []any{
		map[string]any{"method": "POST", "path": "/Users", "bulkId": "u", "data": map[string]any{"userName": "bulkref2@example.com", "title": "bulkId:not-a-reference"}},
		map[string]any{"method": "GET", "path": "/Users/" + uid},
		map[string]any{"method": "PATCH", "path": "/Users/" + uid, "data": patchBody(map[string]any{"op": "replace", "path": "title", "value": "bulkId:u"})},
	}})
	ops := asAnyList(r.body["Operations"])
	if r.status != 200 || len(ops) != 3 {
		t.Fatalf("bulk: %d %s", r.status, r.raw)
	}
	st := func(i int) string { return ops[i].(map[string]any)["status"].(string) }
	if st(0) != "201" || st(1) != "405" || st(2) != "200" {
		t.Errorf("statuses %s %s %s: %s", st(0), st(1), st(2), r.raw)
	}
	if g := e.do("GET", "/Users/"+uid, nil); g.str("title") != "bulkId:u" {
		t.Errorf("a title that looks like a reference was replaced: %s", g.raw)
	}
	// References still bind where a resource is named.
	r = e.do("POST", "/Bulk", map[string]any{"Operations": []any{
		map[string]any{"method": "PATCH", "path": "/Groups/bulkId:g", "data": patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": "bulkId:m"}}})},
		map[string]any{"method": "POST", "path": "/Groups", "bulkId": "g", "data": map[string]any{"displayName": "Bulk refs"}},
		map[string]any{"method": "POST", "path": "/Users", "bulkId": "m", "data": map[string]any{"userName": "bulkref3@example.com"}},
	}})
	ops = asAnyList(r.body["Operations"])
	if len(ops) != 3 || st(0) != "200" {
		t.Fatalf("references: %s", r.raw)
	}
	loc, _ := ops[1].(map[string]any)["location"].(string)
	if g := e.do("GET", loc[strings.LastIndex(loc, "/Groups/"):], nil); len(asAnyList(g.body["members"])) != 1 {
		t.Errorf("member by reference: %s", g.raw)
	}
}

// TestDiscoveryFilterAndNeOnAbsent: a filter on /Schemas or /ResourceTypes
// is 403 (RFC 7644 §4); `ne` matches a user without the attribute, as
// `not (… eq …)` does (finding 15).
func TestDiscoveryFilterAndNeOnAbsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	for _, p := range []string{"/Schemas", "/ResourceTypes", "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"} {
		if r := e.do("GET", p+"?filter="+url.QueryEscape(`id eq "x"`), nil); r.status != 403 || r.body["schemas"] == nil {
			t.Errorf("GET %s with a filter: %d %s", p, r.status, r.raw)
		}
		if r := e.do("GET", p, nil); r.status != 200 {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
	with := e.mustCreateUser("ne1@example.com", map[string]any{"title": "Boss"})
	without := e.mustCreateUser("ne2@example.com")
	for _, f := range []string{`title ne "zzz"`, `not (title eq "zzz")`} {
		r := e.do("GET", "/Users?filter="+url.QueryEscape(f), nil)
		if got := fmt.Sprint(r.ids()); got != fmt.Sprint([]string{with, without}) {
			t.Errorf("%s: %v", f, got)
		}
	}
	if r := e.do("GET", "/Users?filter="+url.QueryEscape(`title ne "Boss"`), nil); fmt.Sprint(r.ids()) != fmt.Sprint([]string{without}) {
		t.Errorf(`title ne "Boss": %v`, r.ids())
	}
}

// TestForwardedHeaders: proxy headers are used only when trusted, first
// entry only, scheme case-insensitive, RFC 7239 Forwarded first (finding
// 14).
func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	location := func(e *env, hdr map[string]string) string {
		t.Helper()
		r := e.doOn(0, tokenA, "GET", "/Users", nil, hdr)
		if r.status != 200 {
			t.Fatalf("GET: %d", r.status)
		}
		e.mustCreateUser(fmt.Sprintf("fwd%d@example.com", len(hdr)+len(fmt.Sprint(hdr))))
		l := e.doOn(0, tokenA, "GET", "/Users?count=1", nil, hdr)
		res := asAnyList(l.body["Resources"])
		loc, _ := res[0].(map[string]any)["meta"].(map[string]any)["location"].(string)
		return loc
	}
	untrusted := newEnv(t, 1)
	if loc := location(untrusted, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}); !strings.HasPrefix(loc, "http://127.0.0.1:") {
		t.Errorf("untrusted proxy headers used: %s", loc)
	}
	trusted := newEnv(t, 1, func(c *ingest.Config, _ *ingest.Deps) { c.TrustForwardedHeaders = true })
	cases := []struct {
		hdr  map[string]string
		want string
	}{
		{map[string]string{"X-Forwarded-Proto": "HTTPS", "X-Forwarded-Host": "scim.example.com"}, "https://scim.example.com/scim/v2/Users/"},
		{map[string]string{"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "a.example.com, b.internal"}, "https://a.example.com/scim/v2/Users/"},
		{map[string]string{"Forwarded": `for=1.2.3.4;proto=https;host="f.example.com:8443", for=5.6.7.8;proto=http;host=x`, "X-Forwarded-Host": "ignored.example"}, "https://f.example.com:8443/scim/v2/Users/"},
		{map[string]string{"X-Forwarded-Host": "bad host/../x"}, "http://127.0.0.1:"},
	}
	for _, c := range cases {
		if loc := location(trusted, c.hdr); !strings.HasPrefix(loc, c.want) {
			t.Errorf("%v: location %s, want prefix %s", c.hdr, loc, c.want)
		}
	}
}

// TestNameUniquenessIsUnicodeAware: userName and group displayName are one
// name across Unicode normalisation forms, full case folding and
// surrounding whitespace, in the claims, the indexes and `eq` filters
// (finding 12).
func TestNameUniquenessIsUnicodeAware(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	pairs := []struct{ first, second string }{
		{"\u00c4nne@example.com", "A\u0308nne@example.com"}, // NFC vs NFD
		{"sam@example.com", "\u017fam@example.com"},         // long s folds to s
		{"stra\u00dfe@example.com", "STRASSE@example.com"},  // ß folds to ss
		{"trail@example.com", "trail@example.com "},         // surrounding whitespace
	}
	for i, p := range pairs {
		r := e.doOn(0, tokenA, "POST", "/Users", map[string]any{"userName": p.first}, nil)
		if r.status != 201 {
			t.Fatalf("create %q: %d %s", p.first, r.status, r.raw)
		}
		id := r.str("id")
		if r := e.doOn(i%2, tokenA, "POST", "/Users", map[string]any{"userName": p.second}, nil); r.status != 409 || r.str("scimType") != "uniqueness" {
			t.Errorf("create %q after %q: %d %s", p.second, p.first, r.status, r.raw)
		}
		for _, f := range []string{`userName eq "` + p.second + `"`, `userName eq "` + p.second + `" and active eq true`} {
			if l := e.doOn(1, tokenA, "GET", "/Users?filter="+url.QueryEscape(f), nil, nil); fmt.Sprint(l.ids()) != fmt.Sprint([]string{id}) {
				t.Errorf("%s: %s", f, l.raw)
			}
		}
		gname := "Team " + p.first
		if r := e.do("POST", "/Groups", map[string]any{"displayName": gname}); r.status != 201 {
			t.Fatalf("group %q: %d %s", gname, r.status, r.raw)
		}
		if r := e.doOn(1, tokenA, "POST", "/Groups", map[string]any{"displayName": "Team " + p.second}, nil); r.status != 409 {
			t.Errorf("group %q after %q: %d %s", "Team "+p.second, gname, r.status, r.raw)
		}
	}
}

// TestViewBookkeepingIsBounded: closed memberships drop their revision
// once the watcher has delivered the close, a re-add still works, and
// deleted ids are forgotten after the tombstone TTL (finding 16).
func TestViewBookkeepingIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	svc := e.svcs[0]
	var members []any
	for i := range 30 {
		members = append(members, map[string]any{"value": e.mustCreateUser(fmt.Sprintf("bk%d@example.com", i))})
	}
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Bookkeeping", "members": members}).str("id")
	if n, _ := svc.ViewSizesForTest("acme"); n != 30 {
		t.Fatalf("memberRev after 30 adds: %d", n)
	}
	if r := e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "remove", "path": "members"})); r.status != 204 {
		t.Fatalf("remove all: %d %s", r.status, r.raw)
	}
	eventually(t, 10*time.Second, "closed memberships pruned", func() bool { n, _ := svc.ViewSizesForTest("acme"); return n == 0 })
	// Re-adding a member whose closed record exists in the bucket works.
	if r := e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "add", "path": "members", "value": members[:2]})); r.status != 204 {
		t.Fatalf("re-add: %d %s", r.status, r.raw)
	}
	if got := e.memberIDsOf(gid); len(got) != 2 {
		t.Fatalf("after re-add: %v", got)
	}
	// Tombstones expire.
	svc.SetTombstoneTTLForTest(time.Nanosecond)
	for i := 2; i < 30; i++ {
		id := members[i].(map[string]any)["value"].(string)
		if r := e.do("DELETE", "/Users/"+id, nil); r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.raw)
		}
	}
	if _, n := svc.ViewSizesForTest("acme"); n > 2 {
		t.Errorf("tombstones after 28 deletes with a 1ns TTL: %d", n)
	}
}

// TestGroupsByMemberFromTheIndex: `members.value eq` and `members[value
// eq]` on /Groups find exactly the user's groups (answered from the index,
// members not rendered when excluded) (finding 16).
func TestGroupsByMemberFromTheIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	u := e.mustCreateUser("bymember@example.com")
	other := e.mustCreateUser("other-member@example.com")
	g1 := e.do("POST", "/Groups", map[string]any{"displayName": "ByMember 1", "members": []any{map[string]any{"value": u}, map[string]any{"value": other}}}).str("id")
	g2 := e.do("POST", "/Groups", map[string]any{"displayName": "ByMember 2", "members": []any{map[string]any{"value": u}}}).str("id")
	e.do("POST", "/Groups", map[string]any{"displayName": "ByMember 3", "members": []any{map[string]any{"value": other}}})
	cases := []struct {
		filter string
		want   []string
	}{
		{`members.value eq "` + u + `"`, []string{g1, g2}},
		{`members[value eq "` + u + `"]`, []string{g1, g2}},
		{`members.value eq "` + u + `" and displayName eq "ByMember 2"`, []string{g2}},
		{`members.value eq "nobody"`, nil},
	}
	for _, c := range cases {
		r := e.do("GET", "/Groups?excludedAttributes=members&filter="+url.QueryEscape(c.filter), nil)
		got := r.ids()
		slices.Sort(got)
		want := slices.Clone(c.want)
		slices.Sort(want)
		if r.status != 200 || fmt.Sprint(got) != fmt.Sprint(want) || strings.Contains(string(r.raw), `"members"`) {
			t.Errorf("%s: %d %v, want %v: %s", c.filter, r.status, got, want, r.raw)
		}
	}
	if r := e.do("GET", "/Groups?filter="+url.QueryEscape(`members.value eq "`+u+`"`), nil); !strings.Contains(string(r.raw), other) {
		t.Errorf("members not rendered when wanted: %s", r.raw)
	}
}

// TestNonStringSubValuesAreRefused: `"emails": [1, 2]` or a boolean e-mail
// value is 400 invalidValue, not coerced to a string (finding 13).
func TestNonStringSubValuesAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	for _, b := range []string{
		`{"userName":"num1@example.com","emails":[1,2]}`,
		`{"userName":"num2@example.com","emails":[{"value":true}]}`,
		`{"userName":"num3@example.com","phoneNumbers":[{"value":"1","type":7}]}`,
	} {
		if r := e.do("POST", "/Users", b); r.status != 400 || r.str("scimType") != "invalidValue" {
			t.Errorf("%s: %d %s", b, r.status, r.raw)
		}
	}
	if r := e.do("POST", "/Users", `{"userName":"num4@example.com","emails":["a@example.com"]}`); r.status != 201 {
		t.Errorf("a bare string e-mail: %d %s", r.status, r.raw)
	}
}
