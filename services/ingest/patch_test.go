package ingest

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

func TestApplyPatch(t *testing.T) {
	t.Parallel()
	const ent = SchemaEnterprise
	cases := []struct {
		name string
		ops  string
		path string // JSON path checked in the result (dot-separated)
		want string // its JSON value; "" = absent; "ERR:<scimType>" = error
	}{
		{"replace with path", `[{"op":"replace","path":"displayName","value":"B"}]`, "displayName", `"B"`},
		{"Entra capitalised op", `[{"op":"Replace","path":"active","value":"False"}]`, "active", `false`},
		{"no-path replace merges", `[{"op":"replace","value":{"displayName":"C","active":false}}]`, "displayName", `"C"`},
		{"no-path dotted key (Entra)", `[{"op":"replace","value":{"name.givenName":"G"}}]`, "name.givenName", `"G"`},
		{"no-path dotted key keeps siblings", `[{"op":"replace","value":{"name.givenName":"G"}}]`, "name.familyName", `"Lovelace"`},
		{"no-path extension URN key (Entra)", `[{"op":"replace","value":{"` + ent + `:department":"Ops"}}]`, ent + ".department", `"Ops"`},
		{"no-path extension object", `[{"op":"add","value":{"` + ent + `":{"costCenter":"42"}}}]`, ent + ".costCenter", `"42"`},
		{"path with extension URN", `[{"op":"replace","path":"` + ent + `:department","value":"X"}]`, ent + ".department", `"X"`},
		{"replace complex merges sub-attributes", `[{"op":"replace","path":"name","value":{"givenName":"Q"}}]`, "name.familyName", `"Lovelace"`},
		{"value filter with sub-attribute", `[{"op":"replace","path":"emails[type eq \"work\"].value","value":"new@work"}]`, "emails.0.value", `"new@work"`},
		{"filter matching nothing creates (Entra)", `[{"op":"replace","path":"phoneNumbers[type eq \"mobile\"].value","value":"123"}]`, "phoneNumbers.0.type", `"mobile"`},
		{"remove by filter", `[{"op":"remove","path":"emails[type eq \"home\"]"}]`, "emails.1", ""},
		{"remove by filter keeps the rest", `[{"op":"remove","path":"emails[type eq \"home\"]"}]`, "emails.0.type", `"work"`},
		{"add to a multi-valued attribute appends", `[{"op":"add","path":"emails","value":[{"value":"third@x","type":"other"}]}]`, "emails.2.value", `"third@x"`},
		{"add of an existing value does not duplicate", `[{"op":"add","path":"emails","value":[{"value":"ada@home.example","type":"home"}]}]`, "emails.2", ""},
		{"remove an attribute", `[{"op":"remove","path":"displayName"}]`, "displayName", ""},
		{"remove a sub-attribute", `[{"op":"remove","path":"name.givenName"}]`, "name.givenName", ""},
		{"Discord userId by URN path", `[{"op":"replace","path":"` + SchemaDiscord + `:userId","value":"1100000000000001002"}]`, SchemaDiscord + ".userId", `"1100000000000001002"`},
		{"Discord userId as a number", `[{"op":"replace","path":"` + SchemaDiscord + `:userId","value":1100000000000001002}]`, "", "ERR:invalidValue"},
		{"unknown attribute is ignored", `[{"op":"replace","path":"favouriteColour","value":"red"}]`, "displayName", `"Ada"`},
		{"remove without path", `[{"op":"remove"}]`, "", "ERR:noTarget"},
		{"malformed path", `[{"op":"replace","path":"emails[type eq","value":"x"}]`, "", "ERR:invalidPath"},
		{"unknown op", `[{"op":"move","path":"displayName","value":"x"}]`, "", "ERR:invalidSyntax"},
		{"a boolean that is not one", `[{"op":"replace","path":"active","value":"maybe"}]`, "", "ERR:invalidValue"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, err := decodeObject([]byte(`{"Operations":` + tc.ops + `}`))
			if err != nil {
				t.Fatal(err)
			}
			doc := sampleUser()
			delete(doc, "meta")
			ops, err := parsePatch(body)
			if err == nil {
				err = applyPatch(kindUser, doc, ops)
			}
			if err == nil {
				doc, err = normalize(kindUser, doc)
			}
			if typ, isErr := strings.CutPrefix(tc.want, "ERR:"); isErr {
				se, ok := err.(*Error)
				if !ok || se.ScimType != typ {
					t.Fatalf("error %v, want scimType %s", err, typ)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := jsonAt(doc, tc.path)
			if got != tc.want {
				t.Fatalf("%s = %s, want %s (doc %v)", tc.path, got, tc.want, doc)
			}
		})
	}
}

// jsonAt returns the JSON of the value at a dot path ("" when absent); an
// extension URN is one segment.
func jsonAt(doc map[string]any, path string) string {
	var segs []string
	for _, urn := range []string{SchemaEnterprise, SchemaDiscord} {
		if rest, ok := strings.CutPrefix(path, urn+"."); ok {
			segs = append([]string{urn}, strings.Split(rest, ".")...)
		}
	}
	if segs == nil {
		segs = strings.Split(path, ".")
	}
	var cur any = doc
	for _, s := range segs {
		switch x := cur.(type) {
		case map[string]any:
			cur = x[s]
		case []any:
			i := -1
			_ = json.Unmarshal([]byte(s), &i)
			if i < 0 || i >= len(x) {
				return ""
			}
			cur = x[i]
		default:
			return ""
		}
		if cur == nil {
			return ""
		}
	}
	b, _ := json.Marshal(cur)
	return string(b)
}

func TestApplyGroupPatch(t *testing.T) {
	t.Parallel()
	cur := map[string]bool{"u1": true, "u2": true}
	cases := []struct {
		name string
		ops  string
		want []string // members after
	}{
		{"add", `[{"op":"add","path":"members","value":[{"value":"u3"}]}]`, []string{"u1", "u2", "u3"}},
		{"remove by filter", `[{"op":"remove","path":"members[value eq \"u1\"]"}]`, []string{"u2"}},
		{"remove by an or filter", `[{"op":"remove","path":"members[value eq \"u1\" or value eq \"u2\"]"}]`, nil},
		{"Entra remove with value array", `[{"op":"Remove","path":"members","value":[{"value":"u2"}]}]`, []string{"u1"}},
		{"remove all", `[{"op":"remove","path":"members"}]`, nil},
		{"replace", `[{"op":"replace","path":"members","value":[{"value":"u9"}]}]`, []string{"u9"}},
		{"no-path replace with members (Okta)", `[{"op":"replace","value":{"members":[],"displayName":"G"}}]`, nil},
		{"remove then add, in order (Okta)", `[{"op":"remove","path":"members[value eq \"u1\"]"},{"op":"add","path":"members","value":[{"value":"u1"}]}]`, []string{"u1", "u2"}},
		{"bare id strings", `[{"op":"add","path":"members","value":["u4"]}]`, []string{"u1", "u2", "u4"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, err := decodeObject([]byte(`{"Operations":` + tc.ops + `}`))
			if err != nil {
				t.Fatal(err)
			}
			ops, err := parsePatch(body)
			if err != nil {
				t.Fatal(err)
			}
			delta, err := applyGroupPatch(map[string]any{"displayName": "G"}, ops, func() map[string]bool { return cur })
			if err != nil {
				t.Fatal(err)
			}
			after := map[string]bool{}
			if !delta.replace {
				for u := range cur {
					after[u] = true
				}
			}
			for u, m := range delta.set {
				after[u] = m
			}
			var got []string
			for u, m := range after {
				if m {
					got = append(got, u)
				}
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("members %v, want %v", got, tc.want)
			}
		})
	}
}
