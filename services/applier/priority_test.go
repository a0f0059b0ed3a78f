package applier

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// A live SCIM change that arrives during a full-guild drift repair gets its
// Discord calls before the repair's remaining calls.
func TestDriftRepairYieldsToLiveChanges(t *testing.T) {
	t.Parallel()
	const drifted, live = 20, 5
	ecfg := discordemu.DefaultConfig()
	ecfg.Profile = "off" // the applier's own global limit paces both
	e := newEnvSetup(t, setup{emu: ecfg, fixture: benchFixture(1, drifted+live),
		guilds: []tenants.Guild{{ID: benchGuild(1)}}, mapping: &benchMapping{guilds: 1}})
	cfg := testConfig()
	cfg.GlobalRPS = 40
	cfg.BrakeMaxCount = 0
	r := e.start(cfg)
	e.putGroup("g1", "G1")
	for i := 1; i <= drifted+live; i++ {
		e.putUser(fmtUser(i), benchUser(i), true)
		if i > drifted {
			e.putMember("g1", fmtUser(i), true)
		}
	}
	roles := func(i int) []string {
		st, err := e.emu.Admin().State(e.ctx, benchGuild(1))
		if err != nil {
			t.Fatalf("state: %v", err)
		}
		return sortedRoles(st.Member(benchUser(i)).Roles)
	}
	waitMember := func(i int, want ...string) {
		t.Helper()
		want = sortedRoles(want)
		e.eventually(fmt.Sprintf("roles of member %d", i), 20*time.Second, func() (bool, string) {
			got := roles(i)
			return slices.Equal(got, want), fmt.Sprintf("%v, want %v", got, want)
		})
	}
	for i := 1; i <= drifted+live; i++ {
		if i > drifted {
			waitMember(i, benchRole(1, 1), benchRole(1, 5))
		} else {
			waitMember(i, benchRole(1, 5))
		}
	}
	e.waitIdle(cfg.Durable)
	// Hand edits: every drifted member gets the managed role 3 nobody grants.
	for i := 1; i <= drifted; i++ {
		if err := e.emu.Admin().SetMemberRoles(e.ctx, benchGuild(1), benchUser(i), []string{benchRole(1, 5), benchRole(1, 3)}); err != nil {
			t.Fatalf("hand edit: %v", err)
		}
	}
	type result struct {
		rep RepairReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := r.svc.Repair(e.ctx, tenantID, benchGuild(1), false)
		done <- result{rep, err}
	}()
	if _, err := e.emu.Admin().WaitRequests(e.ctx, discordemu.RequestFilter{GuildID: benchGuild(1), Route: "member_role_remove"}, 3, 10*time.Second); err != nil {
		t.Fatalf("repair did not start: %v", err)
	}
	// Count from when the live message is being handled: its delivery takes
	// a moment, during which the repair rightly goes on. The live work is
	// quick (tens of ms), so watch for it closely.
	liveSeq := make(chan int64, 1)
	go func() {
		deadline := time.Now().Add(20 * time.Second)
		for !r.svc.dc.prio.busy(benchGuild(1)) {
			if time.Now().After(deadline) {
				liveSeq <- -1
				return
			}
			time.Sleep(50 * time.Microsecond) // poll interval
		}
		liveSeq <- e.emu.Recorder().NextSeq()
	}()
	e.putGroup("g1", "G2") // live: the five members move from role 1 to role 2
	seq := <-liveSeq
	if seq < 0 {
		t.Fatal("the live change was never seen in flight")
	}
	for i := drifted + 1; i <= drifted+live; i++ {
		waitMember(i, benchRole(1, 2), benchRole(1, 5))
	}
	res := <-done
	// The live members may show up too (listed before the change was applied).
	if res.err != nil || len(res.rep.Changes) < drifted {
		t.Fatalf("repair = %d changes, %v; want at least %d", len(res.rep.Changes), res.err, drifted)
	}
	for _, c := range res.rep.Changes {
		if !c.Done {
			t.Errorf("repair change not done: %+v", c)
		}
	}
	for i := 1; i <= drifted; i++ {
		waitMember(i, benchRole(1, 5))
	}
	isLive := map[string]bool{}
	for i := drifted + 1; i <= drifted+live; i++ {
		isLive[benchUser(i)] = true
	}
	recs := e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, GuildID: benchGuild(1)})
	var lastLive int64
	for _, rec := range recs {
		if isLive[rec.Params["user_id"]] && rec.Method != "GET" {
			lastLive = rec.Seq
		}
	}
	var between []string
	for _, rec := range recs {
		if rec.Seq < lastLive && rec.Params["user_id"] != "" && !isLive[rec.Params["user_id"]] {
			between = append(between, rec.Method+" "+rec.Route)
		}
	}
	// At most the repair call already on the wire when the change arrived.
	t.Logf("repair calls before the last live call: %v", between)
	if len(between) > 1 {
		t.Errorf("the repair made %d calls before the live change was applied: %v", len(between), between)
	}
}

// A member not in the guild (pending_join) gets their roles soon after they
// join, without a drift repair and without any new SCIM change.
func TestPendingJoinMemberGetsRolesSoonAfterJoining(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const newbie = "1100000000000002002"
	if _, err := e.emu.Admin().CreateUser(e.ctx, discordemu.UserSeed{ID: newbie, Username: "newbie2"}); err != nil {
		t.Fatalf("create user: %v", err)
	}
	cfg := testConfig()
	cfg.PendingJoinInterval = 200 * time.Millisecond
	r := e.start(cfg)
	e.putUser("newbie", newbie, true)
	e.waitState(r, "newbie", StatePendingJoin)
	e.waitIdle(cfg.Durable)
	seq := e.emu.Recorder().NextSeq()
	// Re-checked every interval, at one GET each (no retry storm).
	e.eventually("re-checked", 10*time.Second, func() (bool, string) {
		n := len(e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, UserID: newbie}))
		return n >= 2, fmt.Sprintf("%d calls", n)
	})
	if _, err := e.emu.Admin().AddMember(e.ctx, guildID, discordemu.MemberSeed{UserID: newbie}); err != nil {
		t.Fatalf("join: %v", err)
	}
	e.waitRoles(newbie, roleStaff)
	e.waitState(r, "newbie", StateInSync)
	if n := r.svc.Metrics().Counters["drift_runs"]; n != 0 {
		t.Errorf("drift repair ran %d times; the re-check alone must apply the roles", n)
	}
}

// A live message for a member whose background reconcile is waiting at the
// priority gate boosts it: the live change is applied at once, not after all
// other live work of the guild.
func TestLiveMessageIsNotStuckBehindBackgroundWorkOfTheSameMember(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putGroup("g-eng", "Engineering")
	e.putUser("alice", memberAlice, true)
	e.waitRoles(memberAlice, roleStaff)
	e.waitIdle(testConfig().Durable)
	if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, memberAlice, []string{roleDesign, roleStaff}); err != nil {
		t.Fatalf("hand edit: %v", err)
	}
	// Other live work of the guild stays in flight for the whole test.
	release := r.svc.dc.prio.enter(guildID)
	defer release()
	seq := e.emu.Recorder().NextSeq()
	repaired := make(chan error, 1)
	tn, _ := e.tenants.Get(tenantID)
	go func() {
		// Drift repair's step for one member (Repair itself lists the guild
		// first, which the gate would hold as well).
		repaired <- r.svc.reconcileWaiting(lowPriority(e.ctx, nil), tn, tn.Guilds[0], "alice")
	}()
	// The repair's reconcile of alice is held at the gate: no call for her.
	e.eventually("repair reached alice", 10*time.Second, func() (bool, string) {
		return r.svc.coal.running(tenantID + "|" + guildID + "|alice"), "not yet"
	})
	if n := len(e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, UserID: memberAlice})); n != 0 {
		t.Fatalf("background work called Discord %d times for alice while live work was in flight", n)
	}
	// A live change for alice arrives: it must not wait for the other live work.
	e.putMember("g-eng", "alice", true)
	e.waitRoles(memberAlice, roleEng, roleStaff)
	release()
	if err := <-repaired; err != nil {
		t.Fatalf("repair: %v", err)
	}
}
