package applier

import (
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
