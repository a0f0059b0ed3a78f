package applier

import (
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

func TestDeadLetterIsClearedWhenTheMemberNeedsNothingAnyMore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		then  func(e *env) // after the failure: the change that makes it obsolete
		state State
	}{
		{name: "a human gave the role: in sync without a call", state: StateInSync, then: func(e *env) {
			if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, member(2), []string{roleStaff}); err != nil {
				e.t.Fatalf("set roles: %v", err)
			}
			e.putUser("bob", member(2), true)
		}},
		{name: "the member left the guild: pending_join", state: StatePendingJoin, then: func(e *env) {
			if err := e.emu.Admin().RemoveMember(e.ctx, guildID, member(2)); err != nil {
				e.t.Fatalf("remove member: %v", err)
			}
			e.putUser("bob", member(2), true)
		}},
		{name: "the user was deleted and is not in the guild: nothing to remove", state: StateInSync, then: func(e *env) {
			if err := e.emu.Admin().RemoveMember(e.ctx, guildID, member(2)); err != nil {
				e.t.Fatalf("remove member: %v", err)
			}
			e.deleteUser("bob", member(2))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if _, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
				Match:  discordemu.FaultMatch{Route: discordemu.StringList{"member_role_add"}, UserID: member(2)},
				When:   discordemu.FaultWhen{Times: 1},
				Action: discordemu.FaultAction{Type: "error", Status: 403, Code: codeMissingPermissions, Message: "Missing Permissions"},
			}); err != nil {
				t.Fatalf("add fault: %v", err)
			}
			r := e.start(testConfig())
			e.putUser("bob", member(2), true)
			e.waitState(r, "bob", StateFailed)
			deadLetters := func() int {
				dls, err := r.svc.DeadLetters(e.ctx)
				if err != nil {
					t.Fatalf("dead letters: %v", err)
				}
				return len(dls)
			}
			if n := deadLetters(); n != 1 {
				t.Fatalf("%d dead letters after the 50013, want 1", n)
			}
			tc.then(e)
			e.waitState(r, "bob", tc.state)
			e.eventually("dead letter cleared", 10*time.Second, func() (bool, string) {
				n := deadLetters()
				return n == 0, "dead letters left"
			})
		})
	}
}
