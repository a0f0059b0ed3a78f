package applier

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// benchScale is the emulator's time scale in the benchmarks: every window
// of the realistic rate-limit table is 100× shorter.
const benchScale = 0.01

func benchGuild(j int) string         { return fmt.Sprintf("12000000000000%02d000", j) }
func benchRole(j, k int) string       { return fmt.Sprintf("12000000000000%02d%03d", j, k) }
func benchUser(i int) string          { return fmt.Sprintf("13000000000000%05d", i) }
func benchGroups(i int) []string      { return [][]string{nil, {"G1"}, {"G1", "G2"}, {"G3", "G4"}}[i%4] }
func benchWant(j, i int) (r []string) { return benchDesired(j, benchGroups(i)) }

// benchDesired is the mapping of the benchmark: group Gk → role k, every
// active user → role 5.
func benchDesired(j int, groups []string) []string {
	out := []string{benchRole(j, 5)}
	for _, g := range groups {
		out = append(out, benchRole(j, int(g[1]-'0')))
	}
	sort.Strings(out)
	return out
}

type benchMapping struct {
	mappingv1.UnimplementedMappingServiceServer
	guilds int
}

func (m *benchMapping) ResolveRoles(_ context.Context, req *mappingv1.ResolveRolesRequest) (*mappingv1.ResolveRolesResponse, error) {
	j := 0
	for k := 1; k <= m.guilds; k++ {
		if benchGuild(k) == req.GetGuildId() {
			j = k
		}
	}
	managed := []string{benchRole(j, 1), benchRole(j, 2), benchRole(j, 3), benchRole(j, 4), benchRole(j, 5)}
	var roles []string
	if req.GetActive() {
		var gs []string
		for _, g := range req.GetGroups() {
			gs = append(gs, g.GetDisplayName())
		}
		roles = benchDesired(j, gs)
	}
	return &mappingv1.ResolveRolesResponse{RoleIds: roles, ManagedRoleIds: managed, RulesVersion: 1}, nil
}

// benchFixture is a fixture of `guilds` guilds with `users` members each.
func benchFixture(guilds, users int) []byte {
	var b strings.Builder
	b.WriteString("applications:\n  - id: \"1100000000000000800\"\n    name: bench\n    members_intent: true\n    bot: {id: \"1100000000000000801\", username: bot, token: " + botToken + "}\n")
	b.WriteString("users:\n  - {id: \"1399999999999999999\", username: owner}\n")
	for i := 1; i <= users; i++ {
		fmt.Fprintf(&b, "  - {id: %q, username: u%d}\n", benchUser(i), i)
	}
	b.WriteString("guilds:\n")
	for j := 1; j <= guilds; j++ {
		fmt.Fprintf(&b, "  - id: %q\n    name: g%d\n    owner_id: \"1399999999999999999\"\n    everyone_permissions: \"0\"\n    roles:\n", benchGuild(j), j)
		for k := 1; k <= 5; k++ {
			fmt.Fprintf(&b, "      - {key: r%d, id: %q, name: R%d, permissions: \"0\"}\n", k, benchRole(j, k), k)
		}
		b.WriteString("    bots:\n      - {application_id: \"1100000000000000800\", permissions: [MANAGE_ROLES, KICK_MEMBERS, BAN_MEMBERS], position: top}\n    members:\n")
		for i := 1; i <= users; i++ {
			fmt.Fprintf(&b, "      - {user_id: %q}\n", benchUser(i))
		}
	}
	return []byte(b.String())
}

// minPlanTime is the time the emulator's bucket limits allow for the minimum
// plan of one guild: n1 one-role changes (PUT, or PATCH when faster) and n2
// multi-role changes (PATCH only), plus one GET per member, all buckets used
// in parallel (realistic table, scaled).
func minPlanTime(n1, n2 int) time.Duration {
	var role, edit, get discordemu.BucketDef
	for _, d := range discordemu.RealisticTable().Buckets {
		switch d.Name {
		case "member_role":
			role = d
		case "member_edit":
			edit = d
		case "member_get":
			get = d
		}
	}
	capFixed := func(d discordemu.BucketDef, t float64) float64 {
		return float64(d.Limit) * (math.Floor(t/(d.WindowSeconds*benchScale)) + 1)
	}
	capSliding := func(d discordemu.BucketDef, t float64) float64 {
		return float64(d.Limit) + math.Floor(t*float64(d.Limit)/(d.WindowSeconds*benchScale))
	}
	for t := 0.0; ; t += 0.001 {
		ce, cr := capSliding(edit, t), capFixed(role, t)
		if float64(n2) <= ce && float64(n1+n2) <= ce+cr && float64(n1+n2) <= capSliding(get, t) {
			return time.Duration(t * float64(time.Second))
		}
	}
}

func benchOnboard(b *testing.B, guilds, users int) {
	for range b.N {
		ecfg := discordemu.DefaultConfig()
		ecfg.TimeScale = benchScale
		var gs []tenants.Guild
		for j := 1; j <= guilds; j++ {
			gs = append(gs, tenants.Guild{ID: benchGuild(j)})
		}
		e := newEnvSetup(b, setup{emu: ecfg, fixture: benchFixture(guilds, users), guilds: gs, mapping: &benchMapping{guilds: guilds}})
		cfg := testConfig()
		cfg.GlobalRPS = 50 / benchScale
		cfg.GlobalWindow = time.Duration(float64(time.Second) * benchScale)
		cfg.Workers = 64
		cfg.BrakeMaxCount = 0
		r := e.start(cfg)
		// Wait for the preflight to pass, so it does not count.
		e.eventually("preflight", 10*time.Second, func() (bool, string) {
			return len(e.emu.Recorder().Requests(discordemu.RequestFilter{Route: "roles_list"})) == guilds, "no preflight yet"
		})
		seq := e.emu.Recorder().NextSeq()

		start := time.Now()
		for k := 1; k <= 4; k++ {
			e.putGroup(fmt.Sprintf("g%d", k), fmt.Sprintf("G%d", k))
		}
		// As an IdP pushes: each user, then that user's group memberships.
		for i := 1; i <= users; i++ {
			e.putUser(fmt.Sprintf("u%d", i), benchUser(i), true)
			for _, g := range benchGroups(i) {
				e.putMember("g"+g[1:], fmt.Sprintf("u%d", i), true)
			}
		}
		written := time.Since(start)
		e.eventually("convergence", 10*time.Minute, func() (bool, string) {
			for j := 1; j <= guilds; j++ {
				st, err := e.emu.Admin().State(e.ctx, benchGuild(j))
				if err != nil {
					return false, err.Error()
				}
				for i := 1; i <= users; i++ {
					m := st.Member(benchUser(i))
					got := slices.Clone(m.Roles)
					sort.Strings(got)
					if !slices.Equal(got, benchWant(j, i)) {
						return false, fmt.Sprintf("guild %d member %d has %v", j, i, got)
					}
				}
			}
			return true, ""
		})
		converged := time.Since(start)
		b.StopTimer()

		mutating, limited := 0, 0
		for _, rec := range e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq}) {
			if rec.Outcome.Status == 429 {
				limited++
				if limited <= 5 || limited%30 == 0 {
					b.Logf("429: %s %s scope=%v global=%v bucket=%+v gwc=%d at %s", rec.Method, rec.Route, rec.Outcome.Scope, rec.Outcome.Global, rec.Bucket, rec.GlobalWindowCount, rec.ReceivedAt.Format("05.000000"))
				}
			}
			if rec.Method != "GET" && rec.Outcome.Status < 300 {
				mutating++
			}
		}
		n1 := 0
		for i := 1; i <= users; i++ {
			if len(benchGroups(i)) == 0 {
				n1++
			}
		}
		minimum := guilds * users // every member needs at least one role
		ideal := minPlanTime(n1, users-n1)
		b.ReportMetric(float64(mutating)/float64(minimum), "calls/min")
		b.ReportMetric(converged.Seconds()/ideal.Seconds(), "time/ideal")
		b.ReportMetric(float64(limited), "429s")
		b.ReportMetric(converged.Seconds(), "converge-s")
		b.ReportMetric(ideal.Seconds(), "ideal-s")
		b.Logf("%d guild(s) × %d users: %d mutating calls (minimum %d), converged in %s (writes took %s; buckets allow %s), %d 429s; applier %+v",
			guilds, users, mutating, minimum, converged.Round(time.Millisecond), written.Round(time.Millisecond), ideal, limited, r.svc.Metrics().Counters)
		r.stop(b)
		b.StartTimer()
	}
}

func BenchmarkOnboard1000UsersOneGuild(b *testing.B)    { benchOnboard(b, 1, 1000) }
func BenchmarkOnboard1000UsersThreeGuilds(b *testing.B) { benchOnboard(b, 3, 1000) }

// BenchmarkIdleLatency measures, with the applier idle and no rate limit in
// the way, the time from a stored SCIM change to the Discord call it causes.
func BenchmarkIdleLatency(b *testing.B) {
	ecfg := discordemu.DefaultConfig()
	ecfg.Profile = "off"
	e := newEnv(b, func(c *discordemu.Config, _ *tenants.Guild) { *c = ecfg })
	cfg := testConfig()
	cfg.BrakeMaxCount = 0
	// Back-to-back samples would reach the global 50/s and measure its wait;
	// the emulator runs without limits here, so does the applier.
	cfg.GlobalRPS = 100000
	e.start(cfg)
	e.putGroup("g-eng", "Engineering")
	e.putUser("alice", memberAlice, true)
	e.waitRoles(memberAlice, roleStaff)
	e.waitIdle(cfg.Durable)
	var lat []time.Duration
	b.ResetTimer()
	for i := range max(b.N, 200) {
		seq := e.emu.Recorder().NextSeq()
		t0 := time.Now()
		e.putMember("g-eng", "alice", i%2 == 0)
		recs, err := e.emu.Recorder().Wait(e.ctx, discordemu.RequestFilter{SinceSeq: seq, UserID: memberAlice, Route: mutatingRoute(i%2 == 0)}, 1)
		if err != nil || len(recs) == 0 {
			b.Fatalf("no Discord call for change %d: %v", i, err)
		}
		lat = append(lat, recs[0].ReceivedAt.Sub(t0))
		e.waitIdle(cfg.Durable)
	}
	b.StopTimer()
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.50), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	b.Logf("idle latency over %d changes: p50 %.2fms p99 %.2fms", len(lat), p(0.5), p(0.99))
}

func mutatingRoute(add bool) string {
	if add {
		return "member_role_add"
	}
	return "member_role_remove"
}
