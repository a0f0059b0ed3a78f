package applier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/pkg/eventbus"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// service builds an applier that is not running (no consumer): the test
// drives its reconciles directly, as two replicas would.
func (e *env) service(cfg Config) *Service {
	e.t.Helper()
	svc, err := New(cfg, Deps{JS: e.js, Tenants: e.tenants, Mapping: e.client, BotToken: botToken,
		HTTPClient: e.emu.HTTPClient(), Logger: testLogger(e.t)})
	if err != nil {
		e.t.Fatalf("new applier: %v", err)
	}
	if err := svc.open(e.ctx); err != nil {
		e.t.Fatalf("open: %v", err)
	}
	return svc
}

// delayFirstGet slows the first member GET of discordID by ms and returns a
// func reporting whether that GET has reached the emulator (it is in flight).
func (e *env) delayFirstGet(discordID string, ms float64) func() bool {
	e.t.Helper()
	id, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match:  discordemu.FaultMatch{Route: discordemu.StringList{"member_get"}, UserID: discordID},
		When:   discordemu.FaultWhen{Nth: []int{1}},
		Action: discordemu.FaultAction{Type: "delay", MS: ms},
	})
	if err != nil {
		e.t.Fatalf("add fault: %v", err)
	}
	return func() bool {
		fs, err := e.emu.Admin().Faults(e.ctx)
		if err != nil {
			e.t.Fatalf("faults: %v", err)
		}
		for _, f := range fs {
			if f.ID == id {
				return f.Fired > 0
			}
		}
		return false
	}
}

func TestReplicasNeverReconcileOneMemberAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.service(testConfig()), e.service(testConfig())
	m := member(3)
	e.putGroup("g1", "Engineering")
	e.putUser("u3", m, true)
	inFlight := e.delayFirstGet(m, 1500)

	// Replica A reconciles the user record; its GET of the member is slow.
	aDone := make(chan error, 1)
	go func() { aDone <- a.reconcile(e.ctx, mustTenant(t, e), e.guilds[0], "u3") }()
	e.eventually("replica A's GET in flight", 10*time.Second, func() (bool, string) { return inFlight(), "not yet" })

	// The membership lands on replica B meanwhile: it must not touch the
	// member while A works on it, but delay the message.
	e.putMember("g1", "u3", true)
	seq := e.emu.Recorder().NextSeq()
	err := b.reconcile(e.ctx, mustTenant(t, e), e.guilds[0], "u3")
	if !errors.Is(err, ErrMemberBusy) {
		t.Fatalf("replica B reconciled a member replica A holds: err %v, want ErrMemberBusy", err)
	}
	if d, ok := eventbus.RetryDelay(err); !ok || d <= 0 || d > time.Second {
		t.Errorf("busy member: retry delay %v %v, want a short NakWithDelay", d, ok)
	}
	if n := len(e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, UserID: m})); n != 0 {
		t.Errorf("replica B made %d calls for a member replica A holds", n)
	}
	if err := <-aDone; err != nil {
		t.Fatalf("replica A: %v", err)
	}
	// The message comes back to B after A released the member.
	if err := b.reconcile(e.ctx, mustTenant(t, e), e.guilds[0], "u3"); err != nil {
		t.Fatalf("replica B after A: %v", err)
	}
	if got, want := e.roles(m), []string{roleEng, roleStaff}; !slices.Equal(got, want) {
		t.Errorf("roles %v, want %v", got, want)
	}
	// A read the desired state after its slow GET: the membership written
	// meanwhile was in its plan, and no role was ever taken away.
	for _, r := range e.emu.Recorder().Requests(discordemu.RequestFilter{UserID: m}) {
		if r.Route == "member_role_remove" || (r.Route == "member_edit" && !strings.Contains(string(r.BodyJSON), roleEng)) {
			t.Errorf("a role was removed: %s %s %s", r.Method, r.Path, r.BodyJSON)
		}
	}
}

func mustTenant(t *testing.T, e *env) *tenants.Tenant {
	t.Helper()
	tn, ok := e.tenants.Get(tenantID)
	if !ok {
		t.Fatal("no tenant")
	}
	return tn
}

func TestTwoReplicaProcessesKeepEachMembersOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the applier binary")
	}
	t.Parallel()
	const users = 6
	e := newEnvSetup(t, setup{emu: discordemu.DefaultConfig(), fixture: benchFixture(1, users),
		guilds: []tenants.Guild{{ID: benchGuild(1)}}, mapping: &benchMapping{guilds: 1}})
	_, la := e.startProcess(t, "replica A")
	_, lb := e.startProcess(t, "replica B")
	e.eventually("both replicas", 20*time.Second, func() (bool, string) {
		return strings.Contains(la.String(), `"replicas":2`) && strings.Contains(lb.String(), `"replicas":2`), "not yet"
	})
	e.putGroup("g1", "G1")
	var inFlight []func() bool
	for i := 1; i <= users; i++ {
		inFlight = append(inFlight, e.delayFirstGet(benchUser(i), 800))
		e.putUser(fmt.Sprintf("u%d", i), benchUser(i), true)
	}
	// Every user record's reconcile has read the store and waits for its
	// slow GET; now the memberships arrive, on either replica.
	e.eventually("every first GET in flight", 20*time.Second, func() (bool, string) {
		n := 0
		for _, f := range inFlight {
			if f() {
				n++
			}
		}
		return n == users, fmt.Sprintf("%d of %d", n, users)
	})
	for i := 1; i <= users; i++ {
		e.putMember("g1", fmt.Sprintf("u%d", i), true)
	}
	want := benchDesired(1, []string{"G1"})
	e.eventually("every member converged", 20*time.Second, func() (bool, string) {
		st, err := e.emu.Admin().State(e.ctx, benchGuild(1))
		if err != nil {
			return false, err.Error()
		}
		for i := 1; i <= users; i++ {
			if got := sortedRoles(st.Member(benchUser(i)).Roles); !equal(got, want) {
				return false, fmt.Sprintf("member u%d has %v, want %v", i, got, want)
			}
		}
		return true, ""
	})
	g1 := benchRole(1, 1)
	for i := 1; i <= users; i++ {
		for _, r := range e.emu.Recorder().Requests(discordemu.RequestFilter{UserID: benchUser(i)}) {
			if (r.Route == "member_role_remove") || (r.Route == "member_edit" && !strings.Contains(string(r.BodyJSON), g1)) {
				t.Errorf("member u%d: role G1 taken away by a stale replica: %s %s %s", i, r.Method, r.Path, r.BodyJSON)
			}
		}
	}
}

func TestALeaseIsFreeForAnotherReplicaOnceTheHolderReturns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.service(testConfig()), e.service(testConfig())
	noop := func(context.Context) error { return nil }
	for i := 0; i < 50; i++ {
		if err := a.holdLease(e.ctx, tenantID, e.guilds[0].ID, "ux", noop); err != nil {
			t.Fatalf("round %d, replica A: %v", i, err)
		}
		// A's reconcile has returned (its message is acked next): the
		// member's next message, on B, must not find it busy.
		if err := b.holdLease(e.ctx, tenantID, e.guilds[0].ID, "ux", noop); err != nil {
			t.Fatalf("round %d, replica B right after A returned: %v", i, err)
		}
	}
}
