package discordemu

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

func TestConformance_02_RoleCreate(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	s := session(t, e, tToken)
	r, err := s.GuildRoleCreate(tGuild, &discordgo.RoleParams{Name: "Fresh"})
	if err != nil {
		t.Fatalf("GuildRoleCreate: %v", err)
	}
	if r.Position != 1 || r.Name != "Fresh" || r.Permissions != 0 {
		t.Fatalf("role = %+v", r)
	}
	if recs := e.Recorder().Requests(RequestFilter{Route: "role_create"}); len(recs) != 1 || recs[0].Outcome.Status != 200 {
		t.Fatalf("status %+v", recs)
	}
	st := mustState(t, e, tGuild)
	if st.Role(tGuild).Position != 0 || st.Role(tLow).Position != 2 || st.Role(tHigh).Position != 6 {
		t.Fatalf("positions: %+v", st.Roles)
	}
	// asking for permissions the bot lacks is 50013
	perms := int64(PermAdministrator)
	if _, err := s.GuildRoleCreate(tGuild, &discordgo.RoleParams{Name: "x", Permissions: &perms}); !is(err, 403, 50013) {
		t.Fatalf("admin role: %v", err)
	}
}

func is(err error, status, code int) bool {
	st, c := restCode(err)
	return st == status && c == code
}

func TestConformance_03_RoleReorder(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	s := session(t, e, tToken)
	roles, err := s.GuildRoles(tGuild)
	if err != nil {
		t.Fatal(err)
	}
	// whole objects: swap Low (1) and Mid (3)
	for _, r := range roles {
		switch r.ID {
		case tLow:
			r.Position = 3
		case tMid:
			r.Position = 1
		}
	}
	if _, err := s.GuildRoleReorder(tGuild, roles); err != nil {
		t.Fatalf("reorder: %v", err)
	}
	st := mustState(t, e, tGuild)
	if st.Role(tLow).Position != 3 || st.Role(tMid).Position != 1 || st.Role(tLow).Name != "Low" || st.Role(tMid).Name != "Mid" {
		t.Fatalf("after reorder: %+v", st.Roles)
	}
	// minimal objects: discordgo sends "name":"" which must not rename anything
	if _, err := s.GuildRoleReorder(tGuild, []*discordgo.Role{{ID: tLow, Position: 1}}); err != nil {
		t.Fatal(err)
	}
	st = mustState(t, e, tGuild)
	for _, r := range st.Roles {
		if r.Name == "" {
			t.Fatalf("role %s renamed to empty", r.ID)
		}
	}
	if st.Role(tLow).Position != 1 {
		t.Fatalf("Low at %d", st.Role(tLow).Position)
	}
	// moving a role above the bot is 50013 and applies nothing
	if _, err := s.GuildRoleReorder(tGuild, []*discordgo.Role{{ID: tLow, Position: 5}}); !is(err, 403, 50013) {
		t.Fatalf("above bot: %v", err)
	}
	if _, err := s.GuildRoleReorder(tGuild, []*discordgo.Role{{ID: "500000000000009999", Position: 1}}); !is(err, 404, 10011) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestConformance_06_Kick(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, func(c *Config) { c.TimeScale = 0.01 })
	s := session(t, e, tToken)
	tests := []struct {
		name         string
		user         string
		status, code int
	}{
		{"owner", tOwner, 403, 50013},
		{"bot itself", tBot, 403, 50013},
		{"outranks bot", tCarol, 403, 50013},
		{"non-member", tDave, 404, 10007},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.GuildMemberDelete(tGuild, tc.user); !is(err, tc.status, tc.code) {
				t.Fatalf("got %v", err)
			}
		})
	}
	if err := s.GuildMemberDelete(tGuild, tAlice); err != nil {
		t.Fatalf("kick alice: %v", err)
	}
	st := mustState(t, e, tGuild)
	if st.Member(tAlice) != nil {
		t.Fatal("alice still a member")
	}
	if a := st.AuditLog[len(st.AuditLog)-1]; a.ActionType != AuditMemberKick || a.TargetID != tAlice {
		t.Fatalf("audit %+v", a)
	}
}

func TestConformance_07_Bans(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	s := session(t, e, tToken)
	if err := s.GuildBanCreate(tGuild, tDave, 0); err != nil {
		t.Fatalf("ban non-member: %v", err)
	}
	if err := s.GuildBanCreate(tGuild, "500000000000007777", 0); !is(err, 404, 10013) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := s.GuildBanDelete(tGuild, tStranger); !is(err, 404, 10026) {
		t.Fatalf("unban not banned: %v", err)
	}
	if err := s.GuildBanCreate(tGuild, tAlice, 0); err != nil {
		t.Fatalf("ban member: %v", err)
	}
	st := mustState(t, e, tGuild)
	if st.Member(tAlice) != nil || len(st.Bans) != 2 {
		t.Fatalf("after ban: member=%v bans=%d", st.Member(tAlice), len(st.Bans))
	}
	bans, err := s.GuildBans(tGuild, 0, "", "")
	if err != nil || len(bans) != 2 {
		t.Fatalf("GuildBans: %v %v", bans, err)
	}
	if b, err := s.GuildBan(tGuild, tDave); err != nil || b.User.ID != tDave {
		t.Fatalf("GuildBan: %v %v", b, err)
	}
	if err := s.GuildBanDelete(tGuild, tDave); err != nil {
		t.Fatalf("unban: %v", err)
	}
	if err := s.GuildBanCreate(tGuild, tCarol, 0); !is(err, 403, 50013) {
		t.Fatalf("ban outranking member: %v", err)
	}
}

func TestConformance_08_GuildsJoin(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	ctx := testCtx(t)
	ad := e.Admin()
	s := session(t, e, tToken)
	tok, err := ad.IssueToken(ctx, TokenRequest{ClientID: tApp, UserID: tStranger, Scopes: []string{"identify", "guilds.join"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.GuildMemberAdd(tGuild, tStranger, &discordgo.GuildMemberAddParams{AccessToken: tok.AccessToken, Roles: []string{tLow}}); err != nil {
		t.Fatalf("join: %v", err)
	}
	if err := s.GuildMemberAdd(tGuild, tStranger, &discordgo.GuildMemberAddParams{AccessToken: tok.AccessToken, Roles: []string{tMid}}); err != nil {
		t.Fatalf("second join: %v", err)
	}
	recs := e.Recorder().Requests(RequestFilter{Route: "member_add"})
	if len(recs) != 2 || recs[0].Outcome.Status != 201 || recs[1].Outcome.Status != 204 {
		t.Fatalf("statuses %+v", recs)
	}
	if m := mustState(t, e, tGuild).Member(tStranger); m == nil || len(m.Roles) != 1 || m.Roles[0] != tLow {
		t.Fatalf("member %+v", m)
	}
	other, err := ad.CreateApplication(ctx, ApplicationSeed{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	otherTok, _ := ad.IssueToken(ctx, TokenRequest{ClientID: other.ClientID, UserID: tDave, Scopes: []string{"guilds.join"}})
	daveTok, _ := ad.IssueToken(ctx, TokenRequest{ClientID: tApp, UserID: tDave, Scopes: []string{"guilds.join"}})
	expTok, _ := ad.IssueToken(ctx, TokenRequest{ClientID: tApp, UserID: tDave, Scopes: []string{"guilds.join"}})
	if err := ad.ExpireToken(ctx, expTok.AccessToken); err != nil {
		t.Fatal(err)
	}
	for name, tk := range map[string]string{"other app": otherTok.AccessToken, "wrong user": tok.AccessToken, "expired": expTok.AccessToken} {
		if err := s.GuildMemberAdd(tGuild, tDave, &discordgo.GuildMemberAddParams{AccessToken: tk}); !is(err, 403, 50025) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := ad.Ban(ctx, tGuild, tDave, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.GuildMemberAdd(tGuild, tDave, &discordgo.GuildMemberAddParams{AccessToken: daveTok.AccessToken}); !is(err, 403, 40007) {
		t.Fatalf("banned: %v", err)
	}
	f := false
	if _, err := ad.PatchApplication(ctx, tApp, ApplicationPatch{MembersIntent: &f}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GuildMembers(tGuild, "", 10); !is(err, 403, 50001) {
		t.Fatalf("members without intent: %v", err)
	}
}

func TestConformance_10_TwoGuilds(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	s := session(t, e, tToken)
	start := time.Now()
	for i := 0; i < 11; i++ {
		g, r := tGuild, tLow
		if i%2 == 1 {
			g, r = tGuild2, "500000000000000201"
		}
		var err error
		if (i/2)%2 == 0 {
			err = s.GuildMemberRoleAdd(g, tAlice, r)
		} else {
			err = s.GuildMemberRoleRemove(g, tAlice, r)
		}
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	e.Recorder().AssertNoRateLimits(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("calls waited %v: buckets were not per guild", d)
	}
}

func TestConformance_11_GlobalLimit(t *testing.T) {
	t.Parallel()
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		clk := NewManualClock(time.Unix(1_700_000_000, 0))
		e := newTestEmu(t, func(c *Config) { c.Clock = clk })
		paths := []string{"/guilds/" + tGuild, "/guilds/" + tGuild + "/roles", "/users/@me", "/guilds/" + tGuild + "/roles/" + tLow, "/users/" + tAlice}
		n429 := 0
		for i := 0; i < 60; i++ {
			res, body := raw(t, e, "GET", "/api/v9"+paths[i%len(paths)], "Bot "+tToken, "", "", nil)
			if res.StatusCode == 429 {
				n429++
				if res.Header.Get("X-RateLimit-Global") != "true" || res.Header.Get("X-RateLimit-Scope") != "global" || res.Header.Get("Retry-After") == "" {
					t.Fatalf("global 429 headers %v", res.Header)
				}
				for _, h := range []string{"X-RateLimit-Reset-After", "X-RateLimit-Bucket", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
					if res.Header.Get(h) != "" {
						t.Fatalf("global 429 carries %s", h)
					}
				}
				if !strings.Contains(body, `"global":true`) || !strings.Contains(body, `"retry_after":1.000`) {
					t.Fatalf("body %s", body)
				}
			}
		}
		if n429 != 10 {
			t.Fatalf("global 429s = %d, want 10", n429)
		}
		clk.Advance(time.Second)
		if res, _ := raw(t, e, "GET", "/api/v9/users/@me", "Bot "+tToken, "", "", nil); res.StatusCode != 200 {
			t.Fatalf("next window: %d", res.StatusCode)
		}
	})
	t.Run("discordgo_other_bucket_not_delayed", func(t *testing.T) {
		t.Parallel()
		e := newTestEmu(t, nil)
		ctx := testCtx(t)
		if _, err := e.Admin().AddFault(ctx, FaultRule{Match: FaultMatch{Route: StringList{"guild_get"}}, When: FaultWhen{Times: 1},
			Action: FaultAction{Type: "rate_limit", Scope: "global", RetryAfter: 1}}); err != nil {
			t.Fatal(err)
		}
		s := session(t, e, tToken)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = s.Guild(tGuild)
		}()
		recs, err := e.Recorder().Wait(ctx, RequestFilter{Route: "guild_get", Status: 429}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.GuildRoles(tGuild); err != nil {
			t.Fatal(err)
		}
		other := e.Recorder().Requests(RequestFilter{Route: "roles_list"})
		if d := other[0].ReceivedAt.Sub(recs[0].ReceivedAt); d > 500*time.Millisecond {
			t.Fatalf("other bucket delayed by %v", d)
		}
		wg.Wait()
		if n := e.Recorder().Calls("guild_get"); n != 2 {
			t.Fatalf("guild_get calls = %d", n)
		}
	})
}

func TestConformance_12_CloudflareBan(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	ctx := testCtx(t)
	if err := e.Admin().CloudflareBan(ctx, CloudflareBanRequest{DurationS: 3600}); err != nil {
		t.Fatal(err)
	}
	res, body := raw(t, e, "GET", "/api/v9/guilds/"+tGuild+"/members/"+tAlice, "Bot "+tToken, "", "", nil)
	if res.StatusCode != 429 || strings.Contains(body, "retry_after") || !strings.Contains(body, "You are being blocked") {
		t.Fatalf("ban response %d %s", res.StatusCode, body)
	}
	for k := range res.Header {
		if strings.HasPrefix(k, "X-Ratelimit") || k == "Retry-After" {
			t.Fatalf("ban response carries %s", k)
		}
	}
	s := session(t, e, tToken)
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err := s.GuildMember(tGuild, tAlice, discordgo.WithContext(cctx))
	if err == nil {
		t.Fatal("want an error")
	}
	if n := e.Recorder().Calls("member_get"); n < 10 {
		t.Fatalf("discordgo made only %d requests; the hot loop did not reproduce", n)
	}
	for _, r := range e.Recorder().Requests(RequestFilter{Route: "member_get"}) {
		if r.Outcome.InvalidCounted {
			t.Fatal("ban responses must not count as invalid")
		}
	}
	if err := e.Admin().CloudflareUnban(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GuildMember(tGuild, tAlice); err != nil {
		t.Fatalf("after unban: %v", err)
	}
	// html format
	if err := e.Admin().CloudflareBan(ctx, CloudflareBanRequest{DurationS: 3600, Format: "html"}); err != nil {
		t.Fatal(err)
	}
	res, body = raw(t, e, "GET", "/api/v9/users/@me", "Bot "+tToken, "", "", nil)
	if res.StatusCode != 429 || body != "error code: 1015" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("html ban %d %q %v", res.StatusCode, body, res.Header)
	}
}

func TestConformance_13_InvalidRequests(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, func(c *Config) { c.InvalidRequestLimit = 5 })
	ctx := testCtx(t)
	ad := e.Admin()
	if err := ad.SetRateLimitTable(ctx, RateLimitTable{Buckets: []BucketDef{{Name: "member_role", Routes: []string{"member_role_add"}, Limit: 1, WindowSeconds: 100, Major: "guild", Algorithm: "fixed"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ad.AddFault(ctx, FaultRule{Match: FaultMatch{Route: StringList{"member_get"}}, Action: FaultAction{Type: "rate_limit", Scope: "shared", RetryAfter: 0.5}}); err != nil {
		t.Fatal(err)
	}
	bot := "Bot " + tToken
	steps := []struct {
		method, path, auth string
		status             int
	}{
		{"GET", "/users/@me", "Bot wrong", 401},                                           // 1
		{"PUT", "/guilds/" + tGuild + "/members/" + tAlice + "/roles/" + tHigh, bot, 403}, // 2 (consumes the unit)
		{"PUT", "/guilds/" + tGuild + "/members/" + tAlice + "/roles/" + tLow, bot, 429},  // 3 user scope
		{"GET", "/guilds/" + tGuild + "/members/" + tAlice, bot, 429},                     // shared: not counted
		{"GET", "/guilds/" + tGuild, bot, 200},
		{"GET", "/users/@me", "", 401}, // 4
	}
	for i, st := range steps {
		res, body := raw(t, e, st.method, "/api/v10"+st.path, st.auth, "", "", nil)
		if res.StatusCode != st.status {
			t.Fatalf("step %d: %d %s", i, res.StatusCode, body)
		}
	}
	var inv struct {
		Counts map[string]int `json:"counts"`
	}
	res, body := raw(t, e, "GET", "/_emu/invalid-requests", "", "", "", nil)
	if err := json.Unmarshal([]byte(body), &inv); err != nil || res.StatusCode != 200 || inv.Counts["127.0.0.1"] != 4 {
		t.Fatalf("invalid counts %s", body)
	}
	if res, _ := raw(t, e, "GET", "/api/v9/users/@me", "", "", "", nil); res.StatusCode != 401 { // 5th → ban starts
		t.Fatalf("5th: %d", res.StatusCode)
	}
	res, body = raw(t, e, "GET", "/api/v9/users/@me", bot, "", "", nil)
	if res.StatusCode != 429 || !strings.Contains(body, "blocked") {
		t.Fatalf("after limit: %d %s", res.StatusCode, body)
	}
	m := e.Recorder().Metrics()
	if m.Identities["ip:127.0.0.1"] == nil || m.Identities["ip:127.0.0.1"].BanEvents != 1 {
		t.Fatalf("ban events %+v", m.Identities["ip:127.0.0.1"])
	}
}

func TestConformance_14_Faults(t *testing.T) {
	t.Parallel()
	t.Run("drop_after_commit", func(t *testing.T) {
		t.Parallel()
		e := newTestEmu(t, nil)
		if _, err := e.Admin().AddFault(testCtx(t), FaultRule{Match: FaultMatch{Route: StringList{"role_create"}}, Stage: "after_commit", Action: FaultAction{Type: "drop"}}); err != nil {
			t.Fatal(err)
		}
		s := session(t, e, tToken)
		_, err := s.GuildRoleCreate(tGuild, &discordgo.RoleParams{Name: "Ghost"})
		if err == nil || !strings.Contains(err.Error(), "EOF") {
			t.Fatalf("want EOF, got %v", err)
		}
		if mustState(t, e, tGuild).RoleByName("Ghost") == nil {
			t.Fatal("role was not created")
		}
		if recs := e.Recorder().Requests(RequestFilter{Route: "role_create"}); len(recs) != 1 || !recs[0].Outcome.Committed || recs[0].Outcome.Fault == nil {
			t.Fatalf("records %+v", recs)
		}
	})
	t.Run("502_x3_then_success", func(t *testing.T) {
		t.Parallel()
		e := newTestEmu(t, nil)
		if _, err := e.Admin().AddFault(testCtx(t), FaultRule{Match: FaultMatch{Route: StringList{"guild_get"}}, When: FaultWhen{Times: 3}, Action: FaultAction{Type: "status", Status: 502}}); err != nil {
			t.Fatal(err)
		}
		s := session(t, e, tToken)
		if _, err := s.Guild(tGuild); err != nil {
			t.Fatalf("Guild: %v", err)
		}
		if n := e.Recorder().Calls("guild_get"); n != 4 {
			t.Fatalf("recorded %d, want 4", n)
		}
	})
	t.Run("delay_beyond_timeout_commits", func(t *testing.T) {
		t.Parallel()
		e := newTestEmu(t, nil)
		ctx := testCtx(t)
		if _, err := e.Admin().AddFault(ctx, FaultRule{Match: FaultMatch{Route: StringList{"member_role_add"}}, Stage: "after_commit", Action: FaultAction{Type: "delay", MS: 2000}}); err != nil {
			t.Fatal(err)
		}
		s := session(t, e, tToken)
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		err := s.GuildMemberRoleAdd(tGuild, tAlice, tLow, discordgo.WithContext(cctx))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want deadline exceeded, got %v", err)
		}
		if !hasStr(mustState(t, e, tGuild).Member(tAlice).Roles, tLow) {
			t.Fatal("not committed")
		}
	})
	t.Run("after_commit_only_matches_committed_requests", func(t *testing.T) {
		t.Parallel()
		e := newTestEmu(t, nil)
		ctx := testCtx(t)
		if _, err := e.Admin().AddFault(ctx, FaultRule{ID: "ac", Match: FaultMatch{Route: StringList{"member_role_add"}}, When: FaultWhen{Times: 1}, Stage: "after_commit", Action: FaultAction{Type: "error", Status: 500, Code: 0, Message: "after commit"}}); err != nil {
			t.Fatal(err)
		}
		s := session(t, e, tToken)
		s.MaxRestRetries = 0
		// a 403 (High is above the bot) and a 204 no-op (bob already has Low) never committed
		if err := s.GuildMemberRoleAdd(tGuild, tAlice, tHigh); !is(err, 403, 50013) {
			t.Fatalf("above bot: %v", err)
		}
		if err := s.GuildMemberRoleAdd(tGuild, tBob, tLow); err != nil {
			t.Fatalf("no-op add: %v", err)
		}
		rules, err := e.Admin().Faults(ctx)
		if err != nil || len(rules) != 1 || rules[0].Matches != 0 || rules[0].Fired != 0 {
			t.Fatalf("rule after non-committing requests: %+v %v", rules, err)
		}
		// the first committing request gets the fault
		if err := s.GuildMemberRoleAdd(tGuild, tAlice, tLow); err == nil {
			t.Fatal("committed add: want the fault")
		}
		if !hasStr(mustState(t, e, tGuild).Member(tAlice).Roles, tLow) {
			t.Fatal("not committed")
		}
		if rules, _ := e.Admin().Faults(ctx); rules[0].Fired != 1 {
			t.Fatalf("fired %d", rules[0].Fired)
		}
	})
	t.Run("status_before_does_not_consume", func(t *testing.T) {
		t.Parallel()
		e := newTestEmu(t, nil)
		if _, err := e.Admin().AddFault(testCtx(t), FaultRule{Match: FaultMatch{Route: StringList{"member_role_add"}}, When: FaultWhen{Nth: []int{1}}, Action: FaultAction{Type: "error", Status: 403, Code: 50013, Message: "Missing Permissions"}}); err != nil {
			t.Fatal(err)
		}
		s := session(t, e, tToken)
		if err := s.GuildMemberRoleAdd(tGuild, tAlice, tLow); !is(err, 403, 50013) {
			t.Fatalf("fault: %v", err)
		}
		if err := s.GuildMemberRoleAdd(tGuild, tAlice, tLow); err != nil {
			t.Fatal(err)
		}
		recs := e.Recorder().Requests(RequestFilter{Route: "member_role_add"})
		if recs[0].Bucket != nil || recs[1].Bucket.RemainingAfter != 9 {
			t.Fatalf("bucket use: %+v %+v", recs[0].Bucket, recs[1].Bucket)
		}
	})
}

func TestConformance_15_AuditReason(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	s := session(t, e, tToken)
	if err := s.GuildMemberRoleAdd(tGuild, tAlice, tLow, discordgo.WithAuditLogReason("café déjà vu")); err != nil {
		t.Fatal(err)
	}
	enc := strings.ReplaceAll(url.QueryEscape("café déjà vu + more"), "+", "%20")
	if err := s.GuildMemberRoleAdd(tGuild, tAlice, tMid, discordgo.WithAuditLogReason(enc)); err != nil {
		t.Fatal(err)
	}
	recs := e.Recorder().Requests(RequestFilter{Route: "member_role_add"})
	if !recs[0].hasFlag(FlagReasonNotEncoded) || recs[1].hasFlag(FlagReasonNotEncoded) {
		t.Fatalf("flags %v / %v", recs[0].Flags, recs[1].Flags)
	}
	if *recs[1].AuditReason != "café déjà vu + more" {
		t.Fatalf("decoded %q", *recs[1].AuditReason)
	}
	st := mustState(t, e, tGuild)
	if a := st.AuditLog[len(st.AuditLog)-1]; a.Reason == nil || *a.Reason != "café déjà vu + more" {
		t.Fatalf("audit reason %v", a.Reason)
	}
	// too long after decoding
	long := strings.Repeat("a", 513)
	if err := s.GuildMemberRoleRemove(tGuild, tAlice, tMid, discordgo.WithAuditLogReason(long)); !is(err, 400, 50035) {
		t.Fatalf("long reason: %v", err)
	}
	// discordgo's *WithReason helper sends ?reason=, which is flagged
	if err := s.GuildMemberDeleteWithReason(tGuild, tAlice, "bye"); err != nil {
		t.Fatal(err)
	}
	if r := e.Recorder().Requests(RequestFilter{Route: "member_kick"}); !r[0].hasFlag(FlagLegacyReasonQuery) {
		t.Fatalf("flags %v", r[0].Flags)
	}
}

func oauthPost(t *testing.T, e *Emulator, path, ctype string, form url.Values) (int, map[string]any) {
	t.Helper()
	res, body := raw(t, e, "POST", path, "", ctype, form.Encode(), nil)
	var m map[string]any
	_ = json.Unmarshal([]byte(body), &m)
	return res.StatusCode, m
}

func TestConformance_16_OAuth(t *testing.T) {
	t.Parallel()
	clk := NewManualClock(time.Now())
	e := newTestEmu(t, func(c *Config) { c.Clock = clk })
	ctx := testCtx(t)
	form := func(code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://app.example/cb"},
			"client_id": {tApp}, "client_secret": {"s3cret"}}
	}
	const ct = "application/x-www-form-urlencoded"
	az, err := e.Admin().Authorize(ctx, AuthorizeRequest{ClientID: tApp, UserID: tAlice, Scopes: []string{"identify", "guilds.join", "email"}, RedirectURI: "http://app.example/cb", State: "xyz"})
	if err != nil {
		t.Fatal(err)
	}
	st, m := oauthPost(t, e, "/api/oauth2/token", ct, form(az.Code))
	if st != 200 || m["token_type"] != "Bearer" || m["scope"] != "identify guilds.join email" || m["expires_in"].(float64) != 604800 {
		t.Fatalf("exchange %d %v", st, m)
	}
	access, refresh := m["access_token"].(string), m["refresh_token"].(string)
	if len(access) != 30 || strings.Contains(access, tAlice) {
		t.Fatalf("token %q", access)
	}
	if st, m := oauthPost(t, e, "/api/v10/oauth2/token", ct, form(az.Code)); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("reuse %d %v", st, m)
	}
	// bearer identity on /users/@me, with email
	res, body := raw(t, e, "GET", "/api/v9/users/@me", "Bearer "+access, "", "", nil)
	if res.StatusCode != 200 || !strings.Contains(body, `"email":"alice@example.com"`) {
		t.Fatalf("@me %d %s", res.StatusCode, body)
	}
	if res, _ := raw(t, e, "GET", "/api/v9/guilds/"+tGuild, "Bearer "+access, "", "", nil); res.StatusCode != 401 {
		t.Fatalf("bearer on guild route: %d", res.StatusCode)
	}
	// TTL
	az2, _ := e.Admin().Authorize(ctx, AuthorizeRequest{ClientID: tApp, UserID: tAlice, Scopes: []string{"identify"}, RedirectURI: "http://app.example/cb"})
	clk.Advance(101 * time.Second)
	if st, m := oauthPost(t, e, "/api/oauth2/token", ct, form(az2.Code)); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("expired code %d %v", st, m)
	}
	// JSON body
	res, body = raw(t, e, "POST", "/api/oauth2/token", "", "application/json", `{"grant_type":"authorization_code"}`, nil)
	if res.StatusCode != 400 || !strings.Contains(body, "unsupported_grant_type") {
		t.Fatalf("json body %d %s", res.StatusCode, body)
	}
	// wrong client secret
	f := form("x")
	f.Set("client_secret", "nope")
	if st, m := oauthPost(t, e, "/api/oauth2/token", ct, f); st != 401 || m["error"] != "invalid_client" {
		t.Fatalf("bad client %d %v", st, m)
	}
	// refresh rotates
	rf := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {tApp}, "client_secret": {"s3cret"}}
	st, m = oauthPost(t, e, "/api/oauth2/token", ct, rf)
	if st != 200 || m["access_token"] == access || m["refresh_token"] == refresh {
		t.Fatalf("refresh %d %v", st, m)
	}
	if st, m := oauthPost(t, e, "/api/oauth2/token", ct, rf); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("old refresh %d %v", st, m)
	}
	if res, _ := raw(t, e, "GET", "/api/v9/users/@me", "Bearer "+access, "", "", nil); res.StatusCode != 401 {
		t.Fatalf("old access token still valid")
	}
}

func TestConformance_16_OAuthAuthorizeAndPKCE(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	hc := &http.Client{Transport: e.HTTPClient().Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	challenge := "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	base := "https://discord.com/oauth2/authorize?response_type=code&client_id=" + tApp + "&scope=identify%20guilds.join&redirect_uri=" + url.QueryEscape("http://app.example/cb") + "&state=s1"
	get := func(u string) *http.Response {
		res, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := get(base + "&code_challenge=" + challenge + "&code_challenge_method=plain&emu_user=" + tAlice); res.StatusCode != 400 {
		t.Fatalf("plain PKCE: %d", res.StatusCode)
	}
	if res := get(strings.Replace(base, "app.example", "evil.example", 1) + "&emu_user=" + tAlice); res.StatusCode != 400 {
		t.Fatalf("bad redirect: %d", res.StatusCode)
	}
	if res := get(base); res.StatusCode != 200 {
		t.Fatalf("page: %d", res.StatusCode)
	}
	res := get(base + "&code_challenge=" + challenge + "&code_challenge_method=S256&emu_user=" + tAlice)
	if res.StatusCode != 302 {
		t.Fatalf("authorize: %d", res.StatusCode)
	}
	loc, _ := url.Parse(res.Header.Get("Location"))
	code := loc.Query().Get("code")
	if loc.Query().Get("state") != "s1" || code == "" {
		t.Fatalf("location %s", loc)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://app.example/cb"}}
	req := func(f url.Values) (int, map[string]any) {
		r, _ := http.NewRequest("POST", "https://discord.com/api/v10/oauth2/token", strings.NewReader(f.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth(tApp, "s3cret")
		res, err := hc.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	if st, m := req(form); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("no verifier: %d %v", st, m)
	}
	// the code was used by the failed attempt: issue a new one
	res = get(base + "&code_challenge=" + challenge + "&code_challenge_method=S256&emu_user=" + tAlice)
	loc, _ = url.Parse(res.Header.Get("Location"))
	form.Set("code", loc.Query().Get("code"))
	form.Set("code_verifier", verifier)
	st, m := req(form)
	if st != 200 {
		t.Fatalf("with verifier: %d %v", st, m)
	}
	rv := url.Values{"token": {m["access_token"].(string)}}
	if st, _ := req(rv); st != 400 {
		t.Fatalf("revoke posted to token endpoint should fail")
	}
	r, _ := http.NewRequest("POST", "https://discord.com/api/oauth2/token/revoke", strings.NewReader(rv.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(tApp, "s3cret")
	if res, err := hc.Do(r); err != nil || res.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", res, err)
	}
	if res, _ := raw(t, e, "GET", "/api/v9/users/@me", "Bearer "+m["access_token"].(string), "", "", nil); res.StatusCode != 401 {
		t.Fatalf("revoked token still works")
	}
	rf := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}}
	if st, _ := req(rf); st != 400 {
		t.Fatalf("refresh after revoke: %d", st)
	}
}

func TestConformance_17_ParallelEmulators(t *testing.T) {
	t.Parallel()
	a := newTestEmu(t, nil)
	b := newTestEmu(t, nil)
	if a.URL() == b.URL() {
		t.Fatal("same listener")
	}
	if err := session(t, a, tToken).GuildMemberRoleAdd(tGuild, tAlice, tLow); err != nil {
		t.Fatal(err)
	}
	if hasStr(mustState(t, b, tGuild).Member(tAlice).Roles, tLow) {
		t.Fatal("state shared between emulators")
	}
	if b.Recorder().Calls("member_role_add") != 0 || a.Recorder().Calls("member_role_add") != 1 {
		t.Fatal("recorders shared")
	}
}

// TestConformance_03_RoleReorderPartial moves one listed role: it must land
// exactly at the requested position, the others keep their relative order.
func TestConformance_03_RoleReorderPartial(t *testing.T) {
	t.Parallel()
	// fixture bottom→top: Low(1), Booster(2), Mid(3), bot(4), High(5)
	tests := []struct {
		name string
		body string
		want []string // bottom→top after the call
	}{
		{"up by one", `[{"id":"` + tLow + `","position":2}]`, []string{tBooster, tLow, tMid, tBotRole, tHigh}},
		{"up by two", `[{"id":"` + tLow + `","position":3}]`, []string{tBooster, tMid, tLow, tBotRole, tHigh}},
		{"down by one", `[{"id":"` + tMid + `","position":2}]`, []string{tLow, tMid, tBooster, tBotRole, tHigh}},
		{"down to bottom", `[{"id":"` + tMid + `","position":1}]`, []string{tMid, tLow, tBooster, tBotRole, tHigh}},
		{"same position is a no-op", `[{"id":"` + tMid + `","position":3}]`, []string{tLow, tBooster, tMid, tBotRole, tHigh}},
		{"two roles, listed order irrelevant", `[{"id":"` + tMid + `","position":1},{"id":"` + tLow + `","position":3}]`, []string{tMid, tBooster, tLow, tBotRole, tHigh}},
		{"same slot, old order kept", `[{"id":"` + tMid + `","position":1},{"id":"` + tLow + `","position":1}]`, []string{tLow, tMid, tBooster, tBotRole, tHigh}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEmu(t, nil)
			res, body := raw(t, e, "PATCH", "/api/v9/guilds/"+tGuild+"/roles", "Bot "+tToken, "application/json", tc.body, nil)
			if res.StatusCode != 200 {
				t.Fatalf("status %d: %s", res.StatusCode, body)
			}
			st := mustState(t, e, tGuild)
			for i, id := range tc.want {
				if got := st.Role(id).Position; got != i+1 {
					t.Errorf("role %s (%s) at %d, want %d", st.Role(id).Name, id, got, i+1)
				}
			}
		})
	}
}

// TestConformance_03_RoleReorderCollisionCannotPushTheBot: two roles asking for
// the slot just below the bot would push one of them over the bot's role;
// that is 403 50013 and nothing moves.
func TestConformance_03_RoleReorderCollisionCannotPushTheBot(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	res, body := raw(t, e, "PATCH", "/api/v9/guilds/"+tGuild+"/roles", "Bot "+tToken, "application/json",
		`[{"id":"`+tLow+`","position":3},{"id":"`+tBooster+`","position":3}]`, nil)
	if res.StatusCode != 403 || !strings.Contains(body, `"code":50013`) {
		t.Fatalf("got %d %s", res.StatusCode, body)
	}
	st := mustState(t, e, tGuild)
	for i, id := range []string{tLow, tBooster, tMid, tBotRole, tHigh} {
		if st.Role(id).Position != i+1 {
			t.Fatalf("role %s moved to %d", id, st.Role(id).Position)
		}
	}
}

// TestConformance_16_OAuthAuthorizeScopes: a missing, empty or unknown scope is
// invalid_scope — a redirect back to a valid redirect_uri (RFC 6749 §4.1.2.1)
// on the page, a 400 on the admin API — and issues no code.
func TestConformance_16_OAuthAuthorizeScopes(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	hc := &http.Client{Transport: e.HTTPClient().Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "https://discord.com/oauth2/authorize?response_type=code&client_id=" + tApp + "&redirect_uri=" + url.QueryEscape("http://app.example/cb") + "&state=s1&emu_user=" + tAlice
	tests := []struct {
		name, scope string
		ok          bool
	}{
		{"missing", "", false},
		{"empty", "&scope=", false},
		{"blank", "&scope=%20", false},
		{"unknown", "&scope=identify%20guilds.joinn", false},
		{"known", "&scope=identify%20email%20guilds%20guilds.join%20guilds.members.read%20bot%20applications.commands%20connections", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := hc.Get(base + tc.scope)
			if err != nil {
				t.Fatal(err)
			}
			_ = res.Body.Close()
			loc, _ := url.Parse(res.Header.Get("Location"))
			if res.StatusCode != 302 || loc.Host != "app.example" || loc.Query().Get("state") != "s1" {
				t.Fatalf("got %d %s", res.StatusCode, loc)
			}
			if tc.ok != (loc.Query().Get("code") != "") || tc.ok != (loc.Query().Get("error") == "") {
				t.Fatalf("location %s", loc)
			}
			if !tc.ok && loc.Query().Get("error") != "invalid_scope" {
				t.Fatalf("location %s", loc)
			}
			_, err = e.Admin().Authorize(testCtx(t), AuthorizeRequest{ClientID: tApp, UserID: tAlice, Scopes: strings.Fields(strings.ReplaceAll(strings.TrimPrefix(tc.scope, "&scope="), "%20", " ")), RedirectURI: "http://app.example/cb"})
			if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "invalid_scope")) {
				t.Fatalf("admin authorize: %v", err)
			}
		})
	}
	// a bad redirect_uri is never redirected to, whatever the scope
	res, err := hc.Get(strings.Replace(base, "app.example", "evil.example", 1) + "&scope=nope")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != 400 || res.Header.Get("Location") != "" {
		t.Fatalf("bad redirect: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

// TestFaults_EdgeErrorsCarryNoRateLimitHeaders: Cloudflare errors and `status`
// faults are edge/proxy answers, so they never carry per-route X-RateLimit-*
// headers (a `status` fault sends exactly its configured headers); an `error`
// fault after commit is Discord's own answer and keeps them.
func TestFaults_EdgeErrorsCarryNoRateLimitHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		stage      string
		action     FaultAction
		status     int
		wantBucket bool
	}{
		{"cloudflare_5xx before", "before", FaultAction{Type: "cloudflare_5xx", Status: 502}, 502, false},
		{"cloudflare_5xx after_commit", "after_commit", FaultAction{Type: "cloudflare_5xx", Status: 520}, 520, false},
		{"status before", "before", FaultAction{Type: "status", Status: 503}, 503, false},
		{"status after_commit", "after_commit", FaultAction{Type: "status", Status: 500, Headers: map[string]string{"X-Extra": "1"}}, 500, false},
		{"cloudflare_ban after_commit", "after_commit", FaultAction{Type: "cloudflare_ban", DurationS: 1}, 429, false},
		{"error after_commit is Discord's", "after_commit", FaultAction{Type: "error", Status: 404, Code: 10011, Message: "Unknown Role"}, 404, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEmu(t, nil)
			if _, err := e.Admin().AddFault(testCtx(t), FaultRule{Match: FaultMatch{Route: StringList{"member_role_add"}}, Stage: tc.stage, Action: tc.action}); err != nil {
				t.Fatal(err)
			}
			res, body := raw(t, e, "PUT", "/api/v9/guilds/"+tGuild+"/members/"+tAlice+"/roles/"+tLow, "Bot "+tToken, "", "", nil)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d %s", res.StatusCode, body)
			}
			var rl []string
			for k := range res.Header {
				if strings.HasPrefix(k, "X-Ratelimit-") {
					rl = append(rl, k)
				}
			}
			if tc.wantBucket != (res.Header.Get("X-RateLimit-Bucket") != "") || (!tc.wantBucket && len(rl) > 0) {
				t.Fatalf("rate-limit headers %v", rl)
			}
			if x := tc.action.Headers["X-Extra"]; x != "" && res.Header.Get("X-Extra") != x {
				t.Fatal("configured header missing")
			}
		})
	}
}

// TestFaults_DroppedConnectionsRecorded: a dropped connection is recorded as
// such — status 0 and dropped, with the status it would have had after a
// commit — never with a status the client did not see.
func TestFaults_DroppedConnectionsRecorded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                    string
		stage                   string
		action                  FaultAction
		status, droppedStatus   int
		committed, clientStatus bool
	}{
		{"drop before", "before", FaultAction{Type: "drop", Mode: "close"}, 0, 0, false, false},
		{"drop after_commit", "after_commit", FaultAction{Type: "drop", Mode: "reset"}, 0, 204, true, false},
		{"stall_body then drop", "before", FaultAction{Type: "stall_body", MS: 1, Then: "drop"}, 204, 0, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEmu(t, nil)
			if _, err := e.Admin().AddFault(testCtx(t), FaultRule{Match: FaultMatch{Route: StringList{"member_role_add"}}, Stage: tc.stage, Action: tc.action}); err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(testCtx(t), "PUT", "https://discord.com/api/v9/guilds/"+tGuild+"/members/"+tAlice+"/roles/"+tLow, nil)
			req.Header.Set("Authorization", "Bot "+tToken)
			res, err := e.HTTPClient().Do(req)
			if res != nil {
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
			}
			if tc.clientStatus != (err == nil) {
				t.Fatalf("client: %v %v", res, err)
			}
			recs, werr := e.Recorder().Wait(testCtx(t), RequestFilter{Route: "member_role_add"}, 1)
			if werr != nil || len(recs) != 1 {
				t.Fatalf("records %v %v", recs, werr)
			}
			o := recs[0].Outcome
			if !o.Dropped || o.Status != tc.status || o.DroppedStatus != tc.droppedStatus || o.Committed != tc.committed || o.Fault == nil {
				t.Fatalf("outcome %+v", o)
			}
		})
	}
}
