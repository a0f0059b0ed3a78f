package applier

import (
	"strings"
	"testing"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

func TestRoleCreatedAboveTheBotAfterStartProtectsItsMembers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.GuildRefresh = 0 // no periodic refresh: the unknown role itself must trigger one
	r := e.start(cfg)
	// The applier knows the guild's roles (it changed a member).
	e.putUser("bob", member(2), true)
	e.waitRoles(member(2), roleStaff)
	e.waitState(r, "bob", StateInSync)

	// A human creates a role above the bot and gives it to bob.
	top, err := e.emu.Admin().CreateRole(e.ctx, guildID, discordemu.RoleSeed{Name: "Admins", Position: intp(20)})
	if err != nil {
		t.Fatalf("create role: %v", err)
	}
	if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, member(2), []string{roleStaff, top.ID}); err != nil {
		t.Fatalf("give role: %v", err)
	}
	seq := e.emu.Recorder().NextSeq()
	e.putGroup("eng", "Engineering")
	e.putMember("eng", "bob", true)
	e.eventually("bob protected", 20e9, func() (bool, string) {
		st, err := r.svc.Status(e.ctx, tenantID, guildID, "bob")
		if err != nil {
			return false, err.Error()
		}
		return st.State == StateFailed && strings.Contains(st.Detail, top.ID) && strings.Contains(st.Detail, "above the bot"),
			string(st.State) + ": " + st.Detail
	})
	e.waitIdle(cfg.Durable)
	for _, rec := range e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, UserID: member(2)}) {
		if rec.Method != "GET" {
			t.Errorf("a member holding a role above the bot was changed: %s %s", rec.Method, rec.Path)
		}
	}
}

func TestRoleMissingFromTheGuildListCountsAsAboveTheBot(t *testing.T) {
	t.Parallel()
	gi := &guildInfo{owner: ownerID, botTop: 5, positions: map[string]int{roleStaff: 1, roleMod: 6}}
	tests := []struct {
		name        string
		roles       []string
		wantWhy     string
		wantUnknown string
	}{
		{name: "known roles below the bot", roles: []string{roleStaff}},
		{name: "a known role above the bot", roles: []string{roleStaff, roleMod}, wantWhy: roleMod},
		{name: "an unknown role is reported", roles: []string{roleStaff, "999"}, wantUnknown: "999"},
		{name: "the owner", roles: nil, wantWhy: "owner"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			who := member(1)
			if tc.name == "the owner" {
				who = ownerID
			}
			why, unknown := gi.protects(who, tc.roles)
			if (tc.wantWhy == "") != (why == "") || !strings.Contains(why, tc.wantWhy) || unknown != tc.wantUnknown {
				t.Errorf("protects = %q, %q; want %q, %q", why, unknown, tc.wantWhy, tc.wantUnknown)
			}
		})
	}
}
