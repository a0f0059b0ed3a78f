package tenants_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/tenants"
)

func TestParse_ValidatesAndAuthenticates(t *testing.T) {
	t.Parallel()
	doc := `
tenants:
  - id: acme
    token_sha256: ["` + tenants.HashToken("tok-a1") + `", "` + tenants.HashToken("tok-a2") + `"]
    guilds: [{id: "1100000000000000000"}]
  - id: globex
    token_sha256: ["` + tenants.HashToken("tok-b") + `"]
    guilds: [{id: "1200000000000000000", on_deactivate: kick, on_delete: ban}]
`
	s, err := tenants.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ token, want string }{{"tok-a1", "acme"}, {"tok-a2", "acme"}, {"tok-b", "globex"}} {
		got, err := s.Authenticate(tc.token)
		if err != nil || got.ID != tc.want {
			t.Errorf("Authenticate(%s) = %v, %v; want %s", tc.token, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "tok-a", "tok-a1 ", "TOK-B"} {
		if _, err := s.Authenticate(bad); !errors.Is(err, tenants.ErrUnknownToken) {
			t.Errorf("Authenticate(%q) = %v; want ErrUnknownToken", bad, err)
		}
	}
	acme, _ := s.Get("acme")
	if acme.Guilds[0].OnDeactivate != tenants.ActionStrip || acme.Guilds[0].OnDelete != tenants.ActionKick {
		t.Errorf("defaults: got %+v", acme.Guilds[0])
	}
}

func TestParse_RejectsBadFiles(t *testing.T) {
	t.Parallel()
	h := tenants.HashToken("x")
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", "tenants: [{id: a, tokens: [x]}]", "field tokens not found"},
		{"no token", "tenants: [{id: a}]", "token_sha256"},
		{"bad hash", "tenants: [{id: a, token_sha256: [abc]}]", "not a hex SHA-256"},
		{"bad id", "tenants: [{id: 'a b', token_sha256: [" + h + "]}]", "id must match"},
		{"shared token", "tenants: [{id: a, token_sha256: [" + h + "]}, {id: b, token_sha256: [" + h + "]}]", "also a token of tenant"},
		{"bad guild", "tenants: [{id: a, token_sha256: [" + h + "], guilds: [{id: '12'}]}]", "not a snowflake"},
		{"bad policy", "tenants: [{id: a, token_sha256: [" + h + "], guilds: [{id: '1100000000000000000', on_delete: explode}]}]", "policy"},
		{"grace period not a duration", "tenants: [{id: a, token_sha256: [" + h + "], guilds: [{id: '1100000000000000000', grace_period: 3days}]}]", "grace_period"},
		{"negative grace period", "tenants: [{id: a, token_sha256: [" + h + "], guilds: [{id: '1100000000000000000', grace_period: -1h}]}]", "grace_period"},
		{"negative brake count", "tenants: [{id: a, token_sha256: [" + h + "], guilds: [{id: '1100000000000000000', brake_max_count: -1}]}]", "brake_max_count"},
		{"brake share over 1", "tenants: [{id: a, token_sha256: [" + h + "], guilds: [{id: '1100000000000000000', brake_max_share: 1.5}]}]", "brake_max_share"},
		{"brake count not a number", "tenants: [{id: a, token_sha256: [" + h + "], guilds: [{id: '1100000000000000000', brake_max_count: many}]}]", "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tenants.Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("tenants: [{id: a, token_sha256: [" + tenants.HashToken("x") + "]}]"))
	f.Add([]byte("tenants: [{id: a}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := tenants.Parse(data)
		if err == nil && s == nil {
			t.Fatal("nil set without error")
		}
	})
}

func TestParse_GuildOverridesOfGraceAndBrake(t *testing.T) {
	t.Parallel()
	h := tenants.HashToken("x")
	s, err := tenants.Parse([]byte(`
tenants:
  - id: a
    token_sha256: [` + h + `]
    guilds:
      - {id: "1100000000000000000", grace_period: 72h, brake_max_count: 0, brake_max_share: 0.25}
      - {id: "1200000000000000000"}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Get("a")
	over, def := a.Guilds[0], a.Guilds[1]
	if d, ok := over.Grace(); !ok || d != 72*time.Hour {
		t.Errorf("Grace() = %v, %v; want 72h, true", d, ok)
	}
	if over.BrakeMaxCount == nil || *over.BrakeMaxCount != 0 || over.BrakeMaxShare == nil || *over.BrakeMaxShare != 0.25 {
		t.Errorf("brake overrides = %v, %v; want 0 (explicitly off) and 0.25", over.BrakeMaxCount, over.BrakeMaxShare)
	}
	if _, ok := def.Grace(); ok || def.BrakeMaxCount != nil || def.BrakeMaxShare != nil {
		t.Errorf("guild without overrides = %+v; want every override unset (applier defaults)", def)
	}
}
