package applier

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/pkg/tenants"
)

func intp(i int) *int { return &i }

func TestRoleAboveTheBotFailsOnceWithDeadLetterAndReplays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A human moves Staff above the bot's role: Discord answers 403 50013.
	if _, err := e.emu.Admin().EditRole(e.ctx, guildID, roleStaff, discordemu.RolePatch{Position: intp(10)}); err != nil {
		t.Fatalf("move role: %v", err)
	}
	r := e.start(testConfig())
	e.putUser("alice", memberAlice, true)
	st := e.waitState(r, "alice", StateFailed)
	if st.Code != codeMissingPermissions || st.Detail == "" {
		t.Errorf("status = %+v, want failed with code 50013 and an explanation", st)
	}
	e.waitIdle(testConfig().Durable) // terminal: not retried forever
	dls, err := r.svc.DeadLetters(e.ctx)
	if err != nil || len(dls) != 1 || dls[0].User != "alice" || dls[0].Code != codeMissingPermissions {
		t.Fatalf("dead letters = %+v, %v; want alice with 50013", dls, err)
	}
	if n := len(e.emu.Recorder().Requests(discordemu.RequestFilter{Status: 403})); n != 1 {
		t.Errorf("Discord answered 403 %d times, want 1 (no retry storm)", n)
	}

	// The operator fixes the hierarchy and replays.
	if _, err := e.emu.Admin().EditRole(e.ctx, guildID, roleStaff, discordemu.RolePatch{Position: intp(1)}); err != nil {
		t.Fatalf("move role back: %v", err)
	}
	ok, err := r.svc.Replay(e.ctx, "")
	if err != nil || ok != 1 {
		t.Fatalf("Replay = %d, %v; want 1, nil", ok, err)
	}
	e.waitRoles(memberAlice, roleStaff)
	e.waitState(r, "alice", StateInSync)
	if dls, _ := r.svc.DeadLetters(e.ctx); len(dls) != 0 {
		t.Errorf("dead letters after replay = %+v, want none", dls)
	}
}

func TestUnknownRoleIsAPermanentFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mapping.mu.Lock()
	e.mapping.rules["Ghosts"] = "1100000000000000666" // no such role in the guild
	e.mapping.mu.Unlock()
	r := e.start(testConfig())
	e.putGroup("g-ghosts", "Ghosts")
	e.putMember("g-ghosts", "bob", true)
	e.putUser("bob", member(2), true)
	st := e.waitState(r, "bob", StateFailed)
	if st.Code != codeUnknownRole {
		t.Errorf("status = %+v, want code 10011", st)
	}
	e.waitIdle(testConfig().Durable)
}

func TestDiscordOutageThenFullConvergence(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Every member call fails with 5xx or a dropped connection for a while.
	for _, a := range []discordemu.FaultAction{{Type: "status", Status: 503}, {Type: "cloudflare_5xx", Status: 502}, {Type: "drop", Mode: "close"}} {
		if _, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
			Match: discordemu.FaultMatch{Route: discordemu.StringList{"member_get", "member_edit", "member_role_add"}},
			When:  discordemu.FaultWhen{Times: 3}, Action: a,
		}); err != nil {
			t.Fatalf("add fault: %v", err)
		}
	}
	r := e.start(testConfig())
	e.putGroup("g-eng", "Engineering")
	for i := 1; i <= 4; i++ {
		e.putUser(fmtUser(i), member(i), true)
		if i%2 == 0 {
			e.putMember("g-eng", fmtUser(i), true)
		}
	}
	for i := 1; i <= 4; i++ {
		want := []string{roleStaff}
		if i%2 == 0 {
			want = append(want, roleEng)
		}
		e.waitRoles(member(i), want...)
		e.waitState(r, fmtUser(i), StateInSync)
	}
	if m := r.svc.Metrics(); m.Counters["retries"] == 0 {
		t.Errorf("metrics = %+v, want retries counted", m.Counters)
	}
}

func TestChangeCommittedButResponseLostIsNotRepeated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match: discordemu.FaultMatch{Route: discordemu.StringList{"member_role_add"}}, Stage: "after_commit",
		When: discordemu.FaultWhen{Times: 1}, Action: discordemu.FaultAction{Type: "drop", Mode: "reset"},
	}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	r := e.start(testConfig())
	e.putUser("alice", memberAlice, true)
	e.waitState(r, "alice", StateInSync)
	e.waitIdle(testConfig().Durable)
	e.waitRoles(memberAlice, roleStaff)
	if got := e.mutations(memberAlice); got["member_role_add"] != 1 {
		t.Errorf("mutating calls = %v, want the one PUT only (the retry sees the role)", got)
	}
}

func TestRateLimitedResponseDelaysTheMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match: discordemu.FaultMatch{Route: discordemu.StringList{"member_role_add"}},
		When:  discordemu.FaultWhen{Times: 1}, Action: discordemu.FaultAction{Type: "rate_limit", Scope: "user", RetryAfter: 0.3},
	}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	r := e.start(testConfig())
	e.putUser("alice", memberAlice, true)
	e.waitRoles(memberAlice, roleStaff)
	e.waitState(r, "alice", StateInSync)
	if m := r.svc.Metrics(); m.Limiter.RateLimited != 1 || m.Counters["rate_limited"] != 1 {
		t.Errorf("metrics = %+v, want one 429 seen and delayed", m)
	}
}

func TestHumanChangingRolesDuringSyncKeepsUnmanagedAndRestoresManaged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putGroup("g-eng", "Engineering")
	e.putGroup("g-design", "Design")
	e.putMember("g-eng", "carol", true)
	e.putUser("carol", member(3), true)
	e.waitRoles(member(3), roleEng, roleStaff)
	e.waitIdle(testConfig().Durable)
	// A human gives Moderator (unmanaged) and removes Staff (managed) by hand…
	if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, member(3), []string{roleEng, roleMod}); err != nil {
		t.Fatalf("human edit: %v", err)
	}
	// …and the IdP adds Carol to Design.
	e.putMember("g-design", "carol", true)
	e.waitRoles(member(3), roleEng, roleDesign, roleStaff, roleMod)
	e.waitState(r, "carol", StateInSync)
}

func TestBurstOfUpdatesToOneMemberIsCoalesced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Discord is slow: every GET of the member takes 150ms.
	if _, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match:  discordemu.FaultMatch{Route: discordemu.StringList{"member_get"}},
		Action: discordemu.FaultAction{Type: "delay", MS: 150},
	}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	e.putGroup("g-eng", "Engineering")
	e.putGroup("g-design", "Design")
	cfg := testConfig()
	r := e.start(cfg)
	e.putUser("erin", member(5), true)
	for i := range 50 {
		e.putMember("g-eng", "erin", i%2 == 0)
		e.putMember("g-design", "erin", i%3 == 0)
	}
	e.putMember("g-eng", "erin", true)
	e.putMember("g-design", "erin", true)
	e.waitRoles(member(5), roleEng, roleDesign, roleStaff)
	e.waitIdle(cfg.Durable)
	muts := e.mutations(member(5))
	total := 0
	for _, n := range muts {
		total += n
	}
	gets := len(e.emu.Recorder().Requests(discordemu.RequestFilter{Route: "member_get", UserID: member(5)}))
	t.Logf("103 updates → %d mutating calls %v, %d GETs, metrics %v", total, muts, gets, r.svc.Metrics().Counters)
	if total > 3 {
		t.Errorf("103 updates cost %d mutating calls %v, want at most 3", total, muts)
	}
	if gets > 12 {
		t.Errorf("103 updates cost %d GETs, want them coalesced (≤ 12)", gets)
	}
}

func TestManyMembersStayUnderTheBucketLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *discordemu.Config, _ *tenants.Guild) { c.TimeScale = 0.05 })
	cfg := testConfig()
	cfg.MaxRateWait = 200 * time.Millisecond
	r := e.start(cfg)
	e.putGroup("g-eng", "Engineering")
	for i := 1; i <= 9; i++ {
		e.putUser(fmtUser(i), member(i), true)
	}
	for i := 1; i <= 9; i++ {
		e.putMember("g-eng", fmtUser(i), true)
	}
	for i := 1; i <= 9; i++ {
		e.waitRoles(member(i), roleEng, roleStaff)
	}
	for i := 1; i <= 9; i++ {
		e.waitState(r, fmtUser(i), StateInSync)
	}
	e.emu.Recorder().AssertNoRateLimits(t)
	e.emu.Recorder().AssertNoInvalidRequests(t)
	t.Logf("metrics: %+v", r.svc.Metrics())
	_ = fmt.Sprint()
}

func TestMappingRefusalIsAFailedStatusNotARetryLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mapping.mu.Lock()
	e.mapping.refuse = true
	e.mapping.mu.Unlock()
	r := e.start(testConfig())
	e.putUser("alice", memberAlice, true)
	st := e.waitState(r, "alice", StateFailed)
	if st.Detail == "" {
		t.Errorf("status = %+v, want the mapping's refusal explained", st)
	}
	e.waitIdle(testConfig().Durable)
}

func TestEachGuildProgressesIndependently(t *testing.T) {
	t.Parallel()
	const users = 4
	e := newEnvSetup(t, setup{emu: discordemu.DefaultConfig(), fixture: benchFixture(2, users),
		guilds: []tenants.Guild{{ID: benchGuild(1)}, {ID: benchGuild(2)}}, mapping: &benchMapping{guilds: 2}})
	// Guild 1 is down (every member call fails); guild 2 is fine.
	id, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match:  discordemu.FaultMatch{Route: discordemu.StringList{"member_get", "member_edit", "member_role_add"}, GuildID: benchGuild(1)},
		Action: discordemu.FaultAction{Type: "status", Status: 503},
	})
	if err != nil {
		t.Fatalf("add fault: %v", err)
	}
	r := e.start(testConfig())
	for k := 1; k <= 4; k++ {
		e.putGroup(fmt.Sprintf("g%d", k), fmt.Sprintf("G%d", k))
	}
	for i := 1; i <= users; i++ {
		e.putUser(fmt.Sprintf("u%d", i), benchUser(i), true)
		for _, g := range benchGroups(i) {
			e.putMember("g"+g[1:], fmt.Sprintf("u%d", i), true)
		}
	}
	converged := func(j int) func() (bool, string) {
		return func() (bool, string) {
			st, err := e.emu.Admin().State(e.ctx, benchGuild(j))
			if err != nil {
				return false, err.Error()
			}
			for i := 1; i <= users; i++ {
				if got := sortedRoles(st.Member(benchUser(i)).Roles); !equal(got, benchWant(j, i)) {
					return false, fmt.Sprintf("guild %d member %d has %v", j, i, got)
				}
			}
			return true, ""
		}
	}
	e.eventually("guild 2 converges while guild 1 is down", 20*time.Second, converged(2))
	// (A message for u1 that has just arrived shows pending for a moment.)
	e.eventually("the failing guild's member retrying", 20*time.Second, func() (bool, string) {
		st, err := r.svc.Status(e.ctx, tenantID, benchGuild(1), "u1")
		return err == nil && st.State == StateRetrying, fmt.Sprintf("status %+v, %v", st, err)
	})
	if err := e.emu.Admin().DeleteFault(e.ctx, id); err != nil {
		t.Fatalf("delete fault: %v", err)
	}
	e.eventually("guild 1 converges after the outage", 20*time.Second, converged(1))
	for i := 1; i <= users; i++ {
		ok := 0
		for _, rec := range e.emu.Recorder().Requests(discordemu.RequestFilter{UserID: benchUser(i)}) {
			if rec.Method != "GET" && rec.Outcome.Status < 300 {
				ok++
			}
		}
		// One call per guild, or two when a user's first role went out before
		// their group memberships were written.
		if ok < 2 || ok > 4 {
			t.Errorf("member %d: %d successful mutating calls, want 1–2 per guild", i, ok)
		}
	}
}

func TestBotRemovedFromTheGuildFailsWithMissingAccessOnceAndReplays(t *testing.T) {
	t.Parallel()
	const botUser, botRole = "1100000000000000801", "1100000000000000199"
	e := newEnv(t)
	r := e.start(testConfig())
	e.putUser("bob", member(2), true)
	e.waitRoles(member(2), roleStaff)

	// An admin kicks the bot: every call for the guild answers 403 50001.
	if err := e.emu.Admin().RemoveMember(e.ctx, guildID, botUser); err != nil {
		t.Fatalf("remove the bot: %v", err)
	}
	seq := e.emu.Recorder().NextSeq()
	e.putUser("alice", memberAlice, true)
	st := e.waitState(r, "alice", StateFailed)
	if st.Code != codeMissingAccess || !strings.Contains(st.Detail, "not in the guild") {
		t.Errorf("status = %+v, want failed with 50001 and what to fix", st)
	}
	e.waitIdle(testConfig().Durable) // terminal: not retried forever
	dls, err := r.svc.DeadLetters(e.ctx)
	if err != nil || len(dls) != 1 || dls[0].User != "alice" || dls[0].Code != codeMissingAccess {
		t.Fatalf("dead letters = %+v, %v; want alice with 50001", dls, err)
	}
	if n := len(e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, Status: 403})); n != 1 {
		t.Errorf("Discord answered 403 %d times, want 1 (no retry storm)", n)
	}

	// The bot is invited back with its role; the operator replays.
	if _, err := e.emu.Admin().AddMember(e.ctx, guildID, discordemu.MemberSeed{UserID: botUser, Roles: []string{botRole}}); err != nil {
		t.Fatalf("re-add the bot: %v", err)
	}
	if ok, err := r.svc.Replay(e.ctx, ""); err != nil || ok != 1 {
		t.Fatalf("Replay = %d, %v; want 1, nil", ok, err)
	}
	e.waitRoles(memberAlice, roleStaff)
	e.waitState(r, "alice", StateInSync)
}
