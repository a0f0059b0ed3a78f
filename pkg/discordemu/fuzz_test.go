package discordemu

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzAuditReason(f *testing.F) {
	for _, s := range []string{"", "plain", "caf%C3%A9", "café", "%", "%zz", "a+b", "%2", "%E2%82", "100%25 done"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		dec, ok := DecodeAuditReason(raw)
		if !ok {
			if dec != raw {
				t.Fatalf("undecodable value not kept verbatim")
			}
			return
		}
		if !utf8.ValidString(dec) {
			t.Fatalf("decoded invalid UTF-8")
		}
		// '+' stays literal, and percent-encoding round-trips.
		if strings.Count(dec, "+") < strings.Count(raw, "+") {
			t.Fatalf("'+' was decoded as a space")
		}
		enc := strings.ReplaceAll(url.QueryEscape(dec), "+", "%20")
		if again, ok := DecodeAuditReason(enc); !ok || again != dec {
			t.Fatalf("round trip %q -> %q -> %q", dec, enc, again)
		}
	})
}

func FuzzParseFixture(f *testing.F) {
	f.Add([]byte(testFixture))
	f.Add([]byte("users: [{id: \"1\", username: a}]\n"))
	f.Add([]byte("guilds:\n  - {id: \"1\", owner_id: \"2\", roles: [{key: k, permissions: [MANAGE_ROLES]}], bots: [{application_id: \"9\", position: top}]}\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		if len(doc) > 4096 {
			return
		}
		fx, err := ParseFixture(doc)
		if err != nil {
			return
		}
		e, err := newEmulator(DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		_ = e.applyFixtureLocked(fx)
		for _, g := range e.w.Guilds {
			seen := map[int]bool{}
			for _, r := range g.Roles {
				if seen[r.Position] {
					t.Fatalf("duplicate position %d", r.Position)
				}
				seen[r.Position] = true
			}
		}
		e.mu.Unlock()
	})
}

// FuzzRedactRecord: any body is stored without the value of a secret form field
// or JSON string, a JSON body stays valid JSON, and nothing panics.
func FuzzRedactRecord(f *testing.F) {
	for _, s := range []string{"", "code=abc&state=x", `{"access_token":"abc","nick":"n"}`, `[{"token":"abc"}]`,
		"client_secret=%zz&code", `{"code":50035}`, "a=1&&=&code=", `{"x":{"refresh_token":"abc"}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		const secret = "SECRETzzSECRET"
		for _, b := range []string{body, body + "&code=" + secret} {
			rec := &Record{BodyRaw: b, ResponseBody: b, Query: url.Values{"code": {secret}}}
			if json.Valid([]byte(b)) && len(b) > 0 {
				rec.BodyJSON = json.RawMessage(b)
			}
			redactRecord(rec)
			if rec.BodyJSON != nil && !json.Valid(rec.BodyJSON) {
				t.Fatalf("body_json no longer valid: %s", rec.BodyJSON)
			}
			if rec.BodyJSON == nil && strings.Contains(b, "&code="+secret) && strings.Contains(rec.BodyRaw, secret) && !strings.Contains(body, secret) {
				t.Fatalf("form secret kept: %q", rec.BodyRaw)
			}
			if rec.Query["code"][0] != Redacted {
				t.Fatal("query secret kept")
			}
		}
	})
}
