package applier

import (
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

// rolesNamed returns the ids of the guild's roles with that name.
func (e *env) rolesNamed(name string) []string {
	e.t.Helper()
	st, err := e.emu.Admin().State(e.ctx, guildID)
	if err != nil {
		e.t.Fatalf("state: %v", err)
	}
	var ids []string
	for _, r := range st.Roles {
		if r.Name == name {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func TestAutoCreatedRoleFollowsItsGroupAndIsCreatedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The first role creation is applied but its answer is lost.
	if _, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match: discordemu.FaultMatch{Route: discordemu.StringList{"role_create"}}, Stage: "after_commit",
		When: discordemu.FaultWhen{Times: 1}, Action: discordemu.FaultAction{Type: "drop", Mode: "reset"},
	}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	// A human's older role named like a group is never taken over.
	if _, err := e.emu.Admin().EditRole(e.ctx, guildID, roleMod, discordemu.RolePatch{Name: strp("Moderators")}); err != nil {
		t.Fatalf("rename: %v", err)
	}
	cfg := testConfig()
	cfg.AutoCreateRoles = true
	r := e.start(cfg)
	e.putGroup("g-mods", "Moderators")
	e.putGroup("g-ops", "Ops")
	e.putMember("g-ops", "ivan", true)
	e.putUser("ivan", member(9), true)
	var ops string
	e.eventually("role Ops created", 20*time.Second, func() (bool, string) {
		ids := e.rolesNamed("Ops")
		if len(ids) == 1 {
			ops = ids[0]
		}
		return len(ids) == 1, "roles named Ops: " + joined(ids...)
	})
	e.waitRoles(member(9), ops, roleStaff)
	e.waitIdle(cfg.Durable)
	if n := len(e.rolesNamed("Ops")); n != 1 {
		t.Fatalf("%d roles named Ops after a lost answer, want 1", n)
	}
	if creates := e.emu.Recorder().Requests(discordemu.RequestFilter{Route: "role_create"}); len(creates) != 2 {
		t.Errorf("role_create called %d times, want 2 (Moderators and Ops; the lost answer is adopted)", len(creates))
	}
	if m := r.svc.Metrics(); m.Counters["roles_adopted"] != 1 {
		t.Errorf("counters = %v, want the interrupted creation adopted once", m.Counters)
	}

	// Renamed in the IdP: the same role is renamed, not re-created.
	e.putGroup("g-ops", "Operations")
	e.eventually("role renamed", 20*time.Second, func() (bool, string) {
		ids := e.rolesNamed("Operations")
		return len(ids) == 1 && ids[0] == ops, "roles named Operations: " + joined(ids...)
	})
	e.waitRoles(member(9), ops, roleStaff)

	// Removed from the group: the role goes; deleted group: the role is deleted.
	e.putMember("g-ops", "ivan", false)
	e.waitRoles(member(9), roleStaff)
	e.put("dev.g.g-ops", groupDeleted("g-ops", "Operations"))
	e.eventually("role deleted", 20*time.Second, func() (bool, string) {
		return len(e.rolesNamed("Operations")) == 0, "still there"
	})
	e.waitState(r, "ivan", StateInSync)
	if ids := e.rolesNamed("Moderators"); len(ids) != 2 {
		t.Errorf("roles named Moderators = %v, want the human's and scimcord's", ids)
	}
	e.emu.Recorder().AssertNoRateLimits(t)
}

func strp(s string) *string { return &s }
