package ingest_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/services/ingest"
)

// BenchmarkGroupsByMember: Entra/Okta's "groups of this user" query
// `GET /Groups?filter=members.value eq "u"&excludedAttributes=members` on
// 20,000 users in 200 groups of 100 members and one group of all 20,000.
// Reports µs per query (before the members index it rendered every member
// of every group).
func BenchmarkGroupsByMember(b *testing.B) {
	const users, groups = 20000, 200
	ns, js := benchNATS(b)
	seedUsers(b, js, "acme", users, 0)
	for g := range groups {
		seedGroup(b, js, "acme", fmt.Sprintf("grp-%d", g), fmt.Sprintf("Group %d", g), g*100, 100)
	}
	seedGroup(b, js, "acme", "grp-all", "Everyone", 0, users)
	e := &env{t: b, nats: ns, js: js, ts: testTenants(b)}
	e.addReplica(func(c *ingest.Config, _ *ingest.Deps) { c.ConsistentReads = true })
	waitUsers(b, e, users)
	q := e.urls[0] + "/Groups?excludedAttributes=members&filter=" + url.QueryEscape(fmt.Sprintf(`members.value eq "%s"`, seedUserID(12345)))
	eventually(b, time.Minute, "memberships in the view", func() bool {
		st, body := benchDo(b, "GET", q, nil)
		return st == 200 && len(body) > 0 && contains(body, `"totalResults":2`)
	})
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if st, body := benchDo(b, "GET", q, nil); st != 200 || !contains(body, `"totalResults":2`) {
			b.Fatalf("query: %d %.300s", st, body)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "us/query")
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// BenchmarkUnindexedUserFilter: a filter no index answers
// (`name.familyName eq "…"`) scans and decodes all 20,000 users: µs per
// query (the cost a parsed cache in the view would remove).
func BenchmarkUnindexedUserFilter(b *testing.B) {
	const users = 20000
	ns, js := benchNATS(b)
	seedUsers(b, js, "acme", users, 0)
	e := &env{t: b, nats: ns, js: js, ts: testTenants(b)}
	e.addReplica(func(c *ingest.Config, _ *ingest.Deps) { c.ConsistentReads = true })
	waitUsers(b, e, users)
	q := e.urls[0] + "/Users?filter=" + url.QueryEscape(`name.familyName eq "12345"`)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if st, body := benchDo(b, "GET", q, nil); st != 200 || !contains(body, `"totalResults":1`) {
			b.Fatalf("query: %d %.300s", st, body)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "us/query")
}
