package rules

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

const (
	rEng    = "1100000000000000101"
	rDesign = "1100000000000000102"
	rStaff  = "1100000000000000103"
	rMod    = "1100000000000000104"
)

func mustCompile(t testing.TB, doc string) *RuleSet {
	t.Helper()
	g, err := DecodeGuild("dev", "1100000000000000000", []byte(doc))
	if err != nil {
		t.Fatalf("DecodeGuild: %v", err)
	}
	rs, err := Compile("dev", 7, g)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return rs
}

// resolve is Resolve that fails the test on an error.
func resolve(t testing.TB, rs *RuleSet, m *Member) []RoleRef {
	t.Helper()
	got, err := rs.Resolve(context.Background(), m)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return got
}

// explain is Explain that fails the test on an error.
func explain(t testing.TB, rs *RuleSet, m *Member) []RoleDecision {
	t.Helper()
	got, err := rs.Explain(context.Background(), m)
	if err != nil {
		t.Fatalf("Explain: %v", err)
	}
	return got
}

func keys(refs []RoleRef) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.Key()
	}
	return out
}

const kinds = `rules:
  - name: eng
    groups: [{display_name: Engineering}, {external_id: 00g-platform}, {id: g-sre}]
    roles: [{id: "1100000000000000101"}]
  - name: design
    groups: [{display_name: Design}]
    roles: [{id: "1100000000000000102"}, {name: Creatives}]
  - name: staff
    all_active_users: true
    roles: [{id: "1100000000000000103"}]
  - name: eng-dept
    when: 'has(user.enterprise.department) && user.enterprise.department == "Engineering" && user.active'
    roles: [{id: "1100000000000000101"}]
  - name: design-leads
    groups: [{display_name: Design}]
    when: 'user.title == "Lead"'
    roles: [{id: "1100000000000000104"}]
  - name: in-two-groups
    when: 'groups.exists(g, g.displayName == "Design") && groups.exists(g, g.displayName == "Engineering")'
    roles: [{name: Bridge}]
`

func TestResolveEveryRuleKind(t *testing.T) {
	t.Parallel()
	rs := mustCompile(t, kinds)
	ent := `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Engineering"}}`
	tests := []struct {
		name string
		m    Member
		want []string
	}{
		{"several groups to one role: by displayName", Member{Active: true, Groups: []Group{{DisplayName: "Engineering"}}}, []string{rEng, rStaff}},
		{"several groups to one role: by externalId", Member{Active: true, Groups: []Group{{ExternalID: "00g-platform", DisplayName: "Platform"}}}, []string{rEng, rStaff}},
		{"several groups to one role: by id", Member{Active: true, Groups: []Group{{ID: "g-sre"}}}, []string{rEng, rStaff}},
		{"one group to several roles, by id and by name", Member{Active: true, Groups: []Group{{DisplayName: "Design"}}}, []string{rDesign, rStaff, "name:Creatives"}},
		{"default role for every active user", Member{Active: true}, []string{rStaff}},
		{"CEL attribute rule over the enterprise extension", Member{Active: true, UserJSON: []byte(ent)}, []string{rEng, rStaff}},
		{"groups and when must both hold", Member{Active: true, Groups: []Group{{DisplayName: "Design"}}, UserJSON: []byte(`{"title":"Lead"}`)}, []string{rDesign, rStaff, rMod, "name:Creatives"}},
		{"when alone over groups", Member{Active: true, Groups: []Group{{DisplayName: "Design"}, {DisplayName: "Engineering"}}}, []string{rEng, rDesign, rStaff, "name:Bridge", "name:Creatives"}},
		{"CEL error (missing title) does not match", Member{Active: true, Groups: []Group{{DisplayName: "Design"}}, UserJSON: []byte(`{}`)}, []string{rDesign, rStaff, "name:Creatives"}},
		{"inactive user gets nothing", Member{Active: false, Groups: []Group{{DisplayName: "Engineering"}}, UserJSON: []byte(ent)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := keys(resolve(t, rs, &tc.m))
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("Resolve = %v, want %v", got, tc.want)
			}
			// Explain grants exactly what Resolve gives.
			var granted []string
			for _, d := range explain(t, rs, &tc.m) {
				if d.Granted {
					granted = append(granted, d.Role.Key())
				}
			}
			if !slices.Equal(granted, got) && !(len(got) == 0 && len(granted) == 0) {
				t.Errorf("Explain grants %v, Resolve %v", granted, got)
			}
		})
	}
	if got := keys(rs.Managed()); !slices.Equal(got, []string{rEng, rDesign, rStaff, rMod, "name:Bridge", "name:Creatives"}) {
		t.Errorf("Managed = %v", got)
	}
}

func TestConflicts(t *testing.T) {
	t.Parallel()
	eng := Member{Active: true, Groups: []Group{{ID: "g1", ExternalID: "00g1", DisplayName: "Engineering"}},
		UserJSON: []byte(`{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Engineering"}}`)}

	t.Run("a role produced by two rules is kept while either matches, and Explain names both", func(t *testing.T) {
		t.Parallel()
		rs := mustCompile(t, kinds)
		var d RoleDecision
		for _, x := range explain(t, rs, &eng) {
			if x.Role.ID == rEng {
				d = x
			}
		}
		if !d.Granted || len(d.Rules) != 2 || !d.Rules[0].Matched || !d.Rules[1].Matched ||
			d.Rules[0].Rule != "eng" || d.Rules[1].Rule != "eng-dept" {
			t.Errorf("decision = %+v, want granted by eng and eng-dept", d)
		}
		without := mustCompile(t, strings.Replace(kinds, "  - name: eng\n    groups: [{display_name: Engineering}, {external_id: 00g-platform}, {id: g-sre}]\n    roles: [{id: \"1100000000000000101\"}]\n", "", 1))
		if got := keys(resolve(t, without, &eng)); !slices.Contains(got, rEng) {
			t.Errorf("after removing one rule: %v, want %s kept by the other", got, rEng)
		}
	})
	t.Run("a renamed group loses a displayName match but keeps id and externalId matches", func(t *testing.T) {
		t.Parallel()
		renamed := Member{Active: true, Groups: []Group{{ID: "g1", ExternalID: "00g1", DisplayName: "Platform Engineering"}}}
		for _, tc := range []struct {
			match string
			keep  bool
		}{{"{display_name: Engineering}", false}, {"{id: g1}", true}, {"{external_id: 00g1}", true}} {
			rs := mustCompile(t, "rules:\n  - name: eng\n    groups: ["+tc.match+"]\n    roles: [{id: \"1100000000000000101\"}]\n")
			if got := len(resolve(t, rs, &renamed)) == 1; got != tc.keep {
				t.Errorf("match %s after rename: granted %v, want %v", tc.match, got, tc.keep)
			}
		}
	})
	t.Run("a removed rule's only role leaves the managed set", func(t *testing.T) {
		t.Parallel()
		rs := mustCompile(t, "rules:\n  - name: staff\n    all_active_users: true\n    roles: [{id: \"1100000000000000103\"}]\n")
		if got := keys(rs.Managed()); !slices.Equal(got, []string{rStaff}) {
			t.Errorf("Managed = %v", got)
		}
	})
}

func TestCELIsBoundedByItsCostLimit(t *testing.T) {
	t.Parallel()
	// Quadratic work over a list built in the expression.
	e, err := CompileExpr(`[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].all(a, [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].all(b, [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].all(c, a + b + c > 0)))`)
	if err != nil {
		t.Fatalf("CompileExpr: %v", err)
	}
	_, err = e.Eval(context.Background(), &Input{Member: &Member{Active: true}})
	if !errors.Is(err, ErrExprCost) {
		t.Errorf("Eval = %v, want ErrExprCost", err)
	}
	if _, err := CompileExpr(strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200)); err == nil {
		t.Error("deeply nested expression compiled")
	}
}

func TestExplainReasons(t *testing.T) {
	t.Parallel()
	rs := mustCompile(t, kinds)
	ds := explain(t, rs, &Member{Active: true, Groups: []Group{{DisplayName: "Design"}}, UserJSON: []byte(`{"title":"IC"}`)})
	reasons := map[string]string{}
	for _, d := range ds {
		for _, o := range d.Rules {
			reasons[o.Rule] = o.Reason
		}
	}
	for rule, want := range map[string]string{
		"eng":          `not a member of any of the groups displayName="Engineering", externalId="00g-platform", id="g-sre"`,
		"design":       `member of group "Design" (id ) matched by displayName="Design"`,
		"design-leads": `condition "user.title == \"Lead\"" is false`,
		"eng-dept":     `condition`,
	} {
		if !strings.HasPrefix(reasons[rule], want) {
			t.Errorf("rule %s: reason %q, want prefix %q", rule, reasons[rule], want)
		}
	}
}

func TestResolveIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	rs := mustCompile(t, kinds)
	m := Member{Active: true, Groups: []Group{{DisplayName: "Design"}, {DisplayName: "Engineering"}},
		UserJSON: []byte(`{"title":"Lead","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Engineering"}}`)}
	want := keys(resolve(t, rs, &m))
	done := make(chan []string)
	for range 8 {
		go func() {
			var got []string
			for range 50 {
				r, _ := rs.Resolve(context.Background(), &m)
				got = keys(r)
				_, _ = rs.Explain(context.Background(), &m)
			}
			done <- got
		}()
	}
	for range 8 {
		if got := <-done; !slices.Equal(got, want) {
			t.Errorf("concurrent Resolve = %v, want %v", got, want)
		}
	}
}
