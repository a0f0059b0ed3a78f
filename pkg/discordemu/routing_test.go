package discordemu

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

func TestRouting_VersionsAndErrors(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	bot := "Bot " + tToken
	tests := []struct {
		name, method, path, auth, ctype, body string
		status                                int
		contains                              string
	}{
		{"v9", "GET", "/api/v9/users/@me", bot, "", "", 200, `"id":"` + tBot},
		{"v10", "GET", "/api/v10/users/@me", bot, "", "", 200, `"bot":true`},
		{"v6", "GET", "/api/v6/users/@me", bot, "", "", 200, `"id"`},
		{"unversioned", "GET", "/api/users/@me", bot, "", "", 200, `"id"`},
		{"v4 discontinued", "GET", "/api/v4/users/@me", bot, "", "", 400, `"message":"400: Bad Request"`},
		{"unknown path", "GET", "/api/v9/channels/1", bot, "", "", 404, `"message":"404: Not Found","code":0`},
		{"wrong method", "POST", "/api/v9/guilds/" + tGuild + "/members/" + tAlice + "/roles/" + tLow, bot, "", "", 405, `405: Method Not Allowed`},
		{"not a snowflake", "GET", "/api/v9/guilds/abc", bot, "", "", 400, `NUMBER_TYPE_COERCE`},
		{"@me where not allowed", "GET", "/api/v9/guilds/" + tGuild + "/members/@me", bot, "", "", 400, `Value \"@me\" is not snowflake.`},
		{"no auth", "GET", "/api/v9/users/@me", "", "", "", 401, `"message":"401: Unauthorized","code":0`},
		{"bad token", "GET", "/api/v9/users/@me", "Bot nope", "", "", 401, `401: Unauthorized`},
		{"no prefix", "GET", "/api/v9/users/@me", tToken, "", "", 401, `401: Unauthorized`},
		{"unknown guild", "GET", "/api/v9/guilds/1", bot, "", "", 404, `"code":10004`},
		{"unknown user", "GET", "/api/v9/users/42", bot, "", "", 404, `"code":10013`},
		{"wrong content type", "PATCH", "/api/v9/guilds/" + tGuild + "/members/" + tAlice, bot, "text/plain", `{}`, 400, `CONTENT_TYPE_INVALID`},
		{"invalid json", "PATCH", "/api/v9/guilds/" + tGuild + "/members/" + tAlice, bot, "application/json", `{"roles":`, 400, `"code":50109`},
		{"unknown fields ignored", "PATCH", "/api/v9/guilds/" + tGuild + "/members/" + tAlice, bot, "application/json", `{"bogus":1}`, 200, `"user"`},
		{"mute not in voice", "PATCH", "/api/v9/guilds/" + tGuild + "/members/" + tAlice, bot, "application/json", `{"mute":true}`, 403, `50013`},
		{"members limit too big", "GET", "/api/v9/guilds/" + tGuild + "/members?limit=1001", bot, "", "", 400, `NUMBER_TYPE_MAX`},
		{"members limit default 1", "GET", "/api/v9/guilds/" + tGuild + "/members", bot, "", "", 200, `"id":"` + tBot},
		{"member add needs token", "PUT", "/api/v9/guilds/" + tGuild + "/members/" + tDave, bot, "application/json", `{}`, 400, `BASE_TYPE_REQUIRED`},
		{"audit log needs VIEW_AUDIT_LOG", "GET", "/api/v9/guilds/" + tGuild + "/audit-logs", bot, "", "", 403, `50013`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := raw(t, e, tc.method, tc.path, tc.auth, tc.ctype, tc.body, nil)
			if res.StatusCode != tc.status || !strings.Contains(body, tc.contains) {
				t.Fatalf("got %d %s", res.StatusCode, body)
			}
		})
	}
	// 404/405 are answered before any limit is consumed
	for _, r := range e.Recorder().Requests(RequestFilter{}) {
		if (r.Outcome.Status == 404 && r.Route == "") || r.Outcome.Status == 405 {
			if r.Bucket != nil || r.GlobalWindowCount != 0 {
				t.Errorf("404/405 consumed a unit: %+v", r)
			}
		}
	}
}

func TestRouting_MembersPaging(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	s := session(t, e, tToken)
	var all []string
	after := ""
	for i := 0; i < 10; i++ {
		page, err := s.GuildMembers(tGuild, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			all = append(all, m.User.ID)
		}
		after = page[len(page)-1].User.ID
	}
	want := []string{tBot, tOwner, tAlice, tBob, tCarol}
	if strings.Join(all, ",") != strings.Join(want, ",") {
		t.Fatalf("paged %v, want %v", all, want)
	}
}

func TestRouting_RateLimitHeadersOnErrors(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	res, _ := raw(t, e, "PUT", "/api/v9/guilds/"+tGuild+"/members/"+tAlice+"/roles/"+tHigh, "Bot "+tToken, "", "", nil)
	if res.StatusCode != 403 || res.Header.Get("X-RateLimit-Remaining") != "9" {
		t.Fatalf("403 without headers: %d %v", res.StatusCode, res.Header)
	}
	res, _ = raw(t, e, "GET", "/api/v9/guilds/"+tGuild, "Bot "+tToken, "", "", nil)
	if res.Header.Get("X-RateLimit-Bucket") != "" {
		t.Fatal("unlimited route sent rate-limit headers")
	}
}

func TestRecorder_Fields(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	s := session(t, e, tToken)
	if err := s.GuildMemberRoleAdd(tGuild, tAlice, tLow, discordgo.WithAuditLogReason("sync%20run")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := e.Recorder().Wait(ctx, RequestFilter{Route: "member_role_add"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := recs[0]
	if r.APIVersion != "9" || r.Auth.Kind != "bot" || r.Auth.ApplicationID != tApp || !strings.HasPrefix(r.UserAgent, "DiscordBot (https://github.com/bwmarrin/discordgo") ||
		r.Params["role_id"] != tLow || *r.AuditReason != "sync run" || r.Bucket.Name != "member_role" || !r.Outcome.Committed || r.Outcome.Status != 204 || r.ConnID == 0 {
		t.Fatalf("record %+v", r)
	}
	b, _ := json.Marshal(r)
	if strings.Contains(string(b), tToken) {
		t.Fatal("token stored in the record")
	}
	// HTTP wait endpoint: 408 on timeout, 200 when reached
	recs2, err := e.Admin().WaitRequests(ctx, RequestFilter{Route: "member_role_add"}, 2, 50*time.Millisecond)
	if err == nil || len(recs2) != 1 {
		t.Fatalf("want timeout, got %v %d", err, len(recs2))
	}
	if recs2, err = e.Admin().WaitRequests(ctx, RequestFilter{Route: "member_role_add"}, 1, time.Second); err != nil || len(recs2) != 1 {
		t.Fatalf("wait: %v", err)
	}
	e.Recorder().AssertNoRateLimits(t)
	e.Recorder().AssertNoInvalidRequests(t)
	e.Recorder().AssertAllReasonsEncoded(t)
	e.Recorder().AssertMaxGlobalRate(t, 50)
	if err := e.Admin().ClearRequests(ctx); err != nil || e.Recorder().Calls("member_role_add") != 0 {
		t.Fatalf("clear: %v", err)
	}
}

type fakeTB struct{ errs []string }

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Errorf(format string, a ...any) { f.errs = append(f.errs, format) }

func TestRecorder_AssertionsFail(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, func(c *Config) { c.GlobalLimitPerSec = 2 })
	s := session(t, e, tToken)
	_ = s.GuildMemberRoleAdd(tGuild, tAlice, tLow, discordgo.WithAuditLogReason("café"))
	_ = s.GuildMemberRoleAdd(tGuild, tAlice, tHigh)
	for i := 0; i < 5; i++ {
		raw(t, e, "GET", "/api/v9/users/@me", "Bot "+tToken, "", "", nil)
	}
	for name, f := range map[string]func(TB){
		"reasons": e.Recorder().AssertAllReasonsEncoded, "invalid": e.Recorder().AssertNoInvalidRequests,
		"ratelimits": e.Recorder().AssertNoRateLimits, "global": func(tb TB) { e.Recorder().AssertMaxGlobalRate(tb, 1) },
	} {
		ft := &fakeTB{}
		f(ft)
		if len(ft.errs) == 0 {
			t.Errorf("%s assertion did not fail", name)
		}
	}
}

// TestRouting_ExactPathsNoRedirects: Discord matches paths exactly. A trailing
// slash or an empty segment is 404 in Discord's shape, never a redirect, and
// never commits anything.
func TestRouting_ExactPathsNoRedirects(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	bot := "Bot " + tToken
	hc := &http.Client{Transport: e.HTTPClient().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct{ name, method, path string }{
		{"guild trailing slash", "GET", "/api/v9/guilds/" + tGuild + "/"},
		{"role add trailing slash", "PUT", "/api/v9/guilds/" + tGuild + "/members/" + tAlice + "/roles/" + tLow + "/"},
		{"users me trailing slash", "GET", "/api/v9/users/@me/"},
		{"double slash after version", "GET", "/api/v9//users/@me"},
		{"double slash at root", "GET", "//users/@me/"},
		{"double slash before api", "GET", "//api/v9/users/@me"},
		{"dot segments", "GET", "/api/v9/users/x/../@me"},
		{"api with trailing slash only", "GET", "/api/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(testCtx(t), tc.method, "https://discord.com"+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", bot)
			res, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != 404 || string(b) != `{"message":"404: Not Found","code":0}` {
				t.Fatalf("got %d %q (Location %q)", res.StatusCode, b, res.Header.Get("Location"))
			}
		})
	}
	if hasStr(mustState(t, e, tGuild).Member(tAlice).Roles, tLow) {
		t.Fatal("PUT with a trailing slash committed")
	}
}
