package discordemu

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

func TestConformance_01_Shapes(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	s := session(t, e, tToken)
	roles, err := s.GuildRoles(tGuild)
	if err != nil {
		t.Fatalf("GuildRoles: %v", err)
	}
	if len(roles) != 6 || roles[0].ID != tGuild || roles[0].Position != 0 {
		t.Fatalf("roles = %+v", roles)
	}
	for i, r := range roles {
		if r.Position != i {
			t.Errorf("role %s position %d, want %d", r.Name, r.Position, i)
		}
	}
	m, err := s.GuildMember(tGuild, tBob)
	if err != nil {
		t.Fatalf("GuildMember: %v", err)
	}
	if m.JoinedAt.IsZero() || m.User.ID != tBob || len(m.Roles) != 2 {
		t.Fatalf("member = %+v", m)
	}
	ms, err := s.GuildMembers(tGuild, "", 1000)
	if err != nil {
		t.Fatalf("GuildMembers: %v", err)
	}
	if len(ms) != 5 { // owner, alice, bob, carol, bot
		t.Fatalf("members = %d", len(ms))
	}
	g, err := s.GuildWithCounts(tGuild)
	if err != nil {
		t.Fatalf("Guild: %v", err)
	}
	if g.OwnerID != tOwner || len(g.Roles) != 6 || g.ApproximateMemberCount != 5 {
		t.Fatalf("guild = %+v", g)
	}
	me, err := s.User("@me")
	if err != nil {
		t.Fatalf("User(@me): %v", err)
	}
	if me.ID != tBot || !me.Bot || me.Email != "" {
		t.Fatalf("me = %+v", me)
	}
	// permissions are JSON strings; joined_at has microseconds and an offset
	res, body := raw(t, e, "GET", "/api/v9/guilds/"+tGuild+"/roles", "Bot "+tToken, "", "", nil)
	if res.StatusCode != 200 || !strings.Contains(body, `"permissions":"`) {
		t.Fatalf("roles body %d %s", res.StatusCode, body)
	}
	var booster map[string]any
	var arr []map[string]any
	_ = json.Unmarshal([]byte(body), &arr)
	for _, r := range arr {
		if r["id"] == tBooster {
			booster = r
		}
	}
	tags, _ := booster["tags"].(map[string]any)
	if v, ok := tags["premium_subscriber"]; !ok || v != nil {
		t.Fatalf("booster tags = %v", booster["tags"])
	}
	_, body = raw(t, e, "GET", "/api/v9/guilds/"+tGuild+"/members/"+tAlice, "Bot "+tToken, "", "", nil)
	var mm map[string]any
	_ = json.Unmarshal([]byte(body), &mm)
	if ja, _ := mm["joined_at"].(string); !strings.HasSuffix(ja, "+00:00") || len(ja) != len("2024-05-01T12:00:00.123000+00:00") {
		t.Fatalf("joined_at = %v", mm["joined_at"])
	}
}

func TestConformance_04_MemberRoleAddRemove(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		user, role string
		wantStatus int
		wantCode   int
	}{
		{"everyone", tAlice, tGuild, 404, 10011},
		{"unknown role", tAlice, "500000000000009999", 404, 10011},
		{"unknown member", tDave, tLow, 404, 10007},
		{"role above bot", tAlice, tHigh, 403, 50013},
		{"bot's own role (at bot position)", tAlice, tBotRole, 403, 50013},
		{"managed role", tAlice, tBooster, 403, 50013},
	}
	e := newTestEmu(t, func(c *Config) { c.TimeScale = 0.01 })
	s := session(t, e, tToken)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, add := range []bool{true, false} {
				var err error
				if add {
					err = s.GuildMemberRoleAdd(tGuild, tc.user, tc.role)
				} else {
					err = s.GuildMemberRoleRemove(tGuild, tc.user, tc.role)
				}
				if st, code := restCode(err); st != tc.wantStatus || code != tc.wantCode {
					t.Errorf("add=%v: got %d/%d (%v), want %d/%d", add, st, code, err, tc.wantStatus, tc.wantCode)
				}
			}
		})
	}
	t.Run("idempotent", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if err := s.GuildMemberRoleAdd(tGuild, tAlice, tMid); err != nil {
				t.Fatalf("add #%d: %v", i+1, err)
			}
		}
		if st := mustState(t, e, tGuild); !hasStr(st.Member(tAlice).Roles, tMid) {
			t.Fatalf("alice roles %v", st.Member(tAlice).Roles)
		}
		for i := 0; i < 2; i++ {
			if err := s.GuildMemberRoleRemove(tGuild, tAlice, tMid); err != nil {
				t.Fatalf("remove #%d: %v", i+1, err)
			}
		}
		recs := e.Recorder().Requests(RequestFilter{UserID: tAlice, Status: 204})
		if len(recs) != 4 {
			t.Fatalf("want 4 recorded 204s, got %d", len(recs))
		}
		st := mustState(t, e, tGuild)
		if hasStr(st.Member(tAlice).Roles, tMid) {
			t.Fatalf("alice still has Mid")
		}
		n := 0
		for _, a := range st.AuditLog {
			if a.ActionType == AuditMemberRoleUpdate && a.TargetID == tAlice {
				n++
			}
		}
		if n != 2 { // no-ops write no audit entry
			t.Fatalf("audit entries = %d, want 2", n)
		}
	})
}

func TestConformance_05_PatchMemberRoles(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	s := session(t, e, tToken)
	// bob has Booster (managed, below the bot) and Low.
	_, err := s.GuildMemberEdit(tGuild, tBob, &discordgo.GuildMemberParams{Roles: &[]string{tLow}})
	if st, code := restCode(err); st != 403 || code != 50013 {
		t.Fatalf("dropping managed role: %d/%d %v", st, code, err)
	}
	m, err := s.GuildMemberEdit(tGuild, tBob, &discordgo.GuildMemberParams{Roles: &[]string{tBooster, tMid}})
	if err != nil {
		t.Fatalf("keeping managed role: %v", err)
	}
	if len(m.Roles) != 2 || !hasStr(m.Roles, tBooster) || !hasStr(m.Roles, tMid) {
		t.Fatalf("bob roles = %v", m.Roles)
	}
	// alice: give two roles, then clear everything with [].
	if _, err := s.GuildMemberEdit(tGuild, tAlice, &discordgo.GuildMemberParams{Roles: &[]string{tLow, tMid}}); err != nil {
		t.Fatal(err)
	}
	m, err = s.GuildMemberEdit(tGuild, tAlice, &discordgo.GuildMemberParams{Roles: &[]string{}})
	if err != nil || len(m.Roles) != 0 {
		t.Fatalf("clear: %v %v", m, err)
	}
	st := mustState(t, e, tGuild)
	if len(st.Member(tAlice).Roles) != 0 {
		t.Fatalf("state alice roles = %v", st.Member(tAlice).Roles)
	}
	var changes []string
	for _, a := range st.AuditLog {
		if a.ActionType == AuditMemberRoleUpdate && a.TargetID == tAlice {
			for _, c := range a.Changes {
				changes = append(changes, c.Key)
			}
		}
	}
	if strings.Join(changes, ",") != "$add,$remove" {
		t.Fatalf("audit changes = %v", changes)
	}
}

func TestConformance_09_MemberRoleBucket(t *testing.T) {
	t.Parallel()
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		e := newTestEmu(t, nil)
		roles := []string{tLow, tMid}
		for i := 0; i < 10; i++ {
			res, body := raw(t, e, "PUT", "/api/v9/guilds/"+tGuild+"/members/"+tAlice+"/roles/"+roles[i%2], "Bot "+tToken, "", "", nil)
			if res.StatusCode != 204 {
				t.Fatalf("request %d: %d %s", i+1, res.StatusCode, body)
			}
			if got := res.Header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(9-i) {
				t.Fatalf("request %d remaining = %q", i+1, got)
			}
			if res.Header.Get("X-RateLimit-Bucket") != BucketHash("member_role") || res.Header.Get("X-RateLimit-Limit") != "10" {
				t.Fatalf("headers %v", res.Header)
			}
		}
		res, body := raw(t, e, "PUT", "/api/v9/guilds/"+tGuild+"/members/"+tAlice+"/roles/"+tLow, "Bot "+tToken, "", "", nil)
		if res.StatusCode != 429 || res.Header.Get("X-RateLimit-Scope") != "user" || res.Header.Get("X-RateLimit-Remaining") != "0" {
			t.Fatalf("11th: %d %v %s", res.StatusCode, res.Header, body)
		}
		for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Reset-After", "X-RateLimit-Bucket", "Retry-After"} {
			if res.Header.Get(h) == "" {
				t.Errorf("429 lacks %s", h)
			}
		}
		if res.Header.Get("X-RateLimit-Global") != "" {
			t.Errorf("user 429 has X-RateLimit-Global")
		}
		var b struct {
			RetryAfter float64 `json:"retry_after"`
			Global     bool    `json:"global"`
		}
		if err := json.Unmarshal([]byte(body), &b); err != nil || b.RetryAfter <= 0 || b.RetryAfter > 10 || b.Global {
			t.Fatalf("429 body %s", body)
		}
		if !strings.Contains(body, `"retry_after":`) || !strings.Contains(body, ".") {
			t.Fatalf("retry_after not a 3-decimal float: %s", body)
		}
		// the other guild has its own bucket (major parameter)
		res, _ = raw(t, e, "PUT", "/api/v9/guilds/"+tGuild2+"/members/"+tAlice+"/roles/500000000000000201", "Bot "+tToken, "", "", nil)
		if res.StatusCode != 204 {
			t.Fatalf("other guild: %d", res.StatusCode)
		}
	})
	t.Run("discordgo", func(t *testing.T) {
		t.Parallel()
		const scale = 0.05 // 10 s window → 0.5 s
		e := newTestEmu(t, func(c *Config) { c.TimeScale = scale })
		s := session(t, e, tToken)
		roles := []string{tLow, tMid}
		for i := 0; i < 11; i++ {
			var err error
			if i%2 == 0 {
				err = s.GuildMemberRoleAdd(tGuild, tAlice, roles[(i/2)%2])
			} else {
				err = s.GuildMemberRoleRemove(tGuild, tAlice, roles[(i/2)%2])
			}
			if err != nil {
				t.Fatalf("call %d: %v", i+1, err)
			}
		}
		e.Recorder().AssertNoRateLimits(t)
		recs := e.Recorder().Requests(RequestFilter{GuildID: tGuild})
		if len(recs) != 11 {
			t.Fatalf("recorded %d", len(recs))
		}
		window := time.Duration(10 * scale * float64(time.Second))
		if d := recs[10].ReceivedAt.Sub(recs[0].ReceivedAt); d < window {
			t.Fatalf("11th request arrived %v after the 1st, before the %v reset", d, window)
		}
	})
}

// TestConformance_05_PatchMemberNick pins the nick rules. Discord clears a
// nickname on "" as on null (its own client sends "" to reset:
// discord/discord-api-docs#3994; discordgo documents "" as reset), so "" is
// not a 50035 even though spec §6.9's prose says 1–32 characters.
func TestConformance_05_PatchMemberNick(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		status     int
		want       *string // nick afterwards
	}{
		{"set", `{"nick":"ali"}`, 200, strPtr("ali")},
		{"32 characters", `{"nick":"` + strings.Repeat("n", 32) + `"}`, 200, strPtr(strings.Repeat("n", 32))},
		{"33 characters", `{"nick":"` + strings.Repeat("n", 33) + `"}`, 400, strPtr("old")},
		{"not a string", `{"nick":5}`, 400, strPtr("old")},
		{"null clears", `{"nick":null}`, 200, nil},
		{"empty string clears", `{"nick":""}`, 200, nil},
		{"absent keeps", `{}`, 200, strPtr("old")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEmu(t, nil)
			old := "old"
			if _, err := e.Admin().EditMember(testCtx(t), tGuild, tAlice, MemberPatch{Nick: &old}); err != nil {
				t.Fatal(err)
			}
			res, body := raw(t, e, "PATCH", "/api/v9/guilds/"+tGuild+"/members/"+tAlice, "Bot "+tToken, "application/json", tc.body, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("got %d %s", res.StatusCode, body)
			}
			if tc.status == 400 && !strings.Contains(body, `"code":50035`) {
				t.Fatalf("want 50035: %s", body)
			}
			got := mustState(t, e, tGuild).Member(tAlice).Nick
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("nick %v, want %v", got, tc.want)
			}
		})
	}
}

func strPtr(s string) *string { return &s }
