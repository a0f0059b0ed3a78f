package applier

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/pkg/tenants"
)

func withPolicy(deactivate, del tenants.Action) envOpt {
	return func(_ *discordemu.Config, g *tenants.Guild) { g.OnDeactivate, g.OnDelete = deactivate, del }
}

func (e *env) isMember(discordID string) bool {
	e.t.Helper()
	st, err := e.emu.Admin().State(e.ctx, guildID)
	if err != nil {
		e.t.Fatalf("state: %v", err)
	}
	return st.Member(discordID) != nil
}

func (e *env) isBanned(discordID string) bool {
	e.t.Helper()
	st, err := e.emu.Admin().State(e.ctx, guildID)
	if err != nil {
		e.t.Fatalf("state: %v", err)
	}
	return slices.ContainsFunc(st.Bans, func(b discordemu.Ban) bool { return b.User.ID == discordID })
}

func TestDeprovisioningPolicies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		deactivate tenants.Action
		del        tenants.Action
		delete     bool // delete instead of deactivate
		wantMember bool
		wantBanned bool
		wantRoles  []string
	}{
		{name: "deactivate with kick removes the member", deactivate: tenants.ActionKick, wantMember: false},
		{name: "deactivate with ban bans the member", deactivate: tenants.ActionBan, wantBanned: true},
		{name: "deactivate with none leaves the roles", deactivate: tenants.ActionNone, wantMember: true, wantRoles: []string{roleEng, roleStaff}},
		{name: "delete with strip keeps the member without managed roles", del: tenants.ActionStrip, delete: true, wantMember: true, wantRoles: []string{}},
		{name: "delete with ban bans the member", del: tenants.ActionBan, delete: true, wantBanned: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withPolicy(tc.deactivate, tc.del))
			r := e.start(testConfig())
			e.putGroup("g-eng", "Engineering")
			e.putMember("g-eng", "frank", true)
			e.putUser("frank", member(6), true)
			e.waitRoles(member(6), roleEng, roleStaff)
			// Let the earlier messages finish: a late no-op reconcile would
			// otherwise overwrite the status below with "no change needed".
			e.waitIdle(testConfig().Durable)
			if tc.delete {
				e.deleteUser("frank", member(6))
			} else {
				e.putUser("frank", member(6), false)
			}
			e.eventually("policy applied", 20*time.Second, func() (bool, string) {
				st, err := r.svc.Status(e.ctx, tenantID, guildID, "frank")
				return err == nil && st.State == StateInSync && (st.Action != "" || tc.deactivate == tenants.ActionNone) &&
					e.isMember(member(6)) == tc.wantMember && e.isBanned(member(6)) == tc.wantBanned, st.Detail
			})
			if tc.wantMember {
				e.waitRoles(member(6), tc.wantRoles...)
			}
		})
	}
}

func TestGracePeriodStripsAtOnceKicksLaterAndReactivationRestores(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withPolicy(tenants.ActionKick, ""))
	cfg := testConfig()
	cfg.GracePeriod = 1500 * time.Millisecond
	r := e.start(cfg)
	e.putGroup("g-design", "Design")
	for _, u := range []string{"grace", "heidi"} {
		e.putMember("g-design", u, true)
	}
	e.putUser("grace", member(7), true)
	e.putUser("heidi", member(8), true)
	e.waitRoles(member(7), roleDesign, roleStaff)
	e.waitRoles(member(8), roleDesign, roleStaff)

	e.putUser("grace", member(7), false)
	e.putUser("heidi", member(8), false)
	e.waitRoles(member(7))
	e.waitRoles(member(8))
	st := e.waitState(r, "grace", StatePending)
	if !e.isMember(member(7)) {
		t.Fatalf("kicked before the grace period ended (status %+v)", st)
	}
	// Grace is re-activated within the period: her roles come back, no kick.
	e.putUser("grace", member(7), true)
	e.waitRoles(member(7), roleDesign, roleStaff)
	// Heidi is kicked once the period is over.
	e.eventually("heidi kicked", 20*time.Second, func() (bool, string) { return !e.isMember(member(8)), "still a member" })
	e.waitState(r, "heidi", StateInSync)
	e.waitIdle(cfg.Durable)
	if !e.isMember(member(7)) {
		t.Error("re-activated member was kicked")
	}
	e.waitState(r, "grace", StateInSync)
}

func TestMassRemovalBrakeHoldsUntilAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *discordemu.Config, _ *tenants.Guild) { c.TimeScale = 0.1 })
	cfg := testConfig()
	cfg.BrakeMaxCount = 3
	cfg.BrakeMaxShare = 0
	cfg.BrakeRecheck = 200 * time.Millisecond
	r := e.start(cfg)
	for i := 1; i <= 6; i++ {
		e.putUser(fmtUser(i), member(i), true)
	}
	for i := 1; i <= 6; i++ {
		e.waitRoles(member(i), roleStaff)
	}
	// The IdP deactivates six users at once.
	for i := 1; i <= 6; i++ {
		e.putUser(fmtUser(i), member(i), false)
	}
	stripped := func() int {
		n := 0
		for i := 1; i <= 6; i++ {
			if len(e.roles(member(i))) == 0 {
				n++
			}
		}
		return n
	}
	e.eventually("brake engaged", 20*time.Second, func() (bool, string) {
		bs := r.svc.Brakes()
		return len(bs) == 1 && bs[0].Engaged && len(bs[0].Held) == 3, "brakes not engaged yet"
	})
	if n := stripped(); n != 3 {
		t.Fatalf("%d members stripped while the brake holds, want 3", n)
	}
	held := 0
	for i := 1; i <= 6; i++ {
		st, err := r.svc.Status(e.ctx, tenantID, guildID, fmtUser(i))
		if err == nil && st.State == StatePending && errors.Is(errFromDetail(st.Detail), ErrBrakeEngaged) {
			held++
		}
	}
	if held != 3 {
		t.Errorf("%d members report the brake, want 3", held)
	}
	// Held removals do not occupy the consumer: every message is acked.
	e.waitIdle(cfg.Durable)
	if n := stripped(); n != 3 {
		t.Fatalf("%d members stripped while the brake holds, want 3", n)
	}
	// A restart does not release the brake: its state is in JetStream.
	r.stop(t)
	r = e.start(cfg)
	if bs := r.svc.Brakes(); len(bs) != 1 || !bs[0].Engaged || len(bs[0].Held) != 3 {
		t.Fatalf("brakes after a restart = %+v, want 3 members still held", bs)
	}
	r.svc.AllowRemovals(e.ctx, guildID)
	for i := 1; i <= 6; i++ {
		e.waitRoles(member(i))
		e.waitState(r, fmtUser(i), StateInSync)
	}
}

// errFromDetail maps a status detail back to the brake sentinel.
func errFromDetail(detail string) error {
	if len(detail) >= len(ErrBrakeEngaged.Error()) && detail[:len(ErrBrakeEngaged.Error())] == ErrBrakeEngaged.Error() {
		return ErrBrakeEngaged
	}
	return nil
}

func TestGuildSettingsOverrideTheGraceAndBrakeDefaults(t *testing.T) {
	t.Parallel()
	one, zero := 1, 0
	tests := []struct {
		name  string
		cfg   func(*Config)
		guild func(*tenants.Guild)
		// after deactivating members 1 and 2 (policy kick):
		wantKicked   int // members kicked
		wantStripped int // members left in the guild without roles
		wantHeld     int // members held by the brake, roles untouched
	}{
		{name: "guild grace_period delays the kick although the applier has none",
			cfg:   func(c *Config) { c.GracePeriod = 0 },
			guild: func(g *tenants.Guild) { g.GracePeriod = "1h" }, wantStripped: 2},
		{name: "guild grace_period 0s kicks at once although the applier has one",
			cfg:   func(c *Config) { c.GracePeriod = time.Hour },
			guild: func(g *tenants.Guild) { g.GracePeriod = "0s" }, wantKicked: 2},
		{name: "guild brake_max_count holds removals beyond it",
			cfg:   func(c *Config) { c.BrakeMaxCount, c.BrakeMaxShare = 25, 0.1 },
			guild: func(g *tenants.Guild) { g.BrakeMaxCount = &one }, wantKicked: 1, wantHeld: 1},
		{name: "guild brake_max_count 0 turns the brake off",
			cfg:   func(c *Config) { c.BrakeMaxCount, c.BrakeMaxShare = 1, 0 },
			guild: func(g *tenants.Guild) { g.BrakeMaxCount = &zero }, wantKicked: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(_ *discordemu.Config, g *tenants.Guild) {
				g.OnDeactivate = tenants.ActionKick
				tc.guild(g)
			})
			cfg := testConfig()
			cfg.BrakeRecheck = time.Hour // held removals stay held during the test
			tc.cfg(&cfg)
			r := e.start(cfg)
			for i := 1; i <= 2; i++ {
				e.putUser(fmtUser(i), member(i), true)
			}
			for i := 1; i <= 2; i++ {
				e.waitRoles(member(i), roleStaff)
			}
			for i := 1; i <= 2; i++ {
				e.putUser(fmtUser(i), member(i), false)
			}
			count := func() (kicked, stripped, held int) {
				for i := 1; i <= 2; i++ {
					switch rs := e.roles(member(i)); {
					case !e.isMember(member(i)):
						kicked++
					case len(rs) == 0:
						stripped++
					default:
						held++
					}
				}
				return
			}
			e.eventually("policy applied", 20*time.Second, func() (bool, string) {
				k, s, h := count()
				settled := 0
				for i := 1; i <= 2; i++ {
					if st, err := r.svc.Status(e.ctx, tenantID, guildID, fmtUser(i)); err == nil &&
						(st.State == StatePending || st.State == StateInSync) && !st.Time.IsZero() && st.Roles == nil {
						settled++
					}
				}
				return settled == 2 && k == tc.wantKicked && s == tc.wantStripped && h == tc.wantHeld,
					fmt.Sprintf("kicked %d, stripped %d, held %d; settled %d", k, s, h, settled)
			})
			e.waitIdle(cfg.Durable)
			if k, s, h := count(); k != tc.wantKicked || s != tc.wantStripped || h != tc.wantHeld {
				t.Errorf("kicked %d, stripped %d, held %d; want %d, %d, %d", k, s, h, tc.wantKicked, tc.wantStripped, tc.wantHeld)
			}
		})
	}
}
