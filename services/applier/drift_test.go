package applier

import (
	"strings"
	"testing"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/pkg/tenants"
)

func TestDriftRepairPlansInDryRunThenFixesHandEdits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *discordemu.Config, _ *tenants.Guild) { c.TimeScale = 0.1 })
	cfg := testConfig()
	r := e.start(cfg)
	r.svc.pageSize = 3 // several pages over the 11 members of the fixture
	e.putGroup("g-eng", "Engineering")
	for i := 1; i <= 3; i++ {
		e.putUser(fmtUser(i), member(i), true)
	}
	e.putMember("g-eng", "u1", true)
	e.waitRoles(member(1), roleEng, roleStaff)
	e.waitRoles(member(2), roleStaff)
	e.waitRoles(member(3), roleStaff)
	e.waitIdle(cfg.Durable)

	// Humans edit roles in Discord: u1 loses Staff, u2 gains Engineering, an
	// unlinked member gains Staff, and u3 gets the unmanaged Moderator.
	adm := e.emu.Admin()
	for id, roles := range map[string][]string{
		member(1): {roleEng}, member(2): {roleStaff, roleEng}, member(9): {roleStaff}, member(3): {roleStaff, roleMod},
	} {
		if err := adm.SetMemberRoles(e.ctx, guildID, id, roles); err != nil {
			t.Fatalf("hand edit: %v", err)
		}
	}
	seq := e.emu.Recorder().NextSeq()
	plan, err := r.svc.Repair(e.ctx, tenantID, guildID, true)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if plan.Members != 11 || plan.Pages < 4 || len(plan.Changes) != 3 {
		t.Fatalf("dry run = %+v, want 11 members over ≥4 pages and 3 changes", plan)
	}
	for _, c := range plan.Changes {
		if c.Done {
			t.Errorf("dry run made change %+v", c)
		}
	}
	for _, rec := range e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq}) {
		if rec.Method != "GET" {
			t.Errorf("dry run called %s %s", rec.Method, rec.Path)
		}
	}

	rep, err := r.svc.Repair(e.ctx, tenantID, guildID, false)
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	for _, c := range rep.Changes {
		if !c.Done {
			t.Errorf("change not done: %+v", c)
		}
	}
	e.waitRoles(member(1), roleEng, roleStaff)
	e.waitRoles(member(2), roleStaff)
	e.waitRoles(member(9))
	e.waitRoles(member(3), roleStaff, roleMod)
	e.waitRoles(memberJudy, roleMod)

	again, err := r.svc.Repair(e.ctx, tenantID, guildID, true)
	if err != nil || len(again.Changes) != 0 {
		t.Errorf("after repair, dry run = %+v, %v; want no changes", again, err)
	}
}

func TestDriftRepairReportsEachMembersRealOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mapping.mu.Lock()
	e.mapping.refuseUsers = map[string]bool{"u2": true}
	e.mapping.mu.Unlock()
	cfg := testConfig()
	r := e.start(cfg)
	for _, i := range []int{1, 2, 4, 5} {
		e.putUser(fmtUser(i), member(i), true)
	}
	e.waitRoles(member(1), roleStaff)
	e.waitRoles(member(4), roleStaff)
	e.waitRoles(member(5), roleStaff)
	e.waitState(r, "u2", StateFailed)
	e.waitIdle(cfg.Durable)

	// Hand edits: u1 and u4 lose Staff, and u4 gets a role above the bot.
	top, err := e.emu.Admin().CreateRole(e.ctx, guildID, discordemu.RoleSeed{Name: "Admins", Position: intp(20)})
	if err != nil {
		t.Fatalf("create role: %v", err)
	}
	// u5's fix will fail with 50013 (failed + dead letter, not done).
	if _, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match:  discordemu.FaultMatch{Route: discordemu.StringList{"member_role_add"}, UserID: member(5)},
		When:   discordemu.FaultWhen{Times: 1},
		Action: discordemu.FaultAction{Type: "error", Status: 403, Code: codeMissingPermissions, Message: "Missing Permissions"},
	}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	for id, roles := range map[string][]string{member(1): {}, member(2): {roleEng}, member(4): {top.ID}, member(5): {}} {
		if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, id, roles); err != nil {
			t.Fatalf("hand edit: %v", err)
		}
	}
	seq := e.emu.Recorder().NextSeq()
	rep, err := r.svc.Repair(e.ctx, tenantID, guildID, false)
	if err != nil {
		t.Fatalf("repair stopped at one member's trouble: %v", err)
	}
	got := map[string]PlannedChange{}
	for _, c := range rep.Changes {
		got[c.User] = c
	}
	tests := []struct {
		user     string
		wantDone bool
		wantErr  string
	}{
		{user: "u1", wantDone: true},
		{user: "u2", wantErr: "refused"},
		{user: "u4", wantErr: "never changes"},
		{user: "u5", wantErr: "failed: Discord 50013"},
	}
	for _, tc := range tests {
		c, ok := got[tc.user]
		switch {
		case !ok:
			t.Errorf("%s: not in the report %+v", tc.user, rep.Changes)
		case c.Done != tc.wantDone || !strings.Contains(c.Error, tc.wantErr) || (tc.wantErr == "") != (c.Error == ""):
			t.Errorf("%s: reported %+v, want done %v and error containing %q", tc.user, c, tc.wantDone, tc.wantErr)
		}
	}
	e.waitRoles(member(1), roleStaff)
	for _, rec := range e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, UserID: member(4)}) {
		if rec.Method != "GET" {
			t.Errorf("a member above the bot was changed: %s %s", rec.Method, rec.Path)
		}
	}
}
