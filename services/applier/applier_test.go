package applier

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

func TestReconcileIssuesTheMinimalCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		groups   []string // groups the user is in (Engineering, Design)
		initial  []string // the member's roles before
		want     []string
		wantCall map[string]int
	}{
		{name: "one role missing gives one PUT", want: []string{roleStaff},
			wantCall: map[string]int{"member_role_add": 1}},
		{name: "one managed role too many gives one DELETE", initial: []string{roleStaff, roleDesign}, want: []string{roleStaff},
			wantCall: map[string]int{"member_role_remove": 1}},
		{name: "two roles missing give one PATCH", groups: []string{"Engineering"}, want: []string{roleEng, roleStaff},
			wantCall: map[string]int{"member_edit": 1}},
		{name: "an add and a remove give one PATCH that keeps the unmanaged role", groups: []string{"Engineering"},
			initial: []string{roleMod, roleStaff, roleDesign}, want: []string{roleMod, roleEng, roleStaff},
			wantCall: map[string]int{"member_edit": 1}},
		{name: "nothing to change gives no mutating call", groups: []string{"Design"},
			initial: []string{roleDesign, roleStaff}, want: []string{roleDesign, roleStaff}, wantCall: map[string]int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tc.initial != nil {
				if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, memberAlice, tc.initial); err != nil {
					t.Fatalf("seed roles: %v", err)
				}
			}
			for _, g := range tc.groups {
				e.putGroup("g-"+g, g)
				e.putMember("g-"+g, "alice", true)
			}
			e.putUser("alice", memberAlice, true)
			r := e.start(testConfig())
			e.waitState(r, "alice", StateInSync)
			e.waitIdle(testConfig().Durable)
			e.waitRoles(memberAlice, tc.want...)
			if got := e.mutations(memberAlice); !maps.Equal(got, tc.wantCall) {
				t.Errorf("mutating calls = %v, want %v", got, tc.wantCall)
			}
			e.emu.Recorder().AssertNoRateLimits(t)
			e.emu.Recorder().AssertAllReasonsEncoded(t)
		})
	}
}

func TestDeactivationStripsManagedRolesAndKeepsUnmanaged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putGroup("g-eng", "Engineering")
	e.putMember("g-eng", "judy", true)
	e.putUser("judy", memberJudy, true)
	e.waitRoles(memberJudy, roleMod, roleEng, roleStaff)
	e.waitIdle(testConfig().Durable)
	before := e.emu.Recorder().NextSeq()

	e.putUser("judy", memberJudy, false)
	e.waitRoles(memberJudy, roleMod)
	e.waitState(r, "judy", StateInSync)
	e.waitIdle(testConfig().Durable)
	n := 0
	for _, rec := range e.emu.Recorder().Requests(discordemuFilterSince(before, memberJudy)) {
		if rec.Method != "GET" {
			n++
			if rec.Route != "member_edit" {
				t.Errorf("deactivation used %s, want one member_edit", rec.Route)
			}
		}
	}
	if n != 1 {
		t.Errorf("deactivation made %d mutating calls, want 1", n)
	}
}

func TestReactivationRestoresRoles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putGroup("g-design", "Design")
	e.putMember("g-design", "bob", true)
	e.putUser("bob", member(2), false)
	e.waitState(r, "bob", StateInSync)
	if got := e.roles(member(2)); len(got) != 0 {
		t.Fatalf("inactive user got roles %v", got)
	}
	e.putUser("bob", member(2), true)
	e.waitRoles(member(2), roleDesign, roleStaff)
}

func TestMemberNotInGuildIsPendingJoinAndNotRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const newbie = "1100000000000002001"
	if _, err := e.emu.Admin().CreateUser(e.ctx, discordemu.UserSeed{ID: newbie, Username: "newbie"}); err != nil {
		t.Fatalf("create user: %v", err)
	}
	r := e.start(testConfig())
	e.putUser("newbie", newbie, true)
	st := e.waitState(r, "newbie", StatePendingJoin)
	if st.Code != codeUnknownMember || st.TraceID == "" {
		t.Errorf("status = %+v, want code 10007 and a trace id", st)
	}
	e.waitIdle(testConfig().Durable)
	gets := e.emu.Recorder().Requests(discordemuFilterSince(0, newbie))
	if len(gets) != 1 {
		t.Errorf("Discord saw %d calls for the non-member, want 1 GET", len(gets))
	}
	// The user joins; the next drift repair applies the roles.
	if _, err := e.emu.Admin().AddMember(e.ctx, guildID, discordemu.MemberSeed{UserID: newbie}); err != nil {
		t.Fatalf("join: %v", err)
	}
	if _, err := r.svc.Repair(e.ctx, tenantID, guildID, false); err != nil {
		t.Fatalf("repair: %v", err)
	}
	e.waitRoles(newbie, roleStaff)
	e.waitState(r, "newbie", StateInSync)
}

func TestGuildOwnerAndMembersAboveTheBotAreNeverChanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.emu.Admin().AddMember(e.ctx, guildID, discordemu.MemberSeed{UserID: ownerID}); err != nil {
		t.Fatalf("owner joins: %v", err)
	}
	top, err := e.emu.Admin().CreateRole(e.ctx, guildID, discordemu.RoleSeed{Name: "Admins", Position: intp(20)})
	if err != nil {
		t.Fatalf("create role: %v", err)
	}
	if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, member(4), []string{top.ID}); err != nil {
		t.Fatalf("seed roles: %v", err)
	}
	r := e.start(testConfig())
	e.putUser("owner", ownerID, true)
	e.putUser("dave", member(4), true)
	for _, u := range []string{"owner", "dave"} {
		if st := e.waitState(r, u, StateFailed); !strings.Contains(st.Detail, "never") {
			t.Errorf("status of %s = %+v, want it to say scimcord never changes them", u, st)
		}
	}
	e.waitIdle(testConfig().Durable)
	if got := e.mutations(ownerID); len(got) != 0 {
		t.Errorf("mutating calls on the owner: %v", got)
	}
	if got := e.mutations(member(4)); len(got) != 0 {
		t.Errorf("mutating calls on a member above the bot: %v", got)
	}
}

func TestUserWithoutDiscordIDIsPendingLinkUntilLinked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putUser("carol", "", true)
	e.waitState(r, "carol", StatePendingLink)
	e.putUser("carol", member(3), true)
	e.waitRoles(member(3), roleStaff)
	e.waitState(r, "carol", StateInSync)
}

func TestDeletedUserIsKickedByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putUser("dave", member(4), true)
	e.waitRoles(member(4), roleStaff)
	e.deleteUser("dave", member(4))
	e.eventually("dave kicked", 20*time.Second, func() (bool, string) {
		st, err := e.emu.Admin().State(e.ctx, guildID)
		if err != nil {
			return false, err.Error()
		}
		return st.Member(member(4)) == nil, "still a member"
	})
	e.waitState(r, "dave", StateInSync)
}

func TestRestartMidStreamLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	r := e.start(cfg)
	e.putUser("u1", member(1), true)
	e.waitRoles(member(1), roleStaff)
	r.stop(t)

	// Changes made while no applier runs.
	e.putGroup("g-eng", "Engineering")
	for i := 2; i <= 6; i++ {
		e.putUser(fmtUser(i), member(i), true)
		e.putMember("g-eng", fmtUser(i), true)
	}
	e.putMember("g-eng", "u1", true)

	r2 := e.start(cfg)
	for i := 1; i <= 6; i++ {
		e.waitRoles(member(i), roleEng, roleStaff)
		e.waitState(r2, fmtUser(i), StateInSync)
	}
	e.emu.Recorder().AssertNoRateLimits(t)
}
