package rules

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// bigRuleSet has n group rules (Group-i → role i), every 20th one with a CEL
// condition, plus a default role.
func bigRuleSet(b *testing.B, n int, withCEL bool) *RuleSet {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("rules:\n  - name: staff\n    all_active_users: true\n    roles: [{id: \"1100000000000000103\"}]\n")
	for i := range n {
		fmt.Fprintf(&sb, "  - name: r%d\n    groups: [{display_name: Group-%d}, {external_id: ext-%d}]\n    roles: [{id: \"%d\"}]\n", i, i, i, 1100000000000010000+i)
		if withCEL && i%20 == 0 {
			fmt.Fprintf(&sb, "    when: 'has(user.enterprise.department) && user.enterprise.department == \"Dept-%d\"'\n", i%7)
		}
	}
	return mustCompile(b, sb.String())
}

func benchMember(groups int) *Member {
	m := &Member{UserID: "u1", Active: true,
		UserJSON: []byte(`{"userName":"a@example.com","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Dept-0"}}`)}
	for i := range groups {
		m.Groups = append(m.Groups, Group{ID: fmt.Sprint("g", i), DisplayName: fmt.Sprint("Group-", i*37%1000)})
	}
	return m
}

// BenchmarkResolvePerMember is the in-process cost of resolving one member
// (10 groups) against 1,000 rules.
func BenchmarkResolvePerMember(b *testing.B) {
	for _, tc := range []struct {
		name string
		cel  bool
	}{{"1000-group-rules", false}, {"1000-rules-50-CEL", true}} {
		b.Run(tc.name, func(b *testing.B) {
			rs := bigRuleSet(b, 1000, tc.cel)
			ctx := context.Background()
			m := benchMember(10)
			b.ReportAllocs()
			for b.Loop() {
				// The user JSON is decoded for CEL on every resolve, as for a new member.
				if got, err := rs.Resolve(ctx, m); err != nil || len(got) == 0 {
					b.Fatal("no roles", err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "members/s")
		})
	}
}

// BenchmarkCompile1000Rules is the cost of loading (validating and compiling)
// a rule set of 1,000 rules, paid once per version on every replica.
func BenchmarkCompile1000Rules(b *testing.B) {
	for b.Loop() {
		bigRuleSet(b, 1000, true)
	}
}
