package discordemu

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bwmarrin/discordgo"
)

func TestAdmin_SnapshotRestoreReset(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	ctx := testCtx(t)
	ad := e.Admin()
	id, err := ad.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := session(t, e, tToken).GuildMemberRoleAdd(tGuild, tAlice, tLow); err != nil {
		t.Fatal(err)
	}
	if err := ad.Restore(ctx, id); err != nil {
		t.Fatal(err)
	}
	if hasStr(mustState(t, e, tGuild).Member(tAlice).Roles, tLow) {
		t.Fatal("restore did not roll back")
	}
	if err := ad.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ad.State(ctx, tGuild); err == nil {
		t.Fatal("reset kept the guild")
	}
	if e.Recorder().Calls("member_role_add") != 0 {
		t.Fatal("reset kept recordings")
	}
}

func TestAdmin_DirectEdits(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	ctx := testCtx(t)
	ad := e.Admin()
	r, err := ad.CreateRole(ctx, tGuild, RoleSeed{Name: "Direct", Permissions: Permissions(PermAdministrator)})
	if err != nil || r.Position != 6 {
		t.Fatalf("create role: %+v %v", r, err)
	}
	pos := 1
	if r, err = ad.EditRole(ctx, tGuild, r.ID, RolePatch{Position: &pos}); err != nil || r.Position != 1 {
		t.Fatalf("move role: %+v %v", r, err)
	}
	if err := ad.SetMemberRoles(ctx, tGuild, tAlice, []string{r.ID, tHigh}); err != nil {
		t.Fatal(err)
	}
	st := mustState(t, e, tGuild)
	if m := st.Member(tAlice); len(m.Roles) != 2 || st.Role(tLow).Position != 2 {
		t.Fatalf("state %+v", st)
	}
	if err := ad.DeleteRole(ctx, tGuild, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ad.AddMember(ctx, tGuild, MemberSeed{UserID: tDave, Roles: []string{tMid}}); err != nil {
		t.Fatal(err)
	}
	if err := ad.RemoveMember(ctx, tGuild, tBob); err != nil {
		t.Fatal(err)
	}
	st = mustState(t, e, tGuild)
	if st.Member(tDave) == nil || st.Member(tBob) != nil || len(st.Member(tAlice).Roles) != 1 {
		t.Fatalf("state %+v", st.Members)
	}
	// rotate the bot token: the old one gets 401
	info, err := ad.PatchApplication(ctx, tApp, ApplicationPatch{RotateBotToken: true})
	if err != nil || info.BotToken == tToken {
		t.Fatalf("rotate %v", err)
	}
	if _, err := session(t, e, tToken).User("@me"); !is(err, 401, 0) {
		t.Fatalf("old token: %v", err)
	}
	if _, err := session(t, e, info.BotToken).User("@me"); err != nil {
		t.Fatalf("new token: %v", err)
	}
	if _, err := ad.CreateGuild(ctx, GuildSeed{Name: "g", OwnerID: tOwner, Bots: []GuildBotSeed{{ApplicationID: tApp, Permissions: Permissions(PermManageRoles), Position: BotPosition{Top: true}}}}); err != nil {
		t.Fatal(err)
	}
	audit, err := ad.AuditLog(ctx, tGuild, 0)
	if err != nil || audit == nil {
		t.Fatalf("audit %v", err)
	}
}

func TestAdmin_RateLimitTableChangesMidTest(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	ctx := testCtx(t)
	tbl, err := e.Admin().RateLimitTable(ctx)
	if err != nil || len(tbl.Buckets) != 10 {
		t.Fatalf("table %v %v", tbl, err)
	}
	for i := range tbl.Buckets {
		if tbl.Buckets[i].Name == "member_role" {
			tbl.Buckets[i].Limit = 3
		}
	}
	if err := e.Admin().SetRateLimitTable(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	res, _ := raw(t, e, "PUT", "/api/v9/guilds/"+tGuild+"/members/"+tAlice+"/roles/"+tLow, "Bot "+tToken, "", "", nil)
	if res.Header.Get("X-RateLimit-Limit") != "3" || res.Header.Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("headers %v", res.Header)
	}
	if err := e.Admin().SetRateLimitTable(ctx, RateLimitTable{Buckets: []BucketDef{{Name: "x", Limit: 1, WindowSeconds: 0, Algorithm: "fixed"}}}); err == nil {
		t.Fatal("invalid table accepted")
	}
}

func TestAdmin_ConfigMergeAndValidation(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	ctx := testCtx(t)
	if err := e.Admin().SetConfig(ctx, map[string]any{"strict": map[string]any{"patch_member_204": true}}); err != nil {
		t.Fatal(err)
	}
	c, err := e.Admin().Config(ctx)
	if err != nil || !c.Strict.PatchMember204 || c.Strict.UnknownRoleInPatch != "10011" || c.Profile != "realistic" {
		t.Fatalf("merged %+v %v", c, err)
	}
	if err := e.Admin().SetConfig(ctx, map[string]any{"profile": "bogus"}); err == nil {
		t.Fatal("bad profile accepted")
	}
	// unknown keys, at the top or inside a section, are rejected by name and change nothing
	for _, tc := range []struct{ name, body, key string }{
		{"misspelled section", `{"strikt":{"patch_member_204":false}}`, "strikt"},
		{"misspelled knob", `{"strict":{"check_untouched_role":false}}`, "check_untouched_role"},
		{"misspelled ratelimit knob", `{"ratelimit":{"algorithim":"sliding"}}`, "algorithim"},
		{"unknown chaos action field", `{"chaos":{"actions":[{"type":"drop","mdoe":"reset"}]}}`, "mdoe"},
		{"trailing data", `{"time_scale":0.5} {}`, "trailing"},
	} {
		res, body := adminDo(t, e, "PUT", "/_emu/config", tc.body)
		if res != 400 || !strings.Contains(body, tc.key) {
			t.Errorf("%s: got %d %s", tc.name, res, body)
		}
	}
	c, err = e.Admin().Config(ctx)
	if err != nil || !c.Strict.PatchMember204 || c.TimeScale != 1 {
		t.Fatalf("config changed by rejected merges: %+v %v", c, err)
	}
}

func adminDo(t *testing.T, e *Emulator, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, e.AdminURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestAdmin_Token(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.AdminToken = "adm"
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	res, err := http.Get(e.URL() + "/_emu/config")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("without token: %d", res.StatusCode)
	}
	if _, err := e.Admin().Config(testCtx(t)); err != nil {
		t.Fatalf("Admin() carries the token: %v", err)
	}
}

func TestAdmin_SeparateListener(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.AdminListen = "127.0.0.1:0"
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if e.AdminURL() == e.URL() {
		t.Fatal("admin on main listener")
	}
	if err := e.Admin().LoadFixture(testCtx(t), []byte(testFixture)); err != nil {
		t.Fatal(err)
	}
	res, body := raw(t, e, "GET", "/_emu/config", "", "", "", nil)
	if res.StatusCode != 404 || !strings.Contains(body, "404: Not Found") {
		t.Fatalf("main listener served admin: %d", res.StatusCode)
	}
	if _, err := session(t, e, tToken).GuildRoles(tGuild); err != nil {
		t.Fatal(err)
	}
}

func TestFaults_Actions(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	ctx := testCtx(t)
	ad := e.Admin()
	bot := "Bot " + tToken
	path := "/api/v9/users/@me"
	tests := []struct {
		name  string
		rule  FaultRule
		check func(res *http.Response, body string) bool
	}{
		{"status with body", FaultRule{Action: FaultAction{Type: "status", Status: 500}},
			func(r *http.Response, b string) bool {
				return r.StatusCode == 500 && strings.Contains(b, "500: Internal Server Error")
			}},
		{"cloudflare_5xx", FaultRule{Action: FaultAction{Type: "cloudflare_5xx", Status: 520}},
			func(r *http.Response, b string) bool { return r.StatusCode == 520 && b == "error code: 520" }},
		{"rate_limit omit_retry_after", FaultRule{Action: FaultAction{Type: "rate_limit", Scope: "user", OmitRetryAfter: true}},
			func(r *http.Response, b string) bool {
				return r.StatusCode == 429 && !strings.Contains(b, "retry_after")
			}},
		{"rate_limit global mismatch", FaultRule{Action: FaultAction{Type: "rate_limit", Scope: "global", RetryAfter: 0.5, BodyGlobalMismatch: true}},
			func(r *http.Response, b string) bool {
				return r.Header.Get("X-RateLimit-Global") == "true" && strings.Contains(b, `"global":false`) && strings.Contains(b, `"retry_after":0.500`)
			}},
		{"rate_limit global with reset-after", FaultRule{Action: FaultAction{Type: "rate_limit", Scope: "global", RetryAfter: 0.5, IncludeResetAfterOnGlobal: true}},
			func(r *http.Response, b string) bool { return r.Header.Get("X-RateLimit-Reset-After") == "0.500" }},
		{"skip and nth", FaultRule{When: FaultWhen{Skip: 1, Nth: []int{2}}, Action: FaultAction{Type: "status", Status: 503}},
			func(r *http.Response, b string) bool { return r.StatusCode == 200 }},
		{"auth selector", FaultRule{Match: FaultMatch{Auth: "bearer"}, Action: FaultAction{Type: "status", Status: 500}},
			func(r *http.Response, b string) bool { return r.StatusCode == 200 }},
		{"path_regex", FaultRule{Match: FaultMatch{PathRegex: "/users/@me$"}, Action: FaultAction{Type: "error", Status: 403, Code: 50013, Message: "Missing Permissions"}},
			func(r *http.Response, b string) bool {
				return r.StatusCode == 403 && strings.Contains(b, `"code":50013`)
			}},
		{"probability 0 never fires", FaultRule{When: FaultWhen{Probability: 1e-12}, Action: FaultAction{Type: "status", Status: 500}},
			func(r *http.Response, b string) bool { return r.StatusCode == 200 }},
		{"until_ms passed", FaultRule{When: FaultWhen{UntilMS: new(float64)}, Action: FaultAction{Type: "status", Status: 500}},
			func(r *http.Response, b string) bool { return r.StatusCode == 200 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rule.Match.Route == nil {
				tc.rule.Match.Route = StringList{"users_me"}
			}
			id, err := ad.AddFault(ctx, tc.rule)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = ad.DeleteFault(ctx, id) }()
			if tc.name == "until_ms passed" {
				raw(t, e, "GET", "/api/v9/users/"+tAlice, bot, "", "", nil) // let a millisecond pass
			}
			res, body := raw(t, e, "GET", path, bot, "", "", nil)
			if !tc.check(res, body) {
				t.Fatalf("got %d %v %s", res.StatusCode, res.Header, body)
			}
		})
	}
	t.Run("malformed headers break discordgo", func(t *testing.T) {
		id, _ := ad.AddFault(ctx, FaultRule{Match: FaultMatch{Route: StringList{"member_get"}}, Action: FaultAction{Type: "malformed_rl_headers"}})
		defer func() { _ = ad.DeleteFault(ctx, id) }()
		if _, err := session(t, e, tToken).GuildMember(tGuild, tAlice); err == nil || !strings.Contains(err.Error(), "strconv") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong headers", func(t *testing.T) {
		id, _ := ad.AddFault(ctx, FaultRule{Match: FaultMatch{Route: StringList{"member_get"}}, Action: FaultAction{Type: "wrong_rl_headers"}})
		defer func() { _ = ad.DeleteFault(ctx, id) }()
		res, _ := raw(t, e, "GET", "/api/v9/guilds/"+tGuild+"/members/"+tBob, bot, "", "", nil)
		if res.Header.Get("X-RateLimit-Limit") != "10" {
			t.Fatalf("headers %v", res.Header)
		}
	})
	t.Run("stall_body then drop", func(t *testing.T) {
		id, _ := ad.AddFault(ctx, FaultRule{Match: FaultMatch{Route: StringList{"roles_list"}}, Action: FaultAction{Type: "stall_body", MS: 10, Then: "drop"}})
		defer func() { _ = ad.DeleteFault(ctx, id) }()
		if _, err := session(t, e, tToken).GuildRoles(tGuild); err == nil {
			t.Fatal("want an error")
		}
	})
	t.Run("stall_body then finish", func(t *testing.T) {
		id, _ := ad.AddFault(ctx, FaultRule{Match: FaultMatch{Route: StringList{"roles_list"}}, Action: FaultAction{Type: "stall_body", MS: 10}})
		defer func() { _ = ad.DeleteFault(ctx, id) }()
		if _, err := session(t, e, tToken).GuildRoles(tGuild); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("drop reset before", func(t *testing.T) {
		id, _ := ad.AddFault(ctx, FaultRule{Match: FaultMatch{Route: StringList{"role_create"}}, Action: FaultAction{Type: "drop", Mode: "reset"}})
		defer func() { _ = ad.DeleteFault(ctx, id) }()
		if _, err := session(t, e, tToken).GuildRoleCreate(tGuild, &discordgo.RoleParams{Name: "Never"}); err == nil {
			t.Fatal("want an error")
		}
		if mustState(t, e, tGuild).RoleByName("Never") != nil {
			t.Fatal("drop before applied the mutation")
		}
	})
	t.Run("cloudflare_ban action", func(t *testing.T) {
		id, _ := ad.AddFault(ctx, FaultRule{Match: FaultMatch{Route: StringList{"user_get"}}, When: FaultWhen{Times: 1}, Action: FaultAction{Type: "cloudflare_ban", DurationS: 3600, Format: "html"}})
		defer func() { _ = ad.DeleteFault(ctx, id) }()
		res, body := raw(t, e, "GET", "/api/v9/users/"+tAlice, bot, "", "", nil)
		if res.StatusCode != 429 || body != "error code: 1015" {
			t.Fatalf("got %d %s", res.StatusCode, body)
		}
		if err := ad.CloudflareUnban(ctx, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
	})
	list, err := ad.Faults(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("faults left: %v %v", list, err)
	}
	if _, err := ad.AddFault(ctx, FaultRule{Action: FaultAction{Type: "nope"}}); err == nil {
		t.Fatal("unknown action accepted")
	}
}

// TestAdmin_RequestFilterValidation: a misspelled or malformed recorder filter
// is a 400 naming the problem, never a filter that silently matches everything.
func TestAdmin_RequestFilterValidation(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	if res, _ := raw(t, e, "GET", "/api/v9/users/@me", "Bot "+tToken, "", "", nil); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	tests := []struct {
		name, query string
		status      int
		contains    string
	}{
		{"status not a number", "/requests?status=abc", 400, "status"},
		{"status out of range", "/requests?status=42", 400, "status"},
		{"since_seq negative", "/requests?since_seq=-1", 400, "since_seq"},
		{"limit not a number", "/requests?limit=x", 400, "limit"},
		{"limit zero", "/requests?limit=0", 400, "limit"},
		{"unknown key", "/requests?stauts=200", 400, "unknown query parameter \\\"stauts"},
		{"repeated key", "/requests?route=users_me&route=guild_get", 400, "given 2 times"},
		{"unknown route", "/requests?route=users_mee", 400, `users_mee`},
		{"wait count not a number", "/requests/wait?count=abc", 400, "count"},
		{"wait count zero", "/requests/wait?count=0", 400, "count"},
		{"wait timeout not a number", "/requests/wait?timeout_ms=soon", 400, "timeout_ms"},
		{"wait unknown key", "/requests/wait?cuont=2", 400, "cuont"},
		{"count only on wait", "/requests?count=1", 400, "unknown query parameter \\\"count"},
		{"valid", "/requests?route=users_me&status=200&since_seq=0&limit=5", 200, `"route":"users_me"`},
		{"valid wait", "/requests/wait?route=users_me&count=1&timeout_ms=1000", 200, `"route":"users_me"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := http.Get(e.AdminURL() + "/_emu" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != tc.status || !strings.Contains(string(b), tc.contains) {
				t.Fatalf("got %d %s", res.StatusCode, b)
			}
		})
	}
}
