package rules

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestCompileExprWantsAProvablyBooleanResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		ok   bool
	}{
		{`user.title`, false},                           // dyn: a string at evaluation
		{`user.active`, false},                          // dyn, even when it holds a bool
		{`user.active ? user.title : user.nick`, false}, // dyn
		{`1 + 2`, false},
		{`user.active == true`, true},
		{`bool(user.active)`, true},
		{`user.title == "Lead"`, true},
		{`has(user.title) && user.active == true`, true},
		{`groups.exists(g, g.displayName == "Design")`, true},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			t.Parallel()
			_, err := CompileExpr(tc.expr)
			if tc.ok && err != nil {
				t.Errorf("CompileExpr(%q) = %v, want ok", tc.expr, err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "want bool")) {
				t.Errorf("CompileExpr(%q) = %v, want a 'want bool' error", tc.expr, err)
			}
		})
	}
}

func TestUserJSONThatIsNotAnObjectIsAnError(t *testing.T) {
	t.Parallel()
	rs := mustCompile(t, kinds)
	for _, doc := range []string{`[]`, `"str"`, `null`, `42`, `true`, `{`, ` [1]`, `{"a":1e400}`, `{"title":"Lead"} x`} {
		t.Run(doc, func(t *testing.T) {
			t.Parallel()
			// With and without a group: the answer must not depend on which rules
			// happen to be evaluated.
			for _, groups := range [][]Group{nil, {{DisplayName: "Design"}}} {
				m := &Member{Active: true, Groups: groups, UserJSON: []byte(doc)}
				if got, err := rs.Resolve(context.Background(), m); !errors.Is(err, ErrUserJSON) {
					t.Errorf("Resolve = %v, %v; want ErrUserJSON", got, err)
				}
				if _, err := rs.Explain(context.Background(), m); !errors.Is(err, ErrUserJSON) {
					t.Errorf("Explain error = %v, want ErrUserJSON", err)
				}
			}
		})
	}
	// No user document, or an object without the attributes: no CEL match, no error.
	for _, doc := range []string{``, `{}`, ` {"title": "IC"} `} {
		if got := keys(resolve(t, rs, &Member{Active: true, UserJSON: []byte(doc)})); len(got) != 1 || got[0] != rStaff {
			t.Errorf("user JSON %q: Resolve = %v, want only the default role", doc, got)
		}
	}
}

func TestHasOnAnAbsentExtensionIsFalseNotAnError(t *testing.T) {
	t.Parallel()
	rs := mustCompile(t, `rules:
  - name: dept
    when: 'has(user.enterprise.department) && user.enterprise.department == "Engineering"'
    roles: [{id: "1100000000000000101"}]
  - name: discord
    when: '!has(user.discord.nickname)'
    roles: [{id: "1100000000000000102"}]
`)
	ds := explain(t, rs, &Member{Active: true, UserJSON: []byte(`{"userName":"a"}`)})
	reasons := map[string]RuleOutcome{}
	for _, d := range ds {
		for _, o := range d.Rules {
			reasons[o.Rule] = o
		}
	}
	if o := reasons["dept"]; o.Matched || !strings.HasSuffix(o.Reason, "is false") {
		t.Errorf("dept: %+v, want false (not an evaluation error)", o)
	}
	if o := reasons["discord"]; !o.Matched {
		t.Errorf("discord: %+v, want matched", o)
	}
}

func TestLongAttributesAreLeftOutOfCEL(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxAttrLen+1)
	rs := mustCompile(t, `rules:
  - name: has-title
    when: 'has(user.title)'
    roles: [{id: "1100000000000000101"}]
  - name: short-title
    when: 'has(user.title) && user.title.size() <= 1024'
    roles: [{id: "1100000000000000102"}]
  - name: emails
    when: 'user.emails.size() == 1'
    roles: [{id: "1100000000000000103"}]
`)
	got := keys(resolve(t, rs, &Member{Active: true, UserJSON: []byte(`{"title":"` + long + `","emails":["` + long + `","a@example.com"]}`)}))
	if len(got) != 1 || got[0] != rStaff {
		t.Errorf("Resolve = %v, want only %s (the long title left out, one email left)", got, rStaff)
	}
	got = keys(resolve(t, rs, &Member{Active: true, UserJSON: []byte(`{"title":"` + long[:MaxAttrLen] + `"}`)}))
	if len(got) != 2 {
		t.Errorf("title of exactly %d bytes: Resolve = %v, want both title rules", MaxAttrLen, got)
	}
}

// TestStringBlowUpIsBoundedByTheAttributeCap measures what one evaluation of
// quadratic string functions allocates (not a timing): without the cap a
// 5,000-character title makes replace build ≈ 25 MB and split/join ≈ 120 MB.
// Not parallel, so that the allocation counter is this test's.
func TestStringBlowUpIsBoundedByTheAttributeCap(t *testing.T) {
	title := strings.Repeat("a", 5000)
	for _, expr := range []string{
		`user.title.replace("", user.title).size() > 0`,
		`user.title.split("").join(user.title).size() > 0`,
	} {
		e, err := CompileExpr(expr)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = e.Eval(context.Background(), &Input{Member: &Member{Active: true, UserJSON: []byte(`{"title":"` + title + `"}`)}})
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: evaluated without error, want the title left out", expr)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
			t.Errorf("%s: allocated %d bytes, want < 4 MiB", expr, n)
		}
	}
	// At the cap itself, the cost limit still stops the call after it returns.
	e, err := CompileExpr(`user.title.split("").join(user.title).size() > 0`)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = e.Eval(context.Background(), &Input{Member: &Member{Active: true, UserJSON: []byte(`{"title":"` + title[:MaxAttrLen] + `"}`)}})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrExprCost) {
		t.Errorf("at the cap: %v, want ErrExprCost", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("at the cap: allocated %d bytes, want < 16 MiB (about 5 MiB; more under -race)", n)
	}
}

func TestResolveAndExplainFoldGroupNamesTheSameWay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rule, group string
		match       bool
	}{
		{"Engineering", "ENGINEERING", true},
		{"ΟΔΟΣ", "οδος", true}, // final sigma folds with Σ
		{"ΟΔΟΣ", "οδοσ", true},
		{"İnfra", "infra", false}, // U+0130 has no simple fold to i
		{"İnfra", "İNFRA", true},
		{"Kelvin", "\u212aelvin", true}, // Kelvin sign folds with K
		{"straße", "STRASSE", false},    // no full folding
		{"ſtaff", "STAFF", true},        // long s folds with s
	}
	for _, tc := range tests {
		t.Run(tc.rule+"~"+tc.group, func(t *testing.T) {
			t.Parallel()
			rs := mustCompile(t, "rules:\n  - name: r\n    groups: [{display_name: \""+tc.rule+"\"}]\n    roles: [{id: \"1100000000000000101\"}]\n")
			m := &Member{Active: true, Groups: []Group{{DisplayName: tc.group}}}
			resolved := len(resolve(t, rs, m)) == 1
			explained := explain(t, rs, m)[0].Granted
			if resolved != tc.match || explained != tc.match {
				t.Errorf("Resolve %v, Explain %v; want %v", resolved, explained, tc.match)
			}
			if eq := strings.EqualFold(tc.rule, tc.group); eq != tc.match {
				t.Errorf("strings.EqualFold = %v, want the same as FoldName (%v)", eq, tc.match)
			}
		})
	}
}

func TestRuleSetsStoredBeforeTheStricterChecksStillLoad(t *testing.T) {
	t.Parallel()
	// Stored (already decoded) rule sets are compiled without the checks added
	// for writes: a bare dyn condition and the role name @everyone.
	g := &GuildSpec{ID: "1100000000000000000", Rules: []RuleSpec{
		{Name: "a", When: "user.active", Roles: []RoleRef{{ID: rEng}}},
		{Name: "b", AllActiveUsers: true, Roles: []RoleRef{{Name: "@everyone"}}},
	}}
	rs, err := Compile("dev", 3, g)
	if err != nil {
		t.Fatalf("Compile(stored) = %v, want it to load", err)
	}
	if got := keys(resolve(t, rs, &Member{Active: true})); len(got) != 2 || got[0] != rEng {
		t.Errorf("Resolve = %v", got)
	}
	// A write of the same rules is refused.
	y, err := EncodeGuild(g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeGuild("dev", g.ID, y); err == nil || !strings.Contains(err.Error(), "want bool") || !strings.Contains(err.Error(), "@everyone") {
		t.Errorf("DecodeGuild = %v, want both problems", err)
	}
}
