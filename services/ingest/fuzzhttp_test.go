package ingest_test

import (
	"net/url"
	"testing"
)

// FuzzHTTP sends fuzzed bodies and filters to a real ingest (embedded NATS,
// real HTTP): whatever the input, the answer is never a 5xx.
func FuzzHTTP(f *testing.F) {
	e := newEnv(f, 1)
	uid := e.mustCreateUser("fuzz@example.com")
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Fuzz", "members": []any{map[string]any{"value": uid}}}).str("id")
	for _, s := range []string{
		`{"userName":"a@b","active":"False"}`,
		`{"Operations":[{"op":"Add","path":"members","value":[{"value":"` + uid + `"}]}]}`,
		`{"Operations":[{"op":"replace","value":{"name.givenName":"x"}}]}`,
		`{"displayName":"g","members":[{"value":"bulkId:x"}]}`,
		`{"Operations":[{"method":"POST","path":"/Users","bulkId":"x","data":{"userName":"q"}}]}`,
		`userName eq "x"`, `{`, ``,
		`{"startIndex":2,"count":9223372036854775807,"sortBy":"displayName"}`, `9223372036854775807`,
		`{"Operations":[{"op":"remove","path":"members.display"}]}`,
		`{"Operations":[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User","value":{"costCenter":"C"}}]}`,
	} {
		for op := range 9 {
			f.Add(uint8(op), s)
		}
	}
	f.Fuzz(func(t *testing.T, op uint8, s string) {
		e := *e // report through t inside the fuzz target
		e.t = t
		var r resp
		switch op % 9 {
		case 0:
			r = e.doOn(0, tokenA, "POST", "/Users", s, nil)
		case 1:
			r = e.doOn(0, tokenA, "PATCH", "/Users/"+uid, s, nil)
		case 2:
			r = e.doOn(0, tokenA, "POST", "/Groups", s, nil)
		case 3:
			r = e.doOn(0, tokenA, "PATCH", "/Groups/"+gid, s, nil)
		case 4:
			r = e.doOn(0, tokenA, "GET", "/Users?filter="+url.QueryEscape(s)+"&sortBy="+url.QueryEscape(s), nil, nil)
		case 5:
			r = e.doOn(0, tokenA, "POST", "/Bulk", s, nil)
		case 6:
			r = e.doOn(0, tokenA, "POST", "/.search", s, nil)
		case 7:
			r = e.doOn(0, tokenA, "GET", "/Groups?filter="+url.QueryEscape(s)+"&excludedAttributes=members", nil, nil)
		case 8:
			r = e.doOn(0, tokenA, "GET", "/Roles?startIndex="+url.QueryEscape(s)+"&count="+url.QueryEscape(s), nil, nil)
		}
		if r.status >= 500 {
			t.Fatalf("op %d with %q: %d %s", op%9, s, r.status, r.raw)
		}
	})
}
