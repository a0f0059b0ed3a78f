package applier

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

// TestStatus_PendingWhileAKnownChangeIsNotApplied (DESIGN.md property 7):
// with Discord slow to remove a role, a member whose removal was received
// is pending — never in_sync while Discord still has the role — and in_sync
// once it is gone.
func TestStatus_PendingWhileAKnownChangeIsNotApplied(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putUser("alice", memberAlice, true)
	e.putGroup("g-design", "Design")
	e.putMember("g-design", "alice", true)
	e.waitRoles(memberAlice, roleDesign, roleStaff)
	// Every earlier message handled: no late reconcile of them (one that read
	// the store before the removal) writes a status during the check below.
	e.waitIdle(testConfig().Durable)
	before := e.waitState(r, "alice", StateInSync)
	if _, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match: discordemu.FaultMatch{Route: discordemu.StringList{"member_role_remove", "member_update"}},
		When:  discordemu.FaultWhen{Times: 1}, Action: discordemu.FaultAction{Type: "delay", MS: 1500},
	}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	e.putMember("g-design", "alice", false)
	putAt := time.Now()
	sawPending := false
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := r.svc.Status(e.ctx, tenantID, guildID, "alice") // status first, then Discord
		if err != nil {
			t.Fatal(err)
		}
		roles := e.roles(memberAlice)
		hasDesign := slices.Contains(roles, roleDesign)
		if st.State == StateInSync && hasDesign && (st.Time.After(before.Time) || time.Since(putAt) > 300*time.Millisecond) {
			// (300 ms: the message's delivery to the applier)
			t.Fatalf("status in_sync (%s) %s after the removal was stored, while Discord still has Design: %v", st.Detail, time.Since(putAt).Round(time.Millisecond), roles)
		}
		if st.State == StateInSync && hasDesign && sawPending {
			t.Fatalf("status back to in_sync while Discord still has Design: %v", roles)
		}
		if st.State == StatePending {
			sawPending = true
			if st.TraceID == before.TraceID && before.TraceID != "" {
				t.Errorf("pending status keeps the old trace id %s", st.TraceID)
			}
		}
		if !hasDesign && st.State == StateInSync {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not in sync: state %s, roles %v", st.State, roles)
		}
		time.Sleep(20 * time.Millisecond) // poll
	}
	if !sawPending {
		t.Fatal("never saw pending while the removal was delayed")
	}
}

// TestAdminStatus_ReportsPendingWhenDesiredAndActualDiffer: the operator
// view says pending when the stored status is in_sync but Discord differs
// from the desired roles right now (here: a role added by hand).
func TestAdminStatus_ReportsPendingWhenDesiredAndActualDiffer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putUser("alice", memberAlice, true)
	e.waitRoles(memberAlice, roleStaff)
	e.waitState(r, "alice", StateInSync)
	e.waitIdle(testConfig().Durable)
	if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, memberAlice, []string{roleStaff, roleEng}); err != nil {
		t.Fatal(err)
	}
	rep := e.adminAsk(AdminOpStatus, AdminRequest{Tenant: tenantID, User: "alice"})
	var ms []AdminMemberStatus
	if rep.Error != "" || json.Unmarshal(rep.Result, &ms) != nil || len(ms) != 1 {
		t.Fatalf("status reply %+v", rep)
	}
	if ms[0].Status == nil || ms[0].Status.State != StatePending || !slices.Contains(ms[0].ToRemove, roleEng) {
		t.Fatalf("status %+v to_remove %v: want pending with Engineering to remove", ms[0].Status, ms[0].ToRemove)
	}
	if st, _ := r.svc.Status(e.ctx, tenantID, guildID, "alice"); st.State != StateInSync {
		t.Fatalf("stored status changed to %s; the view alone reports pending", st.State)
	}
}
