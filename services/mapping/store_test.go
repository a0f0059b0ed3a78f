package mapping_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/scimcord/scimcord/pkg/eventbus"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/natsembed"
	"github.com/scimcord/scimcord/services/mapping"
)

// startJS starts an embedded JetStream for the test (with the SCIM buckets).
func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eventbus.EnsureBuckets(ctx, js, eventbus.BucketConfig{}); err != nil {
		t.Fatal(err)
	}
	return js
}

const staffOnly = `rules:
  - name: staff
    all_active_users: true
    roles: [{id: "1100000000000000103", name: Staff}]
`

func resolveDev(t *testing.T, c mappingv1.MappingServiceClient, req *mappingv1.ResolveRolesRequest) *mappingv1.ResolveRolesResponse {
	t.Helper()
	req.TenantId, req.GuildId = "dev", devGuild
	resp, err := c.ResolveRoles(context.Background(), req)
	if err != nil {
		t.Fatalf("ResolveRoles: %v", err)
	}
	return resp
}

func TestStoreSeedsTheRulesFileAndServesItsVersion(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	_, c := startService(t, devConfig(t), mapping.Deps{JS: js})
	got, err := c.GetRuleSet(context.Background(), &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if err != nil {
		t.Fatalf("GetRuleSet: %v", err)
	}
	rs := got.GetRuleSet()
	if rs.GetVersion() == 0 || !strings.HasPrefix(rs.GetSource(), "file:") || rs.GetRuleCount() != 3 {
		t.Errorf("rule set = %v, want version > 0, file source, 3 rules", rs)
	}
	resp := resolveDev(t, c, &mappingv1.ResolveRolesRequest{Active: true, Groups: []*mappingv1.GroupRef{{DisplayName: "Engineering"}}})
	if resp.GetRulesVersion() != rs.GetVersion() || !slices.Equal(resp.GetRoleIds(), []string{roleEng, roleStaff}) {
		t.Errorf("resolve = %v, want Engineering+Staff at version %d", resp, rs.GetVersion())
	}
	list, err := c.ListRuleSets(context.Background(), &mappingv1.ListRuleSetsRequest{TenantId: "dev"})
	if err != nil || len(list.GetRuleSets()) != 1 || len(list.GetRuleSets()[0].GetManagedRoles()) != 3 {
		t.Errorf("ListRuleSets = %v, %v", list, err)
	}
}

func TestPutRuleSetIsCompareAndSet(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	_, c := startService(t, devConfig(t), mapping.Deps{JS: js})
	ctx := context.Background()
	cur, err := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if err != nil {
		t.Fatal(err)
	}
	v := cur.GetRuleSet().GetVersion()

	// Two writers race from the same version: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, Yaml: staffOnly, ExpectedVersion: v})
		}()
	}
	wg.Wait()
	won, aborted := 0, 0
	for _, err := range errs {
		switch statusCode(err) {
		case "OK":
			won++
		case "Aborted":
			aborted++
		default:
			t.Errorf("racing put: %v", err)
		}
	}
	if won != 1 || aborted != 1 {
		t.Fatalf("won %d, aborted %d; want 1 and 1", won, aborted)
	}
	// A stale version is refused; creating over a live rule set is refused.
	for _, ev := range []uint64{v, 0} {
		_, err := c.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, Yaml: staffOnly, ExpectedVersion: ev})
		if statusCode(err) != "Aborted" {
			t.Errorf("put at version %d = %v, want Aborted", ev, err)
		}
	}
	// The writer's own replica serves the new rules at once.
	resp := resolveDev(t, c, &mappingv1.ResolveRolesRequest{Active: true, Groups: []*mappingv1.GroupRef{{DisplayName: "Engineering"}}})
	if !slices.Equal(resp.GetRoleIds(), []string{roleStaff}) || resp.GetRulesVersion() <= v {
		t.Errorf("after put: %v", resp)
	}
}

func TestPutRuleSetRejectsInvalidRulesWithFieldViolations(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	_, c := startService(t, devConfig(t), mapping.Deps{JS: js})
	ctx := context.Background()
	cur, _ := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	bad := `rules:
  - name: dept
    when: 'user.enterprise.department =='
    roles: [{id: "1100000000000000101"}]
  - name: ok
    all_active_users: true
    roles: [{id: "1100000000000000103"}]
`
	_, err := c.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, Yaml: bad, ExpectedVersion: cur.GetRuleSet().GetVersion()})
	st, _ := status.FromError(err)
	if st.Code().String() != "InvalidArgument" {
		t.Fatalf("put = %v, want InvalidArgument", err)
	}
	var fv []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			fv = br.GetFieldViolations()
		}
	}
	if len(fv) != 1 || fv[0].GetField() != "rules[0].when" || !strings.Contains(fv[0].GetDescription(), "line 3: rule dept") {
		t.Errorf("field violations = %v, want one for rules[0].when at line 3", fv)
	}
	// Nothing reached the store.
	after, _ := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if after.GetRuleSet().GetVersion() != cur.GetRuleSet().GetVersion() {
		t.Errorf("version moved from %d to %d after a refused write", cur.GetRuleSet().GetVersion(), after.GetRuleSet().GetVersion())
	}
}

func TestHotReloadReachesEveryReplica(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	_, a := startService(t, devConfig(t), mapping.Deps{JS: js})
	_, b := startService(t, devConfig(t), mapping.Deps{JS: js})
	ctx := context.Background()
	cur, err := a.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if err != nil {
		t.Fatal(err)
	}
	put, err := a.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, Yaml: staffOnly, ExpectedVersion: cur.GetRuleSet().GetVersion()})
	if err != nil {
		t.Fatal(err)
	}
	want := put.GetRuleSet().GetVersion()
	start := time.Now()
	waitFor(t, 5*time.Second, "replica b to serve the new version", func() bool {
		r := resolveDev(t, b, &mappingv1.ResolveRolesRequest{Active: true, Groups: []*mappingv1.GroupRef{{DisplayName: "Engineering"}}})
		return r.GetRulesVersion() == want && slices.Equal(r.GetRoleIds(), []string{roleStaff})
	})
	t.Logf("replica b converged in %s", time.Since(start))

	// A delete reaches b too; b then manages nothing in the guild.
	if _, err := a.DeleteRuleSet(ctx, &mappingv1.DeleteRuleSetRequest{TenantId: "dev", GuildId: devGuild, ExpectedVersion: want}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "replica b to drop the deleted rule set", func() bool {
		r := resolveDev(t, b, &mappingv1.ResolveRolesRequest{Active: true})
		return r.GetRulesVersion() == 0 && len(r.GetManagedRoleIds()) == 0
	})
}

func TestSeedKeepsAPIEditsAndFollowsFileChanges(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	ctx := context.Background()
	second := mappingYAML("1200000000000000000", "1200000000000000101")
	cfg := devConfig(t)
	cfg.RulesFile = writeRules(t, second)
	svc1, c1 := startService(t, cfg, mapping.Deps{JS: js})
	_ = svc1
	got, err := c1.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: "1200000000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	// Edit through the API, then restart with the same file: the edit stays.
	put, err := c1.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: "1200000000000000000",
		Yaml: strings.ReplaceAll(staffOnly, "1100000000000000103", "1200000000000000999"), ExpectedVersion: got.GetRuleSet().GetVersion()})
	if err != nil {
		t.Fatal(err)
	}
	_, c2 := startService(t, cfg, mapping.Deps{JS: js})
	again, err := c2.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: "1200000000000000000"})
	if err != nil || again.GetRuleSet().GetVersion() != put.GetRuleSet().GetVersion() || again.GetRuleSet().GetSource() != "api" {
		t.Errorf("after restart: %v, %v; want the API version %d kept", again, err, put.GetRuleSet().GetVersion())
	}
	// A changed file replaces a file-sourced rule set (GitOps).
	cfg3 := devConfig(t)
	_, c3 := startService(t, cfg3, mapping.Deps{JS: js}) // seeds dev guild 1100… (file-sourced)
	v1, _ := c3.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	cfg4 := devConfig(t)
	cfg4.RulesFile = writeRules(t, "generation: 1\n"+mappingYAML(devGuild, roleDesign))
	_, c4 := startService(t, cfg4, mapping.Deps{JS: js})
	v2, err := c4.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if err != nil || v2.GetRuleSet().GetVersion() <= v1.GetRuleSet().GetVersion() || v2.GetRuleSet().GetRuleCount() != 1 {
		t.Errorf("changed file: %v, %v; want a newer version with 1 rule", v2, err)
	}
}

func TestSeedNeverRollsBackToAnOlderRulesFile(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	ctx := context.Background()
	get := func(c mappingv1.MappingServiceClient) *mappingv1.RuleSet {
		t.Helper()
		r, err := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetRuleSet()
	}
	gen2 := devConfig(t)
	gen2.RulesFile = writeRules(t, "generation: 2\n"+mappingYAML(devGuild, roleDesign))
	_, a := startService(t, gen2, mapping.Deps{JS: js})
	stored := get(a)

	// A replica started with an older file keeps serving the stored version.
	gen1 := devConfig(t)
	gen1.RulesFile = writeRules(t, "generation: 1\n"+mappingYAML(devGuild, roleEng))
	old, b := startService(t, gen1, mapping.Deps{JS: js})
	if got := get(b); got.GetVersion() != stored.GetVersion() || !strings.Contains(got.GetYaml(), roleDesign) {
		t.Errorf("after a replica started with generation 1: %v, want version %d (generation 2) kept", got, stored.GetVersion())
	}
	if r := resolveDev(t, b, &mappingv1.ResolveRolesRequest{Active: true}); !slices.Equal(r.GetRoleIds(), []string{roleDesign}) {
		t.Errorf("stale replica serves %v, want the stored %s", r.GetRoleIds(), roleDesign)
	}
	if m := scrape(t, old); !strings.Contains(m, "scimcord_mapping_seed_stale_total 1") {
		t.Errorf("metrics lack the stale seed:\n%s", m)
	}
	// An older file that no longer lists the guild does not delete it either.
	gen0 := devConfig(t)
	gen0.RulesFile = writeRules(t, mappingYAML("1200000000000000000", "1200000000000000101"))
	_, c := startService(t, gen0, mapping.Deps{JS: js})
	if got := get(c); got.GetVersion() != stored.GetVersion() {
		t.Errorf("after a replica started with generation 0 without the guild: %v, want version %d kept", got, stored.GetVersion())
	}

	// The same generation with different rules: the replica refuses to start.
	conflict := devConfig(t)
	conflict.RulesFile = writeRules(t, "generation: 2\n"+mappingYAML(devGuild, roleStaff))
	conflict.GRPCAddr = "127.0.0.1:0"
	svc, err := mapping.New(conflict, mapping.Deps{JS: js, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := svc.Run(rctx); !errors.Is(err, mapping.ErrGeneration) || !strings.Contains(err.Error(), "raise `generation:`") {
		t.Errorf("Run with a conflicting file of the same generation = %v, want ErrGeneration", err)
	}
	if got := get(a); got.GetVersion() != stored.GetVersion() {
		t.Errorf("after the refused replica: version %d, want %d", got.GetVersion(), stored.GetVersion())
	}

	// A newer generation replaces it; the same rules at a newer generation
	// record the generation, so the generation-2 file is then older too.
	gen3 := devConfig(t)
	gen3.RulesFile = writeRules(t, "generation: 3\n"+mappingYAML(devGuild, roleDesign))
	_, d := startService(t, gen3, mapping.Deps{JS: js})
	v3 := get(d).GetVersion()
	if v3 <= stored.GetVersion() {
		t.Errorf("generation 3 with the same rules: version %d, want it recorded (> %d)", v3, stored.GetVersion())
	}
	gen2b := devConfig(t)
	gen2b.RulesFile = writeRules(t, "generation: 2\n"+mappingYAML(devGuild, roleStaff))
	_, e := startService(t, gen2b, mapping.Deps{JS: js}) // older now: starts, keeps generation 3
	if got := get(e); got.GetVersion() != v3 {
		t.Errorf("generation 2 after generation 3: version %d, want %d", got.GetVersion(), v3)
	}
}

// mappingYAML is a rules file with one guild and one all-active rule.
func mappingYAML(guild, role string) string {
	return "tenants:\n  - id: dev\n    guilds:\n      - id: \"" + guild + "\"\n        rules:\n          - name: everyone\n            all_active_users: true\n            roles: [{id: \"" + role + "\"}]\n"
}

func TestAdminWritesWithoutAStoreAreRefused(t *testing.T) {
	t.Parallel()
	_, c := startService(t, devConfig(t), mapping.Deps{})
	_, err := c.PutRuleSet(context.Background(), &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, Yaml: staffOnly, ExpectedVersion: 1})
	if statusCode(err) != "FailedPrecondition" {
		t.Errorf("put without store = %v, want FailedPrecondition", err)
	}
	_, err = c.GetRuleSet(context.Background(), &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: "1200000000000000000"})
	if statusCode(err) != "NotFound" {
		t.Errorf("get unknown = %v, want NotFound", err)
	}
}

var _ = errors.Is

func TestServiceWaitsForJetStreamAtStart(t *testing.T) {
	t.Parallel()
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.URL(), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ns.Shutdown() // NATS is down when the service starts
	cfg := devConfig(t)
	cfg.GRPCAddr = "127.0.0.1:0"
	svc, err := mapping.New(cfg, mapping.Deps{JS: js, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 5*time.Second, "the gRPC listener", func() bool { return svc.Addr() != "" })
	select {
	case <-svc.Ready():
		t.Fatal("ready without JetStream")
	default:
	}
	conn, err := grpc.NewClient(svc.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = mappingv1.NewMappingServiceClient(conn).ResolveRoles(ctx, &mappingv1.ResolveRolesRequest{TenantId: "dev", GuildId: devGuild, Active: true})
	if statusCode(err) != "Unavailable" {
		t.Errorf("ResolveRoles before the rules are loaded = %v, want Unavailable", err)
	}
	if err := ns.Restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-svc.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("not ready 15s after JetStream came back")
	}
	roles, err := svc.ManagedRoles(ctx, "dev")
	if err != nil || len(roles) != 3 {
		t.Errorf("ManagedRoles = %v, %v", roles, err)
	}
}

func TestReplicasConvergeAfterNATSRestart(t *testing.T) {
	t.Parallel()
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	connect := func() jetstream.JetStream {
		nc, err := nats.Connect(ns.URL(), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	_, a := startService(t, devConfig(t), mapping.Deps{JS: connect()})
	_, b := startService(t, devConfig(t), mapping.Deps{JS: connect()})
	ns.Shutdown()
	if err := ns.Restart(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var put *mappingv1.PutRuleSetResponse
	waitFor(t, 10*time.Second, "a write through replica a after the restart", func() bool {
		cur, err := a.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
		if err != nil {
			return false
		}
		put, err = a.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, Yaml: staffOnly, ExpectedVersion: cur.GetRuleSet().GetVersion()})
		return err == nil
	})
	waitFor(t, 10*time.Second, "replica b to serve the version written after the restart", func() bool {
		r := resolveDev(t, b, &mappingv1.ResolveRolesRequest{Active: true})
		return r.GetRulesVersion() == put.GetRuleSet().GetVersion()
	})
}

func TestGetRuleSetYAMLCanBePutBack(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	_, c := startService(t, devConfig(t), mapping.Deps{JS: js})
	ctx := context.Background()
	got, err := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if err != nil {
		t.Fatal(err)
	}
	y := got.GetRuleSet().GetYaml()
	if !strings.Contains(y, "display_name: Engineering") || strings.Contains(y, "id: \"1100000000000000000\"") {
		t.Errorf("yaml:\n%s", y)
	}
	put, err := c.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, Yaml: y, ExpectedVersion: got.GetRuleSet().GetVersion()})
	if err != nil {
		t.Fatalf("put back: %v", err)
	}
	if put.GetRuleSet().GetYaml() != y || put.GetRuleSet().GetSource() != "api" || put.GetRuleSet().GetVersion() <= got.GetRuleSet().GetVersion() {
		t.Errorf("put back = %v", put.GetRuleSet())
	}
	// Deleting needs the version; then the guild manages nothing and Get says NotFound.
	if _, err := c.DeleteRuleSet(ctx, &mappingv1.DeleteRuleSetRequest{TenantId: "dev", GuildId: devGuild}); statusCode(err) != "InvalidArgument" {
		t.Errorf("delete without version = %v", err)
	}
	if _, err := c.DeleteRuleSet(ctx, &mappingv1.DeleteRuleSetRequest{TenantId: "dev", GuildId: devGuild, ExpectedVersion: put.GetRuleSet().GetVersion()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild}); statusCode(err) != "NotFound" {
		t.Errorf("get after delete = %v", err)
	}
	// Re-creating over the tombstone uses expected_version 0.
	if _, err := c.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, Yaml: y}); err != nil {
		t.Errorf("re-create: %v", err)
	}
}
