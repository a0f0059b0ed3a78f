package rules

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

const head = "tenants:\n  - id: dev\n    guilds:\n      - id: \"1100000000000000000\"\n        rules:\n"

func TestDecodeFileAcceptsEveryRuleKind(t *testing.T) {
	t.Parallel()
	f, err := DecodeFile([]byte(head + `
          - name: eng
            groups: [{display_name: Engineering}, {external_id: "00g1"}, {id: "g-3"}]
            roles: [{id: "1100000000000000101", name: Engineering}, {name: Builders}]
          - name: staff
            all_active_users: true
            roles: [{id: "1100000000000000103"}]
          - name: dept
            when: 'user.enterprise.department == "Engineering" && user.active'
            roles: [{name: Engineers}]
          - name: both
            groups: [{display_name: Design}]
            when: 'user.userName.endsWith("@example.com")'
            roles: [{id: "1100000000000000102"}]
`))
	if err != nil {
		t.Fatalf("DecodeFile: %v", err)
	}
	if got := len(f.Tenants[0].Guilds[0].Rules); got != 4 {
		t.Fatalf("rules = %d, want 4", got)
	}
}

func TestDecodeFileRejectsWithSpecificErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"unknown field is named with its line", head + "          - name: x\n            group: [{display_name: A}]\n            roles: [{id: \"1100000000000000101\"}]\n",
			[]string{"line 7", "rule x", "rules[0].group:", `unknown field "group"`, "allowed here: name, description"}},
		{"unknown field in a role names the rule, field and line, not a Go type", head + "          - name: eng\n            groups: [{display_name: A}]\n            roles:\n              - id: \"1100000000000000101\"\n                colour: red\n",
			[]string{"line 10", "rule eng", "rules[0].roles[0].colour", `unknown field "colour"`, "allowed here: id, name"}},
		{"unknown top-level field", "generation: 1\nversion: 2\n" + head + "          - name: s\n            all_active_users: true\n            roles: [{id: \"1100000000000000103\"}]\n",
			[]string{"line 2", `unknown field "version"`, "allowed here: generation, tenants"}},
		{"a mapping with thousands of keys is refused before decoding", head + "          - {name: a, all_active_users: true, roles: [{id: \"1100000000000000101\"}]" + manyKeys(30000) + "}\n",
			[]string{"line 6", "a mapping with 30003 keys", "more than 16 fields"}},
		{"role named @everyone", head + "          - name: a\n            all_active_users: true\n            roles: [{name: \"@everyone\"}]\n",
			[]string{"line 8", "rule a", "roles[0].name", "@everyone"}},
		{"role named @Everyone with spaces", head + "          - name: a\n            all_active_users: true\n            roles: [{name: \" @Everyone \"}]\n",
			[]string{"rule a", "@everyone"}},
		{"rules missing", "tenants:\n  - id: dev\n    guilds:\n      - id: \"1100000000000000000\"\n",
			[]string{"guilds[0].rules", "missing or null", "rules: []"}},
		{"rules null", head, []string{"guilds[0].rules", "missing or null"}},
		{"negative generation", "generation: -1\n" + head + "          - name: s\n            all_active_users: true\n            roles: [{id: \"1100000000000000103\"}]\n",
			[]string{"generation -1"}},
		{"role id that is not a snowflake", head + "          - name: eng\n            groups: [{display_name: A}]\n            roles: [{id: \"123\"}]\n",
			[]string{"line 8", "rule eng", "rules[0].roles[0].id", "snowflake"}},
		{"unquoted huge role id still checked as text", head + "          - name: eng\n            groups: [{display_name: A}]\n            roles: [{id: 1.1e18}]\n",
			[]string{"rule eng", "snowflake"}},
		{"group match with two keys", head + "          - name: eng\n            groups: [{display_name: A, id: b}]\n            roles: [{id: \"1100000000000000101\"}]\n",
			[]string{"rule eng", "groups[0]", "exactly one of id, external_id, display_name"}},
		{"rule without condition", head + "          - name: eng\n            roles: [{id: \"1100000000000000101\"}]\n",
			[]string{"rule eng", "no condition"}},
		{"rule without roles", head + "          - name: eng\n            all_active_users: true\n",
			[]string{"rule eng", "no roles"}},
		{"duplicate rule names", head + "          - name: eng\n            all_active_users: true\n            roles: [{id: \"1100000000000000101\"}]\n          - name: eng\n            all_active_users: true\n            roles: [{id: \"1100000000000000102\"}]\n",
			[]string{"rule eng", "already used by rules[0]"}},
		{"all_active_users combined with groups", head + "          - name: eng\n            all_active_users: true\n            groups: [{display_name: A}]\n            roles: [{id: \"1100000000000000101\"}]\n",
			[]string{"cannot be combined"}},
		{"CEL that does not compile", head + "          - name: cel\n            when: 'user.active &&'\n            roles: [{id: \"1100000000000000101\"}]\n",
			[]string{"rule cel", "rules[0].when", "CEL does not compile"}},
		{"CEL with an undeclared variable", head + "          - name: cel\n            when: 'person.active'\n            roles: [{id: \"1100000000000000101\"}]\n",
			[]string{"rule cel", "undeclared reference"}},
		{"CEL that is not boolean", head + "          - name: cel\n            when: '1 + 2'\n            roles: [{id: \"1100000000000000101\"}]\n",
			[]string{"rule cel", "want bool"}},
		{"role granted as the guild id (@everyone)", head + "          - name: e\n            all_active_users: true\n            roles: [{id: \"1100000000000000000\"}]\n",
			[]string{"@everyone"}},
		{"one role labelled with two names", head + "          - name: a\n            all_active_users: true\n            roles: [{id: \"1100000000000000101\", name: A}]\n          - name: b\n            groups: [{id: g}]\n            roles: [{id: \"1100000000000000101\", name: B}]\n",
			[]string{"rule b", "labelled \"B\" here and \"A\" elsewhere"}},
		{"bad tenant id", "tenants:\n  - id: \"a.b\"\n    guilds:\n      - id: \"1100000000000000000\"\n        rules: []\n",
			[]string{"tenants[0].id", "tenant id \"a.b\""}},
		{"duplicate guild", "tenants:\n  - id: dev\n    guilds:\n      - id: \"1100000000000000000\"\n        rules: []\n      - id: \"1100000000000000000\"\n        rules: []\n",
			[]string{"listed twice"}},
		{"no tenants", "tenants: []\n", []string{"no tenants"}},
		{"empty document", "  \n", []string{"empty"}},
		{"not YAML", "tenants: [\n", []string{"not valid YAML"}},
		{"two documents", "tenants: []\n---\ntenants: []\n", []string{"more than one YAML document"}},
		{"duplicate keys", "tenants: []\ntenants: []\n", []string{"already defined"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeFile([]byte(tc.doc))
			if err == nil {
				t.Fatal("DecodeFile succeeded, want an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDecodeFileAcceptsAGenerationAndAnExplicitlyEmptyRuleSet(t *testing.T) {
	t.Parallel()
	f, err := DecodeFile([]byte("generation: 42\ntenants:\n  - id: dev\n    guilds:\n      - id: \"1100000000000000000\"\n        rules: []\n"))
	if err != nil {
		t.Fatalf("DecodeFile: %v", err)
	}
	if f.Generation != 42 || f.Tenants[0].Guilds[0].Rules == nil {
		t.Errorf("file = %+v, want generation 42 and an empty (not nil) rule list", f)
	}
	g, err := DecodeGuild("dev", "1100000000000000000", []byte("rules: []\n"))
	if err != nil || g.Rules == nil {
		t.Fatalf("DecodeGuild(rules: []) = %+v, %v", g, err)
	}
	// The stored form of an empty rule set decodes again.
	y, err := EncodeGuild(g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeGuild("dev", "1100000000000000000", y); err != nil {
		t.Errorf("re-decode of %q: %v", y, err)
	}
	for _, doc := range []string{"rules:\n", "{}", "id: \"1100000000000000000\"\n"} {
		if _, err := DecodeGuild("dev", "1100000000000000000", []byte(doc)); err == nil || !strings.Contains(err.Error(), "missing or null") {
			t.Errorf("DecodeGuild(%q) = %v, want missing or null", doc, err)
		}
	}
	_, err = DecodeGuild("dev", "1100000000000000000", []byte("rules: []\nrulez: []\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "rulez" (allowed here: id, rules)`) {
		t.Errorf("guild document with an unknown field: %v", err)
	}
}

func TestDecodeGuildChecksTheRequestIDs(t *testing.T) {
	t.Parallel()
	doc := []byte("rules:\n  - name: s\n    all_active_users: true\n    roles: [{id: \"1100000000000000103\"}]\n")
	g, err := DecodeGuild("dev", "1100000000000000000", doc)
	if err != nil || g.ID != "1100000000000000000" {
		t.Fatalf("DecodeGuild = %v, %v", g, err)
	}
	_, err = DecodeGuild("dev", "1100000000000000000", append([]byte("id: \"1200000000000000000\"\n"), doc...))
	if err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("mismatched id: err = %v", err)
	}
	// JSON is YAML too.
	if _, err := DecodeGuild("dev", "1100000000000000000", []byte(`{"rules":[{"name":"s","all_active_users":true,"roles":[{"id":"1100000000000000103"}]}]}`)); err != nil {
		t.Errorf("JSON body: %v", err)
	}
}

// manyKeys is ", k0: 1, k1: 1, …" with n distinct keys.
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(", k")
		b.WriteString(strconv.Itoa(i))
		b.WriteString(": 1")
	}
	return b.String()
}
