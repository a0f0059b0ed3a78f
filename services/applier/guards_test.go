package applier

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
)

// A PATCH replaces the whole role list: an unmanaged role a human adds after
// the GET it was computed from must survive. Mapping answers slowly once
// (longer than FreshRoles, after the GET), and the human adds Moderator
// meanwhile: the PATCH computed from the old read must not go out.
func TestUnmanagedRoleAddedBetweenTheReadAndThePatchSurvives(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	var once sync.Once
	e.mapping.mu.Lock()
	e.mapping.before = func(req *mappingv1.ResolveRolesRequest) {
		if req.GetUserId() != "carol" {
			return
		}
		once.Do(func() {
			// The GET of carol has been answered (the desired state is read
			// after it); a human gives her Moderator, and this answer is
			// late (a slow mapping, caused here).
			if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, member(3), []string{roleMod}); err != nil {
				t.Errorf("hand edit: %v", err)
			}
			<-time.After(2 * cfg.FreshRoles)
		})
	}
	e.mapping.mu.Unlock()
	r := e.start(cfg)
	e.putGroup("g-eng", "Engineering")
	e.putMember("g-eng", "carol", true)
	e.putUser("carol", member(3), true) // two roles to add: one PATCH
	e.waitRoles(member(3), roleEng, roleStaff, roleMod)
	e.waitState(r, "carol", StateInSync)
	for _, rec := range e.emu.Recorder().Requests(discordemu.RequestFilter{UserID: member(3), Route: "member_edit"}) {
		if !strings.Contains(string(rec.BodyJSON), roleMod) {
			t.Errorf("a PATCH without the Moderator role a human added went out: %s", rec.BodyJSON)
		}
	}
}

func TestKickWhoseAnswerIsLostIsRecordedAsAKick(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match: discordemu.FaultMatch{Route: discordemu.StringList{"member_kick"}}, Stage: "after_commit",
		When: discordemu.FaultWhen{Times: 1}, Action: discordemu.FaultAction{Type: "drop", Mode: "reset"},
	}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	r := e.start(testConfig())
	e.putUser("dave", member(4), true)
	e.waitRoles(member(4), roleStaff)
	e.deleteUser("dave", member(4)) // on_delete kick (default)
	e.eventually("dave kicked", 20*time.Second, func() (bool, string) { return !e.isMember(member(4)), "still a member" })
	e.eventually("the kick recorded", 20*time.Second, func() (bool, string) {
		st, err := r.svc.Status(e.ctx, tenantID, guildID, "dave")
		if err != nil {
			return false, err.Error()
		}
		return st.State == StateInSync && st.Action == "kick" && strings.Contains(st.Detail, "kicked (answer lost)"),
			string(st.State) + " " + st.Action + ": " + st.Detail
	})
	e.waitIdle(testConfig().Durable)
	if n := e.mutations(member(4))["member_kick"]; n != 1 {
		t.Errorf("%d kicks sent, want 1 (the retry finds dave gone)", n)
	}
}
