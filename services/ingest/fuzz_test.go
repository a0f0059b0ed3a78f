package ingest

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// mustBeClientError fails unless err is nil or a 4xx SCIM error.
func mustBeClientError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var se *Error
	if !errors.As(err, &se) || se.Status < 400 || se.Status > 499 {
		t.Fatalf("not a 4xx SCIM error: %v", err)
	}
}

func sampleUser() map[string]any {
	doc, err := decodeObject([]byte(`{"userName":"ada@example.com","displayName":"Ada","active":true,
		"name":{"givenName":"Ada","familyName":"Lovelace"},
		"emails":[{"value":"ada@work.example","type":"work","primary":true},{"value":"ada@home.example","type":"home"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Eng","manager":{"value":"m1"}},
		"urn:ietf:params:scim:schemas:extension:discord:2.0:User":{"userId":"1100000000000001001"},
		"meta":{"created":"2026-01-01T00:00:00Z","lastModified":"2026-01-02T00:00:00Z","resourceType":"User"}}`))
	if err != nil {
		panic(err)
	}
	return doc
}

func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		`userName eq "a"`, `UserName Eq a@b`, `emails[type eq "work"].value eq "x"`, `not (active eq true) or title pr`,
		`meta.lastModified gt "2011-05-13T04:42:34Z"`, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department co "e"`,
		`emails[type eq "work" and value sw "a"]`, `x eq`, `((`, `userName eq "\"q\""`, `active eq 1.5e3`, `members[value eq "1"]`,
	} {
		f.Add(s)
	}
	doc := sampleUser()
	f.Fuzz(func(t *testing.T, s string) {
		for _, k := range []resourceKind{kindUser, kindGroup} {
			expr, err := parseFilter(k, s)
			mustBeClientError(t, err)
			if err == nil {
				// The second parse comes from the shape cache: same tree.
				again, err := parseFilter(k, s)
				if err != nil || fmt.Sprint(again) != fmt.Sprint(expr) {
					t.Fatalf("cached parse differs: %v vs %v (%v)", again, expr, err)
				}
				evalFilter(k, expr, doc, nil)
				indexedEq(k, pickIndexed(k, expr))
			}
		}
	})
}

func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"Operations":[{"op":"replace","value":{"name.givenName":"X","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"D"}}]}`,
		`{"Operations":[{"op":"add","path":"emails[type eq \"work\"].value","value":"w@x"}]}`,
		`{"Operations":[{"op":"remove","path":"emails[type eq \"home\"]"}]}`,
		`{"Operations":[{"op":"remove","path":"members","value":[{"value":"u1"}]}]}`,
		`{"Operations":[{"op":"replace","path":"members","value":[]}]}`,
		`{"Operations":[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"m2"}]}`,
		`{"Operations":[{"op":"move"}]}`, `{"Operations":[]}`, `[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := decodeObject(data)
		mustBeClientError(t, err)
		if err != nil {
			return
		}
		ops, err := parsePatch(body)
		mustBeClientError(t, err)
		if err != nil {
			return
		}
		doc := sampleUser()
		if err := applyPatch(kindUser, doc, ops); err != nil {
			mustBeClientError(t, err)
		} else {
			_, err := normalize(kindUser, doc)
			mustBeClientError(t, err)
		}
		gdoc := map[string]any{"displayName": "G"}
		members := func() map[string]bool { return map[string]bool{"u1": true, "u2": true} }
		_, err = applyGroupPatch(gdoc, ops, members)
		mustBeClientError(t, err)
	})
}

func FuzzDecodeResource(f *testing.F) {
	for _, s := range []string{
		`{"userName":"a","active":"True","emails":[{"Primary":true,"value":"a@b"}]}`,
		`{"UserName":"a","urn:ietf:params:scim:schemas:extension:discord:2.0:User":{"userId":1100000000000001001}}`,
		`{"userName":"a","urn:ietf:params:scim:schemas:extension:discord:2.0:User":{"userId":"1100000000000001001"}}`,
		`{"displayName":"g","members":[{"value":"u"},"x",1]}`, `{"name":"x"}`, `{"emails":{"value":"x"}}`, `null`, `1`, `{"a":}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := decodeObject(data)
		mustBeClientError(t, err)
		if err != nil {
			return
		}
		for _, k := range []resourceKind{kindUser, kindGroup} {
			doc, err := normalize(k, cloneDoc(body))
			mustBeClientError(t, err)
			if err == nil {
				mustBeClientError(t, validateUser(doc))
				mustBeClientError(t, validateGroup(doc))
				if _, err := userEvent("t", 1, doc, 1, sampleTime, false); err != nil {
					t.Fatalf("a normalised document must encode: %v", err)
				}
			}
		}
	})
}

var sampleTime = mustTime("2026-01-01T00:00:00Z")

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
