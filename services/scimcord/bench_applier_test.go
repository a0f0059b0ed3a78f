package scimcord_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/pkg/tenants"
	"github.com/scimcord/scimcord/services/scimcord"
)

// The applier's benchmarks of issue 5, through SCIM: the all-in-one runs
// (ingest, mapping, applier, embedded NATS, the emulator) and users are
// onboarded with SCIM HTTP requests, as an IdP pushes them: each user, then
// that user's group memberships (PATCH /Groups add members), 16 at a time.
// The emulator runs the realistic rate-limit table at time scale 0.01, and
// the applier's global limit is scaled with it. Run with `make bench`:
//
//	go test -run '^$' -bench ApplierThroughSCIM -benchtime 1x ./services/scimcord/

// benchSCIMScale is the emulator's time scale: every rate-limit window is 100× shorter.
const benchSCIMScale = 0.01

const (
	benchSCIMToken  = "bench-scim-token-not-a-secret"
	benchSCIMBotTok = "bench-bot-token"
	benchSCIMPush   = 16 // concurrent SCIM requests, as an IdP pushes
)

func benchSCIMGuild(j int) string    { return fmt.Sprintf("12000000000000%02d000", j) }
func benchSCIMRole(j, k int) string  { return fmt.Sprintf("12000000000000%02d%03d", j, k) }
func benchSCIMUser(i int) string     { return fmt.Sprintf("13000000000000%05d", i) }
func benchSCIMGroups(i int) []string { return [][]string{nil, {"G1"}, {"G1", "G2"}, {"G3", "G4"}}[i%4] }

// benchSCIMWant is what member i should have in guild j: role k for group
// Gk, role 5 for every active user.
func benchSCIMWant(j, i int) []string {
	out := []string{benchSCIMRole(j, 5)}
	for _, g := range benchSCIMGroups(i) {
		out = append(out, benchSCIMRole(j, int(g[1]-'0')))
	}
	sort.Strings(out)
	return out
}

// benchSCIMFiles writes the emulator fixture (guilds × users members), the
// mapping rules and the tenant file into dir.
func benchSCIMFiles(tb testing.TB, dir string, guilds, users int) (fixture, mapping, tenantsFile string) {
	tb.Helper()
	var fx strings.Builder
	fx.WriteString("applications:\n  - id: \"1100000000000000800\"\n    name: bench\n    members_intent: true\n    bot: {id: \"1100000000000000801\", username: bot, token: " + benchSCIMBotTok + "}\n")
	fx.WriteString("users:\n  - {id: \"1399999999999999999\", username: owner}\n")
	for i := 1; i <= users; i++ {
		fmt.Fprintf(&fx, "  - {id: %q, username: u%d}\n", benchSCIMUser(i), i)
	}
	fx.WriteString("guilds:\n")
	var mp, tn strings.Builder
	mp.WriteString("tenants:\n  - id: bench\n    guilds:\n")
	tn.WriteString("tenants:\n  - id: bench\n    token_sha256: [\"" + tenants.HashToken(benchSCIMToken) + "\"]\n    guilds:\n")
	for j := 1; j <= guilds; j++ {
		fmt.Fprintf(&fx, "  - id: %q\n    name: g%d\n    owner_id: \"1399999999999999999\"\n    everyone_permissions: \"0\"\n    roles:\n", benchSCIMGuild(j), j)
		for k := 1; k <= 5; k++ {
			fmt.Fprintf(&fx, "      - {key: r%d, id: %q, name: R%d, permissions: \"0\"}\n", k, benchSCIMRole(j, k), k)
		}
		fx.WriteString("    bots:\n      - {application_id: \"1100000000000000800\", permissions: [MANAGE_ROLES, KICK_MEMBERS, BAN_MEMBERS], position: top}\n    members:\n")
		for i := 1; i <= users; i++ {
			fmt.Fprintf(&fx, "      - {user_id: %q}\n", benchSCIMUser(i))
		}
		fmt.Fprintf(&mp, "      - id: %q\n        rules:\n", benchSCIMGuild(j))
		for k := 1; k <= 4; k++ {
			fmt.Fprintf(&mp, "          - {name: g%d, groups: [{display_name: G%d}], roles: [{id: %q}]}\n", k, k, benchSCIMRole(j, k))
		}
		fmt.Fprintf(&mp, "          - {name: all, all_active_users: true, roles: [{id: %q}]}\n", benchSCIMRole(j, 5))
		fmt.Fprintf(&tn, "      - {id: %q}\n", benchSCIMGuild(j))
	}
	fixture, mapping, tenantsFile = filepath.Join(dir, "guilds.yaml"), filepath.Join(dir, "mapping.yaml"), filepath.Join(dir, "tenants.yaml")
	for path, body := range map[string]string{fixture: fx.String(), mapping: mp.String(), tenantsFile: tn.String()} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return fixture, mapping, tenantsFile
}

// benchSCIMStart runs the all-in-one with the bench files; the emulator is
// switched to the benchmark's time scale once the system is ready.
func benchSCIMStart(b *testing.B, guilds, users int) *scimcord.System {
	b.Helper()
	dir := b.TempDir()
	fixture, mapping, tenantsFile := benchSCIMFiles(b, dir, guilds, users)
	cfg := scimcord.DefaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.HTTPAddr, cfg.EmulatorAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "off"
	cfg.FixtureFile, cfg.MappingFile, cfg.TenantsFile = fixture, mapping, tenantsFile
	cfg.GlobalRPS = 50 / benchSCIMScale
	cfg.GlobalWindow = time.Duration(float64(time.Second) * benchSCIMScale)
	cfg.EmulatorInMemory = true
	sys, err := scimcord.New(cfg, scimcord.Deps{Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	select {
	case <-sys.Ready():
	case err := <-done:
		cancel()
		b.Fatalf("system stopped before ready: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		b.Fatal("system not ready in 60s")
	}
	b.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				b.Errorf("system stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			b.Error("system did not stop within 30s")
		}
	})
	emu := sys.Emulator()
	// Let the applier's start-up preflight pass first, so it does not count.
	benchSCIMWait(b, "preflight", 30*time.Second, func() (bool, string) {
		n := len(emu.Recorder().Requests(discordemu.RequestFilter{Route: "roles_list"}))
		return n >= guilds, fmt.Sprintf("%d of %d guilds checked", n, guilds)
	})
	if err := emu.Admin().SetConfig(ctx, map[string]any{"profile": "realistic", "time_scale": benchSCIMScale}); err != nil {
		b.Fatalf("emulator time scale: %v", err)
	}
	return sys
}

// benchClient is a SCIM client for benchmarks (scimClient needs a *testing.T).
type benchClient struct {
	tb    testing.TB
	base  string
	token string
	hc    *http.Client
}

func newBenchClient(tb testing.TB, base string) benchClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 * benchSCIMPush
	return benchClient{tb: tb, base: base, token: benchSCIMToken, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c benchClient) do(method, path string, body any) (int, map[string]any) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			c.tb.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (c benchClient) mustDo(method, path string, body any, want ...int) map[string]any {
	c.tb.Helper()
	st, out := c.do(method, path, body)
	if !slices.Contains(want, st) {
		c.tb.Fatalf("%s %s: status %d, want %v; body %v", method, path, st, want, out)
	}
	return out
}

// benchSCIMWait polls cond until it holds or the deadline passes.
func benchSCIMWait(tb testing.TB, what string, d time.Duration, cond func() (bool, string)) {
	benchSCIMPoll(tb, what, d, 20*time.Millisecond, cond)
}

// benchSCIMPoll is benchSCIMWait with a polling interval (reading a large
// guild's state is not free).
func benchSCIMPoll(tb testing.TB, what string, d, every time.Duration, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s: %s", what, msg)
		}
		time.Sleep(every)
	}
}

// benchSCIMPushUsers onboards users 1..n through SCIM: each user (POST
// /Users with the Discord id), then that user's memberships (PATCH /Groups),
// benchSCIMPush users at a time. It returns the SCIM ids.
func benchSCIMPushUsers(b *testing.B, c benchClient, groups map[string]string, n int) []string {
	b.Helper()
	ids := make([]string, n+1)
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for range benchSCIMPush {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				st, u := c.do("POST", "/Users", userBody(fmt.Sprintf("u%d@example.com", i), benchSCIMUser(i)))
				if st != 201 {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("POST user %d: %d %v", i, st, u))
					mu.Unlock()
					continue
				}
				id := u["id"].(string)
				ids[i] = id
				for _, g := range benchSCIMGroups(i) {
					if st, out := c.do("PATCH", "/Groups/"+groups[g], patchOp("add", "members", []map[string]any{{"value": id}})); st != 200 && st != 204 {
						mu.Lock()
						failed = append(failed, fmt.Sprintf("PATCH group %s + user %d: %d %v", g, i, st, out))
						mu.Unlock()
					}
				}
			}
		}()
	}
	for i := 1; i <= n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if len(failed) > 0 {
		b.Fatalf("%d SCIM requests failed, first: %s", len(failed), failed[0])
	}
	return ids
}

// benchSCIMMinPlanTime is the time the emulator's realistic buckets allow for
// the minimum plan of one guild: n1 one-role changes (PUT, or PATCH when
// faster) and n2 multi-role changes (PATCH only), plus one GET per member,
// all buckets used in parallel, scaled.
func benchSCIMMinPlanTime(n1, n2 int) time.Duration {
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
		return float64(d.Limit) * (math.Floor(t/(d.WindowSeconds*benchSCIMScale)) + 1)
	}
	capSliding := func(d discordemu.BucketDef, t float64) float64 {
		return float64(d.Limit) + math.Floor(t*float64(d.Limit)/(d.WindowSeconds*benchSCIMScale))
	}
	for t := 0.0; ; t += 0.001 {
		ce, cr := capSliding(edit, t), capFixed(role, t)
		if float64(n2) <= ce && float64(n1+n2) <= ce+cr && float64(n1+n2) <= capSliding(get, t) {
			return time.Duration(t * float64(time.Second))
		}
	}
}

func benchSCIMGroupsCreate(b *testing.B, c benchClient) map[string]string {
	b.Helper()
	groups := map[string]string{}
	for k := 1; k <= 4; k++ {
		name := fmt.Sprintf("G%d", k)
		g := c.mustDo("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": name}, 201)
		groups[name] = g["id"].(string)
	}
	return groups
}

func benchSCIMOnboard(b *testing.B, guilds, users int) {
	for range b.N {
		b.StopTimer()
		sys := benchSCIMStart(b, guilds, users)
		emu := sys.Emulator()
		c := newBenchClient(b, sys.BaseURL())
		seq := emu.Recorder().NextSeq()
		b.StartTimer()
		start := time.Now()
		groups := benchSCIMGroupsCreate(b, c)
		benchSCIMPushUsers(b, c, groups, users)
		pushed := time.Since(start)
		// Converged = every member has its roles; the time is that of the last
		// mutating call, so the polling interval does not bias it.
		benchSCIMPoll(b, "convergence", 5*time.Minute, 250*time.Millisecond, func() (bool, string) {
			for j := 1; j <= guilds; j++ {
				st, err := emu.Admin().State(context.Background(), benchSCIMGuild(j))
				if err != nil {
					return false, err.Error()
				}
				for i := 1; i <= users; i++ {
					m := st.Member(benchSCIMUser(i))
					if m == nil {
						return false, fmt.Sprintf("member %d missing in guild %d", i, j)
					}
					got := slices.Clone(m.Roles)
					sort.Strings(got)
					if !slices.Equal(got, benchSCIMWant(j, i)) {
						return false, fmt.Sprintf("guild %d member %d has %v", j, i, got)
					}
				}
			}
			return true, ""
		})
		b.StopTimer()
		var mutating, limited, gets int
		var last time.Time
		for _, r := range emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq}) {
			if r.Outcome.Status == 429 {
				limited++
			}
			if r.Route == "member_get" {
				gets++
			}
			if r.Method != "GET" && strings.HasPrefix(r.Route, "member_") {
				mutating++
				if r.ReceivedAt.After(last) {
					last = r.ReceivedAt
				}
			}
		}
		converge := last.Sub(start)
		var n1, n2 int
		for i := 1; i <= users; i++ {
			if len(benchSCIMWant(1, i)) == 1 {
				n1++
			} else {
				n2++
			}
		}
		ideal := benchSCIMMinPlanTime(n1, n2)
		b.ReportMetric(float64(mutating)/float64(users*guilds), "calls/min-calls")
		b.ReportMetric(converge.Seconds()/ideal.Seconds(), "converge/ideal")
		b.ReportMetric(float64(limited), "429s")
		b.ReportMetric(float64(gets)/float64(users*guilds), "GETs/member")
		b.ReportMetric(converge.Seconds(), "converge-s")
		b.ReportMetric(ideal.Seconds(), "ideal-s")
		b.ReportMetric(pushed.Seconds(), "scim-push-s")
	}
}

// BenchmarkApplierThroughSCIM onboards 1,000 users with mixed role sets (¼
// one role, ¾ two or three) through SCIM into one guild and into three.
func BenchmarkApplierThroughSCIM(b *testing.B) {
	b.Run("1000 users 1 guild", func(b *testing.B) { benchSCIMOnboard(b, 1, 1000) })
	b.Run("1000 users 3 guilds", func(b *testing.B) { benchSCIMOnboard(b, 3, 1000) })
}

// BenchmarkApplierIdleLatencyThroughSCIM measures, with the system idle, the
// time from the SCIM response to the Discord call's arrival at the emulator
// (200 group membership changes, one at a time; emulator limits off). A call
// that arrives before the IdP has its response counts as 0.
func BenchmarkApplierIdleLatencyThroughSCIM(b *testing.B) {
	const users, changes = 10, 200
	for range b.N {
		b.StopTimer()
		sys := benchSCIMStart(b, 1, users)
		emu := sys.Emulator()
		if err := emu.Admin().SetConfig(context.Background(), map[string]any{"profile": "off"}); err != nil {
			b.Fatal(err)
		}
		c := newBenchClient(b, sys.BaseURL())
		groups := benchSCIMGroupsCreate(b, c)
		ids := benchSCIMPushUsers(b, c, groups, users)
		benchSCIMWait(b, "onboarding", 15*time.Second, func() (bool, string) {
			st, err := emu.Admin().State(context.Background(), benchSCIMGuild(1))
			if err != nil {
				return false, err.Error()
			}
			for i := 1; i <= users; i++ {
				if got := slices.Sorted(slices.Values(st.Member(benchSCIMUser(i)).Roles)); !slices.Equal(got, benchSCIMWant(1, i)) {
					return false, fmt.Sprintf("member %d has %v", i, got)
				}
			}
			return true, ""
		})
		// Members 4, 8, … are in no group: add them to G1 and remove them again.
		var fromResp, fromReq []time.Duration
		var idle []int
		for i := 4; i <= users; i += 4 {
			idle = append(idle, i)
		}
		b.StartTimer()
		for n := 0; n < changes; n++ {
			i := idle[n%len(idle)]
			op, route := "add", "member_role_add"
			if (n/len(idle))%2 == 1 {
				op, route = "remove", "member_role_remove"
			}
			seq := emu.Recorder().NextSeq()
			body := patchOp(op, "members", []map[string]any{{"value": ids[i]}})
			if op == "remove" {
				body = patchOp("remove", fmt.Sprintf("members[value eq %q]", ids[i]), nil)
			}
			t0 := time.Now()
			if st, out := c.do("PATCH", "/Groups/"+groups["G1"], body); st != 200 && st != 204 {
				b.Fatalf("PATCH group: %d %v", st, out)
			}
			t1 := time.Now()
			recs, err := emu.Admin().WaitRequests(context.Background(), discordemu.RequestFilter{SinceSeq: seq, UserID: benchSCIMUser(i), Route: route}, 1, 10*time.Second)
			if err != nil || len(recs) == 0 {
				b.Fatalf("change %d (%s member %d) never reached Discord: %v", n, op, i, err)
			}
			fromResp = append(fromResp, max(recs[0].ReceivedAt.Sub(t1), 0))
			fromReq = append(fromReq, recs[0].ReceivedAt.Sub(t0))
		}
		b.StopTimer()
		pct := func(ds []time.Duration, p float64) float64 {
			s := slices.Clone(ds)
			slices.Sort(s)
			return float64(s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)]) / float64(time.Millisecond)
		}
		b.ReportMetric(pct(fromResp, 0.50), "p50-ms")
		b.ReportMetric(pct(fromResp, 0.99), "p99-ms")
		b.ReportMetric(pct(fromReq, 0.50), "req-p50-ms")
		b.ReportMetric(pct(fromReq, 0.99), "req-p99-ms")
	}
}
