package discordemu

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

// knobEmu starts a test emulator and applies a config patch through PUT /_emu/config.
func knobEmu(t *testing.T, patch string, mod func(*Config)) *Emulator {
	t.Helper()
	e := newTestEmu(t, mod)
	if patch != "" {
		if err := e.Admin().SetConfig(testCtx(t), []byte(patch)); err != nil {
			t.Fatalf("SetConfig(%s): %v", patch, err)
		}
	}
	return e
}

func TestKnob_UnknownRoleInPatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting      string
		status, code int
	}{{"10011", 404, 10011}, {"50035", 400, 50035}} {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"unknown_role_in_patch":"`+tc.setting+`"}}`, nil)
			_, err := session(t, e, tToken).GuildMemberEdit(tGuild, tAlice, &discordgo.GuildMemberParams{Roles: &[]string{"500000000000009999"}})
			if !is(err, tc.status, tc.code) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestKnob_CheckUntouchedRoles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting string
		wantErr bool
	}{{"true", true}, {"false", false}} {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"check_untouched_roles":`+tc.setting+`}}`, nil)
			if err := e.Admin().SetMemberRoles(testCtx(t), tGuild, tAlice, []string{tHigh}); err != nil {
				t.Fatal(err)
			}
			_, err := session(t, e, tToken).GuildMemberEdit(tGuild, tAlice, &discordgo.GuildMemberParams{Roles: &[]string{tHigh, tLow}})
			if tc.wantErr && !is(err, 403, 50013) || !tc.wantErr && err != nil {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestKnob_EveryoneInRoles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting string
		wantErr bool
	}{{"reject", true}, {"ignore", false}} {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"everyone_in_roles":"`+tc.setting+`"}}`, nil)
			m, err := session(t, e, tToken).GuildMemberEdit(tGuild, tAlice, &discordgo.GuildMemberParams{Roles: &[]string{tGuild, tLow}})
			if tc.wantErr {
				if !is(err, 400, 50035) {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err != nil || len(m.Roles) != 1 || m.Roles[0] != tLow {
				t.Fatalf("got %v %v", m, err)
			}
		})
	}
}

func TestKnob_LegacyReasonQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ setting, want string }{{"ignore", ""}, {"honour", "bye"}} {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"legacy_reason_query":"`+tc.setting+`"}}`, nil)
			if err := session(t, e, tToken).GuildMemberDeleteWithReason(tGuild, tAlice, "bye"); err != nil {
				t.Fatal(err)
			}
			st := mustState(t, e, tGuild)
			a := st.AuditLog[len(st.AuditLog)-1]
			got := ""
			if a.Reason != nil {
				got = *a.Reason
			}
			if got != tc.want {
				t.Fatalf("reason %q, want %q", got, tc.want)
			}
		})
	}
}

func TestKnob_ScopeError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting      string
		status, code int
	}{{"401", 401, 0}, {"403-50026", 403, 50026}} {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"scope_error":"`+tc.setting+`"}}`, nil)
			tok, err := e.Admin().IssueToken(testCtx(t), TokenRequest{ClientID: tApp, UserID: tAlice, Scopes: []string{"guilds.join"}})
			if err != nil {
				t.Fatal(err)
			}
			res, body := raw(t, e, "GET", "/api/v9/users/@me", "Bearer "+tok.AccessToken, "", "", nil)
			if res.StatusCode != tc.status || !strings.Contains(body, `"code":`+strconv.Itoa(tc.code)) {
				t.Fatalf("got %d %s", res.StatusCode, body)
			}
		})
	}
}

func TestKnob_MaxRoles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting string
		wantErr bool
	}{{"250", false}, {"5", true}} {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"max_roles":`+tc.setting+`}}`, nil)
			_, err := session(t, e, tToken).GuildRoleCreate(tGuild, &discordgo.RoleParams{Name: "one more"})
			if tc.wantErr && !is(err, 400, 30005) || !tc.wantErr && err != nil {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestKnob_PatchMember204(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting string
		status  int
	}{{"false", 200}, {"true", 204}} {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"patch_member_204":`+tc.setting+`}}`, nil)
			res, body := raw(t, e, "PATCH", "/api/v9/guilds/"+tGuild+"/members/"+tAlice, "Bot "+tToken, "application/json", `{"roles":["`+tLow+`"]}`, nil)
			if res.StatusCode != tc.status || (tc.status == 204) != (body == "") {
				t.Fatalf("got %d %q", res.StatusCode, body)
			}
			if !hasStr(mustState(t, e, tGuild).Member(tAlice).Roles, tLow) {
				t.Fatal("not applied")
			}
		})
	}
}

func TestKnob_NonmemberBanLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting string
		wantErr bool
	}{{"0", false}, {"1", true}} {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"nonmember_ban_limit":`+tc.setting+`}}`, nil)
			s := session(t, e, tToken)
			if err := s.GuildBanCreate(tGuild, tDave, 0); err != nil {
				t.Fatal(err)
			}
			err := s.GuildBanCreate(tGuild, tStranger, 0)
			if tc.wantErr && !is(err, 400, 30035) || !tc.wantErr && err != nil {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestKnob_RateLimitAlgorithm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting                   string
		roleResetAfter, editReset string // first response of member_role_add / member_edit
	}{{"", "10.000", "1.000"}, {"fixed", "10.000", "10.000"}, {"sliding", "1.000", "1.000"}} {
		t.Run("algorithm="+tc.setting, func(t *testing.T) {
			t.Parallel()
			clk := NewManualClock(time.Unix(1_700_000_000, 0))
			e := knobEmu(t, `{"ratelimit":{"algorithm":"`+tc.setting+`"}}`, func(c *Config) { c.Clock = clk })
			res, _ := raw(t, e, "PUT", "/api/v9/guilds/"+tGuild+"/members/"+tAlice+"/roles/"+tLow, "Bot "+tToken, "", "", nil)
			if got := res.Header.Get("X-RateLimit-Reset-After"); got != tc.roleResetAfter {
				t.Errorf("member_role Reset-After %s, want %s", got, tc.roleResetAfter)
			}
			res, _ = raw(t, e, "PATCH", "/api/v9/guilds/"+tGuild+"/members/"+tAlice, "Bot "+tToken, "application/json", `{}`, nil)
			if got := res.Header.Get("X-RateLimit-Reset-After"); got != tc.editReset {
				t.Errorf("member_edit Reset-After %s, want %s", got, tc.editReset)
			}
		})
	}
}

func TestKnob_ConsistencyLag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting   int
		staleRead bool
	}{{0, false}, {1000, true}} {
		t.Run("lag_ms="+strconv.Itoa(tc.setting), func(t *testing.T) {
			t.Parallel()
			clk := NewManualClock(time.Unix(1_700_000_000, 0))
			e := knobEmu(t, `{"consistency_lag_ms":`+strconv.Itoa(tc.setting)+`}`, func(c *Config) { c.Clock = clk })
			s := session(t, e, tToken)
			if err := s.GuildMemberRoleAdd(tGuild, tAlice, tLow); err != nil {
				t.Fatal(err)
			}
			m, err := s.GuildMember(tGuild, tAlice)
			if err != nil {
				t.Fatal(err)
			}
			if hasStr(m.Roles, tLow) == tc.staleRead {
				t.Fatalf("read right after write: roles %v", m.Roles)
			}
			clk.Advance(1001 * time.Millisecond)
			if m, _ := s.GuildMember(tGuild, tAlice); !hasStr(m.Roles, tLow) {
				t.Fatalf("read after lag: roles %v", m.Roles)
			}
		})
	}
}

func TestKnob_InvalidRoleStatus(t *testing.T) {
	t.Parallel()
	for _, st := range []int{400, 403} {
		t.Run(strconv.Itoa(st), func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"invalid_role_status":`+strconv.Itoa(st)+`}}`, nil)
			if err := session(t, e, tToken).GuildRoleDelete(tGuild, tBooster); !is(err, st, 50028) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestKnob_MaxGuildsStatus(t *testing.T) {
	t.Parallel()
	for _, st := range []int{400, 403} {
		t.Run(strconv.Itoa(st), func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"max_guilds_status":`+strconv.Itoa(st)+`}}`, nil)
			ctx := testCtx(t)
			u, err := e.Admin().CreateUser(ctx, UserSeed{Username: "full", MaxGuilds: 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Admin().AddMember(ctx, tGuild2, MemberSeed{UserID: u.ID}); err != nil {
				t.Fatal(err)
			}
			tok, _ := e.Admin().IssueToken(ctx, TokenRequest{ClientID: tApp, UserID: u.ID, Scopes: []string{"guilds.join"}})
			err = session(t, e, tToken).GuildMemberAdd(tGuild, u.ID, &discordgo.GuildMemberAddParams{AccessToken: tok.AccessToken})
			if !is(err, st, 30001) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestKnob_InvalidClientStatus(t *testing.T) {
	t.Parallel()
	for _, st := range []int{401, 400} {
		t.Run(strconv.Itoa(st), func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"strict":{"invalid_client_status":`+strconv.Itoa(st)+`}}`, nil)
			res, body := raw(t, e, "POST", "/api/oauth2/token", "", "application/x-www-form-urlencoded", "grant_type=authorization_code&code=x&client_id="+tApp+"&client_secret=wrong", nil)
			if res.StatusCode != st || !strings.Contains(body, "invalid_client") {
				t.Fatalf("got %d %s", res.StatusCode, body)
			}
		})
	}
}

func TestKnob_Profile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		profile    string
		resetAfter string
		limited    bool
	}{{"realistic", "10.000", true}, {"fast", "0.100", true}, {"off", "", false}} {
		t.Run(tc.profile, func(t *testing.T) {
			t.Parallel()
			clk := NewManualClock(time.Unix(1_700_000_000, 0))
			e := knobEmu(t, `{"profile":"`+tc.profile+`"}`, func(c *Config) { c.Clock = clk })
			var last int
			for i := 0; i < 11; i++ {
				res, _ := raw(t, e, "PUT", "/api/v9/guilds/"+tGuild+"/members/"+tAlice+"/roles/"+tLow, "Bot "+tToken, "", "", nil)
				if i == 0 && res.Header.Get("X-RateLimit-Reset-After") != tc.resetAfter {
					t.Fatalf("Reset-After %q", res.Header.Get("X-RateLimit-Reset-After"))
				}
				last = res.StatusCode
			}
			if (last == 429) != tc.limited {
				t.Fatalf("11th status %d", last)
			}
		})
	}
}

func TestKnob_TimeScale(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ scale, want string }{{"1", "10.000"}, {"0.02", "0.200"}} {
		t.Run(tc.scale, func(t *testing.T) {
			t.Parallel()
			clk := NewManualClock(time.Unix(1_700_000_000, 0))
			e := knobEmu(t, `{"time_scale":`+tc.scale+`}`, func(c *Config) { c.Clock = clk })
			res, _ := raw(t, e, "PUT", "/api/v9/guilds/"+tGuild+"/members/"+tAlice+"/roles/"+tLow, "Bot "+tToken, "", "", nil)
			if got := res.Header.Get("X-RateLimit-Reset-After"); got != tc.want {
				t.Fatalf("Reset-After %s, want %s", got, tc.want)
			}
		})
	}
}

func TestKnob_GlobalLimitPerSec(t *testing.T) {
	t.Parallel()
	for _, lim := range []int{50, 3} {
		t.Run(strconv.Itoa(lim), func(t *testing.T) {
			t.Parallel()
			clk := NewManualClock(time.Unix(1_700_000_000, 0))
			e := knobEmu(t, `{"global_limit_per_sec":`+strconv.Itoa(lim)+`}`, func(c *Config) { c.Clock = clk })
			ok := 0
			for i := 0; i < 60; i++ {
				if res, _ := raw(t, e, "GET", "/api/v9/users/@me", "Bot "+tToken, "", "", nil); res.StatusCode == 200 {
					ok++
				}
			}
			if ok != lim {
				t.Fatalf("%d successes, want %d", ok, lim)
			}
		})
	}
}

func TestKnob_CloudflareBanFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ format, ctype string }{{"json", "application/json"}, {"html", "text/html"}} {
		t.Run(tc.format, func(t *testing.T) {
			t.Parallel()
			e := knobEmu(t, `{"cloudflare_ban_format":"`+tc.format+`","invalid_request_limit":2}`, nil)
			for i := 0; i < 2; i++ {
				raw(t, e, "GET", "/api/v9/users/@me", "", "", "", nil)
			}
			res, _ := raw(t, e, "GET", "/api/v9/users/@me", "Bot "+tToken, "", "", nil)
			if res.StatusCode != 429 || !strings.HasPrefix(res.Header.Get("Content-Type"), tc.ctype) {
				t.Fatalf("got %d %s", res.StatusCode, res.Header.Get("Content-Type"))
			}
		})
	}
}
