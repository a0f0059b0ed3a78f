package ingest_test

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/scimcord/scimcord/services/ingest"
)

func q(s string) string { return url.QueryEscape(s) }

// TestServiceProviderConfigAdvertisesWhatIsTrue checks every capability
// /ServiceProviderConfig advertises by using it over HTTP.
func TestServiceProviderConfigAdvertisesWhatIsTrue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, func(c *ingest.Config, _ *ingest.Deps) { c.MaxResults = 5; c.BulkMaxOperations = 3 })
	spc := e.do("GET", "/ServiceProviderConfig", nil)
	if spc.status != 200 {
		t.Fatalf("GET /ServiceProviderConfig: %d", spc.status)
	}
	sub := func(k string) map[string]any { m, _ := spc.body[k].(map[string]any); return m }
	for _, k := range []string{"patch", "bulk", "filter", "sort", "etag"} {
		if sub(k)["supported"] != true {
			t.Fatalf("%s.supported = %v", k, sub(k)["supported"])
		}
	}
	if sub("changePassword")["supported"] != false {
		t.Fatalf("changePassword must not be advertised")
	}
	if sub("filter")["maxResults"] != float64(5) || sub("bulk")["maxOperations"] != float64(3) {
		t.Fatalf("limits not advertised: %s", spc.raw)
	}
	t.Run("etag: a stale If-Match is 412", func(t *testing.T) {
		id := e.mustCreateUser("etag@example.com")
		r := e.doOn(0, tokenA, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "x"}), map[string]string{"If-Match": `W/"999999"`})
		if r.status != 412 {
			t.Fatalf("status %d, want 412: %s", r.status, r.raw)
		}
	})
	t.Run("filter.maxResults caps a page", func(t *testing.T) {
		for i := range 6 {
			e.mustCreateUser(fmt.Sprintf("cap%d@example.com", i))
		}
		r := e.do("GET", "/Users?count=100&filter="+q(`userName sw "cap"`), nil)
		if r.body["totalResults"] != float64(6) || len(r.body["Resources"].([]any)) != 5 {
			t.Fatalf("got total %v, page %d", r.body["totalResults"], len(r.body["Resources"].([]any)))
		}
	})
	t.Run("sort: sortBy userName descending", func(t *testing.T) {
		r := e.do("GET", "/Users?sortBy=userName&sortOrder=descending&filter="+q(`userName sw "cap"`), nil)
		res := r.body["Resources"].([]any)
		if res[0].(map[string]any)["userName"] != "cap5@example.com" {
			t.Fatalf("first = %v", res[0].(map[string]any)["userName"])
		}
	})
	t.Run("bulk: bulkId references and maxOperations", func(t *testing.T) {
		r := e.do("POST", "/Bulk", map[string]any{
			"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:BulkRequest"},
			"Operations": []any{
				map[string]any{"method": "POST", "path": "/Groups", "bulkId": "g", "data": map[string]any{"displayName": "Bulk", "members": []any{map[string]any{"value": "bulkId:u"}}}},
				map[string]any{"method": "POST", "path": "/Users", "bulkId": "u", "data": userBody("bulk@example.com")},
			},
		})
		if r.status != 200 {
			t.Fatalf("bulk: %d %s", r.status, r.raw)
		}
		ops := r.body["Operations"].([]any)
		if len(ops) != 2 || ops[0].(map[string]any)["status"] != "201" || ops[1].(map[string]any)["status"] != "201" {
			t.Fatalf("bulk results: %s", r.raw)
		}
		loc := ops[0].(map[string]any)["location"].(string)
		g := e.do("GET", loc[strings.Index(loc, "/Groups"):], nil)
		if m := g.body["members"].([]any); len(m) != 1 {
			t.Fatalf("bulkId reference not resolved: %s", g.raw)
		}
		tooMany := e.do("POST", "/Bulk", map[string]any{"Operations": []any{1, 2, 3, 4}})
		if tooMany.status != 413 {
			t.Fatalf("4 operations over a limit of 3: %d", tooMany.status)
		}
	})
}

func TestETags(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	id := e.mustCreateUser("tag@example.com")
	g := e.do("GET", "/Users/"+id, nil)
	tag := g.header.Get("ETag")
	if !strings.HasPrefix(tag, `W/"`) || tag != g.body["meta"].(map[string]any)["version"] {
		t.Fatalf("ETag %q, meta.version %v", tag, g.body["meta"])
	}
	if r := e.doOn(0, tokenA, "GET", "/Users/"+id, nil, map[string]string{"If-None-Match": tag}); r.status != 304 {
		t.Fatalf("If-None-Match current: %d, want 304", r.status)
	}
	ok := e.doOn(0, tokenA, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": "nickName", "value": "t"}), map[string]string{"If-Match": tag})
	if ok.status != 204 || ok.header.Get("ETag") == tag {
		t.Fatalf("PATCH with current If-Match: %d, ETag %q", ok.status, ok.header.Get("ETag"))
	}
	cases := []struct {
		name   string
		method string
		body   any
	}{
		{"stale PATCH is 412", "PATCH", patchBody(map[string]any{"op": "replace", "path": "nickName", "value": "u"})},
		{"stale PUT is 412", "PUT", userBody("tag@example.com")},
		{"stale DELETE is 412", "DELETE", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doOn(0, tokenA, tc.method, "/Users/"+id, tc.body, map[string]string{"If-Match": tag})
			if r.status != 412 {
				t.Fatalf("status %d, want 412: %s", r.status, r.raw)
			}
		})
	}
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Tagged"}).str("id")
	gtag := e.do("GET", "/Groups/"+gid, nil).header.Get("ETag")
	e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": id}}}))
	if now := e.do("GET", "/Groups/"+gid, nil).header.Get("ETag"); now == gtag {
		t.Fatalf("a membership change must change the group's ETag (%s)", now)
	}
}

func TestFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ada := e.mustCreateUser("ada@example.com", map[string]any{
		"displayName": "Ada Lovelace", "title": "Countess",
		"emails": []any{map[string]any{"value": "ada@work.example", "type": "work"}, map[string]any{"value": "ada@home.example", "type": "home"}},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "Engineering"},
		"urn:ietf:params:scim:schemas:extension:discord:2.0:User":    map[string]any{"userId": "1100000000000001001"},
	})
	bob := e.mustCreateUser("bob@example.com", map[string]any{"displayName": "Bob", "active": false, "externalId": "B-1"})
	cases := []struct {
		filter string
		want   []string
	}{
		{`userName eq "ADA@example.com"`, []string{ada}},
		{`UserName Eq "ada@example.com"`, []string{ada}},
		{`userName eq ada@example.com`, []string{ada}},
		{`externalId eq "B-1"`, []string{bob}},
		{`externalId eq "b-1"`, nil},
		{`displayName co "love"`, []string{ada}},
		{`userName sw "b"`, []string{bob}},
		{`userName ew "example.com" and active eq false`, []string{bob}},
		{`active eq true or externalId eq "B-1"`, []string{ada, bob}},
		{`not (active eq true)`, []string{bob}},
		{`title pr`, []string{ada}},
		{`emails[type eq "home" and value co "home"]`, []string{ada}},
		{`emails.value eq "ada@work.example"`, []string{ada}},
		{`emails[type eq "work"].value eq "ada@work.example"`, []string{ada}},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "engineering"`, []string{ada}},
		{`urn:ietf:params:scim:schemas:extension:discord:2.0:User:userId eq "1100000000000001001"`, []string{ada}},
		{`meta.created gt "2000-01-01T00:00:00Z"`, []string{ada, bob}},
		{`meta.created lt "2000-01-01T00:00:00Z"`, nil},
		{`id eq "` + bob + `"`, []string{bob}},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			r := e.do("GET", "/Users?filter="+q(tc.filter), nil)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.raw)
			}
			var got []string
			for _, res := range r.body["Resources"].([]any) {
				got = append(got, res.(map[string]any)["id"].(string))
			}
			if strings.Join(sorted(got), ",") != strings.Join(sorted(tc.want), ",") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{`userName eq`, `nope eq "x"`, `emails[type eq "work"`, `userName zz "x"`, `name.nope eq "x"`} {
		t.Run("invalid "+bad, func(t *testing.T) {
			r := e.do("GET", "/Users?filter="+q(bad), nil)
			if r.status != 400 || r.str("scimType") != "invalidFilter" {
				t.Fatalf("status %d %s, want 400 invalidFilter", r.status, r.raw)
			}
		})
	}
	t.Run("POST /.search", func(t *testing.T) {
		r := e.do("POST", "/Users/.search", map[string]any{
			"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:SearchRequest"},
			"filter":  `userName eq "bob@example.com"`, "attributes": []string{"userName"}, "startIndex": 1, "count": 10,
		})
		if r.status != 200 || r.body["totalResults"] != float64(1) {
			t.Fatalf("search: %d %s", r.status, r.raw)
		}
		if _, has := r.body["Resources"].([]any)[0].(map[string]any)["emails"]; has {
			t.Fatalf("attributes not applied: %s", r.raw)
		}
	})
}

// TestReplicasSeeEachOthersWritesAtOnce: IdPs create and immediately look up,
// possibly through another replica behind the load balancer.
func TestReplicasSeeEachOthersWritesAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	for i := range 10 {
		name := fmt.Sprintf("replica%d@example.com", i)
		c := e.doOn(i%2, tokenA, "POST", "/Users", userBody(name), nil)
		if c.status != 201 {
			t.Fatalf("create: %d %s", c.status, c.raw)
		}
		other := (i + 1) % 2
		if g := e.doOn(other, tokenA, "GET", "/Users/"+c.str("id"), nil, nil); g.status != 200 {
			t.Fatalf("GET on the other replica right after the create: %d", g.status)
		}
		f := e.doOn(other, tokenA, "GET", "/Users?filter="+q(`userName eq "`+name+`"`), nil, nil)
		if f.body["totalResults"] != float64(1) {
			t.Fatalf("filter on the other replica right after the create: %s", f.raw)
		}
		p := e.doOn(other, tokenA, "PATCH", "/Users/"+c.str("id"), patchBody(map[string]any{"op": "replace", "path": "active", "value": false}), nil)
		if p.status != 204 {
			t.Fatalf("PATCH on the other replica: %d %s", p.status, p.raw)
		}
		g := e.doOn(i%2, tokenA, "GET", "/Users/"+c.str("id"), nil, nil)
		if g.body["active"] != false {
			t.Fatalf("first replica does not see the other's PATCH: %s", g.raw)
		}
		// An ETag read on one replica is current on the other.
		m := e.doOn(other, tokenA, "PATCH", "/Users/"+c.str("id"), patchBody(map[string]any{"op": "replace", "path": "active", "value": true}),
			map[string]string{"If-Match": g.header.Get("ETag")})
		if m.status != 204 {
			t.Fatalf("If-Match with the other replica's ETag: %d %s", m.status, m.raw)
		}
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	id := e.mustCreateUser("shared@example.com")
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Shared"}).str("id")
	cases := []struct {
		name   string
		method string
		path   string
		body   any
		status int
	}{
		{"B cannot read A's user", "GET", "/Users/" + id, nil, 404},
		{"B cannot patch A's user", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": "active", "value": false}), 404},
		{"B cannot delete A's group", "DELETE", "/Groups/" + gid, nil, 404},
		{"B's filter does not see A's user", "GET", "/Users?filter=" + q(`userName eq "shared@example.com"`), nil, 200},
		{"B may use the same userName", "POST", "/Users", userBody("shared@example.com"), 201},
		{"B may use the same group name", "POST", "/Groups", map[string]any{"displayName": "Shared"}, 201},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doOn(0, tokenB, tc.method, tc.path, tc.body, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.method == "GET" && tc.status == 200 && r.body["totalResults"] != float64(0) {
				t.Fatalf("tenant B sees A's data: %s", r.raw)
			}
		})
	}
	if r := e.do("GET", "/Users/"+id, nil); r.status != 200 || r.body["active"] != true {
		t.Fatalf("A's user changed: %s", r.raw)
	}
}

// TestConcurrentCreatesOneWins: uniqueness holds under concurrent creates,
// on one replica and across two.
func TestConcurrentCreatesOneWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	cases := []struct {
		name string
		path string
		body func(i int) any
	}{
		{"userName, case-insensitively", "/Users", func(i int) any {
			if i%2 == 0 {
				return userBody("race@example.com")
			}
			return userBody("RACE@example.com")
		}},
		{"group displayName", "/Groups", func(int) any { return map[string]any{"displayName": "Racers"} }},
		{"Discord userId", "/Users", func(i int) any {
			return userBody(fmt.Sprintf("d%d@example.com", i), map[string]any{"urn:ietf:params:scim:schemas:extension:discord:2.0:User": map[string]any{"userId": "1100000000000001009"}})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const n = 16
			statuses := make([]int, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { statuses[i] = e.doOn(i%2, tokenA, "POST", tc.path, tc.body(i), nil).status })
			}
			wg.Wait()
			created := 0
			for _, s := range statuses {
				switch s {
				case 201:
					created++
				case 409:
				default:
					t.Fatalf("unexpected status %d (all: %v)", s, statuses)
				}
			}
			if created != 1 {
				t.Fatalf("%d creates succeeded, want exactly 1 (%v)", created, statuses)
			}
		})
	}
}

// TestConcurrentMembershipPatchesLoseNothing: Okta sends membership PATCHes
// in parallel; every one must land.
func TestConcurrentMembershipPatchesLoseNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Parallel"}).str("id")
	const n = 20
	ids := make([]string, n)
	for i := range n {
		ids[i] = e.mustCreateUser(fmt.Sprintf("p%d@example.com", i))
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := e.doOn(i%2, tokenA, "PATCH", "/Groups/"+gid, patchBody(
				map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": ids[i]}}},
				map[string]any{"op": "replace", "path": "displayName", "value": "Parallel"},
			), nil)
			if r.status != 204 {
				t.Errorf("PATCH %d: %d %s", i, r.status, r.raw)
			}
		})
	}
	wg.Wait()
	g := e.do("GET", "/Groups/"+gid, nil)
	if m := g.body["members"].([]any); len(m) != n {
		t.Fatalf("%d members after %d parallel adds", len(m), n)
	}
}

func TestRequestLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, func(c *ingest.Config, _ *ingest.Deps) { c.MaxBodyBytes = 1024 })
	big := userBody("big@example.com", map[string]any{"displayName": strings.Repeat("x", 2000)})
	if r := e.do("POST", "/Users", big); r.status != 413 || r.str("status") != "413" {
		t.Fatalf("oversized body: %d %s", r.status, r.raw)
	}
	if r := e.doOn(0, tokenA, "POST", "/Users", `<user/>`, map[string]string{"Content-Type": "application/xml"}); r.status != 415 {
		t.Fatalf("XML body: %d %s", r.status, r.raw)
	}
	if r := e.doOn(0, tokenA, "POST", "/Users", userBody("json@example.com"), map[string]string{"Content-Type": "application/json"}); r.status != 201 {
		t.Fatalf("application/json: %d %s", r.status, r.raw)
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, func(_ *ingest.Config, d *ingest.Deps) { d.Roles = devRoles })
	rt := e.do("GET", "/ResourceTypes/User", nil)
	ext := rt.body["schemaExtensions"].([]any)
	found := false
	for _, x := range ext {
		m := x.(map[string]any)
		if m["schema"] == ingest.SchemaDiscord && m["required"] == false {
			found = true
		}
	}
	if !found {
		t.Fatalf("discord extension missing from /ResourceTypes/User: %s", rt.raw)
	}
	sc := e.do("GET", "/Schemas/"+ingest.SchemaDiscord, nil)
	attrs := sc.body["attributes"].([]any)
	if len(attrs) != 1 || attrs[0].(map[string]any)["name"] != "userId" || attrs[0].(map[string]any)["uniqueness"] != "server" {
		t.Fatalf("discord schema: %s", sc.raw)
	}
	if r := e.do("GET", "/Schemas", nil); r.body["totalResults"] != float64(4) {
		t.Fatalf("/Schemas: %s", r.raw)
	}
	roles := e.do("GET", "/Roles", nil)
	if roles.body["totalResults"] != float64(3) {
		t.Fatalf("/Roles: %s", roles.raw)
	}
}

func TestPatchResponse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, func(c *ingest.Config, _ *ingest.Deps) { c.PatchResponseByTenant = map[string]string{"globex": "200"} })
	op := patchBody(map[string]any{"op": "replace", "path": "nickName", "value": "n"})
	idA := e.mustCreateUser("pa@example.com")
	idB := e.doOn(0, tokenB, "POST", "/Users", userBody("pb@example.com"), nil).str("id")
	cases := []struct {
		name   string
		token  string
		path   string
		status int
	}{
		{"default is 204 No Content", tokenA, "/Users/" + idA, 204},
		{"attributes on the request gives 200 with the resource", tokenA, "/Users/" + idA + "?attributes=nickName", 200},
		{"excludedAttributes on the request gives 200", tokenA, "/Users/" + idA + "?excludedAttributes=emails", 200},
		{"a tenant set to 200 gets the resource", tokenB, "/Users/" + idB, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doOn(0, tc.token, "PATCH", tc.path, op, nil)
			if r.status != tc.status || (tc.status == 200 && r.str("nickName") != "n") || r.header.Get("ETag") == "" {
				t.Fatalf("status %d ETag %q body %s", r.status, r.header.Get("ETag"), r.raw)
			}
		})
	}
}
