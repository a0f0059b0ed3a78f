package ingest_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/scimcord/scimcord/services/ingest"
)

// TestGroupPutWith100000Members: a PUT (and a PATCH replace) of a
// 100,000-member group works, and GET returns every member. Skipped with
// -short (it writes 200,000 membership records).
func TestGroupPutWith100000Members(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200,000 records")
	}
	t.Parallel()
	const n = 100000
	e := newEnv(t, 1, func(c *ingest.Config, _ *ingest.Deps) { c.MaxBodyBytes = 16 << 20; c.WriteTimeout = 30 * time.Second })
	seedUsers(t, e.js, "acme", 2*n, 0)
	eventually(t, 2*time.Minute, "seeded users in the view", func() bool {
		return e.do("GET", "/Users?count=0", nil).body["totalResults"] == float64(2*n)
	})
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Everyone"}).str("id")
	members := func(from int) []any {
		out := make([]any, n)
		for i := range n {
			out[i] = map[string]any{"value": seedUserID(from + i)}
		}
		return out
	}
	start := time.Now()
	if r := e.do("PUT", "/Groups/"+gid, map[string]any{"displayName": "Everyone", "members": members(0)}); r.status != 200 {
		t.Fatalf("PUT with %d members: %d %.300s", n, r.status, r.raw)
	}
	t.Logf("PUT with %d members: %s", n, time.Since(start))
	count := func() int {
		r := e.do("GET", "/Groups/"+gid, nil)
		var g struct{ Members []json.RawMessage }
		_ = json.Unmarshal(r.raw, &g)
		return len(g.Members)
	}
	if got := count(); got != n {
		t.Fatalf("GET after PUT: %d members, want %d", got, n)
	}
	start = time.Now()
	r := e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "replace", "path": "members", "value": members(n)}))
	if r.status != 204 {
		t.Fatalf("PATCH replace with %d members: %d %.300s", n, r.status, r.raw)
	}
	t.Logf("PATCH replace of %d members by %d others: %s", n, n, time.Since(start))
	if got := count(); got != n {
		t.Fatalf("GET after replace: %d members, want %d", got, n)
	}
}
