package applier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/natsembed"
	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// Fixed ids of deploy/dev/guild.yaml.
const (
	guildID     = "1100000000000000000"
	roleEng     = "1100000000000000101"
	roleDesign  = "1100000000000000102"
	roleStaff   = "1100000000000000103"
	roleMod     = "1100000000000000104"
	botToken    = "emu-dev-bot-token"
	tenantID    = "dev"
	ownerID     = "1100000000000000900"
	memberAlice = "1100000000000001001"
	memberJudy  = "1100000000000001010" // has the unmanaged Moderator role
)

func member(n int) string { return fmt.Sprintf("11000000000000010%02d", n) }

// testMapping is a small in-test MappingService: group display name → role,
// and every active user gets Staff.
type testMapping struct {
	mappingv1.UnimplementedMappingServiceServer
	mu    sync.Mutex
	rules map[string]string // group display name → role id
	all   string            // role of every active user
	calls int
	// refuse makes ResolveRoles answer InvalidArgument (an unknown guild).
	refuse bool
	// version is the rules version answered (0 means 1).
	version uint64
	// refuseCode, when set, is the gRPC code every ResolveRoles answers.
	refuseCode codes.Code
	// users counts the calls per SCIM user id.
	users map[string]int
	// onUser, when set, sees every request's user JSON (under mu).
	onUser func(userJSON []byte)
	// refuseUsers are SCIM user ids answered InvalidArgument.
	refuseUsers map[string]bool
	// before, when set, sees every request first (outside mu): a slow or
	// eventful mapping answer.
	before func(req *mappingv1.ResolveRolesRequest)
}

func (m *testMapping) ResolveRoles(_ context.Context, req *mappingv1.ResolveRolesRequest) (*mappingv1.ResolveRolesResponse, error) {
	m.mu.Lock()
	before := m.before
	m.mu.Unlock()
	if before != nil {
		before(req)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.users == nil {
		m.users = map[string]int{}
	}
	m.users[req.GetUserId()]++
	if m.onUser != nil {
		m.onUser(req.GetUserJson())
	}
	if m.refuseCode != codes.OK {
		return nil, status.Errorf(m.refuseCode, "refused with %s", m.refuseCode)
	}
	if m.refuse {
		return nil, status.Errorf(codes.InvalidArgument, "guild %s has no rules", req.GetGuildId())
	}
	if m.refuseUsers[req.GetUserId()] {
		return nil, status.Errorf(codes.InvalidArgument, "user %s is refused", req.GetUserId())
	}
	managed := []string{m.all}
	for _, r := range m.rules {
		managed = append(managed, r)
	}
	sort.Strings(managed)
	managed = slices.Compact(managed)
	var roles []string
	if req.GetActive() {
		roles = append(roles, m.all)
		for _, g := range req.GetGroups() {
			if r, ok := m.rules[g.GetDisplayName()]; ok {
				roles = append(roles, r)
			}
		}
	}
	sort.Strings(roles)
	return &mappingv1.ResolveRolesResponse{RoleIds: slices.Compact(roles), ManagedRoleIds: managed, RulesVersion: max(m.version, 1)}, nil
}

// env is one test's real components: embedded NATS, the emulator with the
// dev fixture, a loopback gRPC mapping server and the store.
type env struct {
	t       testing.TB
	ctx     context.Context
	ns      *natsembed.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	store   *eventbus.Store
	emu     *discordemu.Emulator
	mapping *testMapping
	client  mappingv1.MappingServiceClient
	tenants *tenants.Set
	// mappingAddr is the loopback address of the mapping server.
	mappingAddr string
	guilds      []tenants.Guild
}

type envOpt func(*discordemu.Config, *tenants.Guild)

// setup describes a custom environment (benchmarks).
type setup struct {
	emu     discordemu.Config
	fixture []byte
	guilds  []tenants.Guild
	mapping mappingv1.MappingServiceServer
}

func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	fixture, err := os.ReadFile("../../deploy/dev/guild.yaml")
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	su := setup{emu: discordemu.DefaultConfig(), fixture: fixture}
	g := tenants.Guild{ID: guildID}
	for _, o := range opts {
		o(&su.emu, &g)
	}
	su.guilds = []tenants.Guild{g}
	return newEnvSetup(t, su)
}

func newEnvSetup(t testing.TB, su setup) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	if err := eventbus.EnsureBuckets(ctx, js, eventbus.BucketConfig{}); err != nil {
		t.Fatalf("buckets: %v", err)
	}
	store, err := eventbus.OpenStore(ctx, js)
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	emu, err := discordemu.New(su.emu)
	if err != nil {
		t.Fatalf("emulator: %v", err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	if err := emu.LoadFixture(su.fixture); err != nil {
		t.Fatalf("load fixture: %v", err)
	}
	// Every test, whatever it provokes (403s, a revoked token, injected
	// 429s), stays far below the invalid-request line that gets a bot's IP
	// banned by Cloudflare (10,000 per 10 minutes, discord-api-facts §8.6).
	t.Cleanup(func() {
		for id, im := range emu.Recorder().Metrics().Identities {
			if im.Invalid > maxInvalidPerTest {
				t.Errorf("discordemu identity %s: %d invalid requests (401/403/429) in one test, bound %d (the ban line is 10,000 per 10 minutes)", id, im.Invalid, maxInvalidPerTest)
			}
		}
	})

	tm := &testMapping{rules: map[string]string{"Engineering": roleEng, "Design": roleDesign}, all: roleStaff}
	var srv mappingv1.MappingServiceServer = tm
	if su.mapping != nil {
		srv = su.mapping
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	gs := grpc.NewServer()
	mappingv1.RegisterMappingServiceServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial mapping: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	ts, err := tenants.New(&tenants.Tenant{ID: tenantID, TokenSHA256: []string{tenants.HashToken("t")}, Guilds: su.guilds})
	if err != nil {
		t.Fatalf("tenants: %v", err)
	}
	return &env{t: t, ctx: ctx, ns: ns, nc: nc, js: js, store: store, emu: emu, mapping: tm,
		client: mappingv1.NewMappingServiceClient(conn), tenants: ts, mappingAddr: ln.Addr().String(), guilds: su.guilds}
}

// maxInvalidPerTest bounds the invalid requests (401, 403, 429) any one
// test may cause: 0.2 % of Discord's ban line. The worst test today (a
// provoked 50013 plus its replay) causes 3; a retry storm causes hundreds.
const maxInvalidPerTest = 20

// testConfig is DefaultConfig for tests: no listener, short waits.
func testConfig() Config {
	c := DefaultConfig()
	c.HTTPAddr = ""
	c.RetryBase = 50 * time.Millisecond
	c.RetryMax = 500 * time.Millisecond
	c.ShutdownTimeout = 5 * time.Second
	return c
}

// applierRun is a running applier.
type applierRun struct {
	svc    *Service
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (r *applierRun) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("applier run: %v", r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("applier did not stop")
	}
}

func (e *env) start(cfg Config) *applierRun {
	e.t.Helper()
	return e.startLogged(cfg, testLogger(e.t))
}

// startLogged starts an applier that logs to log.
func (e *env) startLogged(cfg Config, log *slog.Logger) *applierRun {
	e.t.Helper()
	tp, err := telemetry.NewProvider(e.ctx, "scimcord-applier", telemetry.Config{})
	if err != nil {
		e.t.Fatalf("tracer provider: %v", err)
	}
	svc, err := New(cfg, Deps{
		JS: e.js, Tenants: e.tenants, Mapping: e.client, BotToken: botToken,
		HTTPClient: e.emu.HTTPClient(), Logger: log, TracerProvider: tp,
	})
	if err != nil {
		e.t.Fatalf("new applier: %v", err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	r := &applierRun{svc: svc, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = svc.Run(ctx); close(r.done) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
		}
	})
	return r
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// put writes a record as ingest would: compare-and-set on the current revision.
func (e *env) put(key string, ev *eventv1.Event) {
	e.t.Helper()
	var rev uint64
	op := eventv1.Operation_OPERATION_CREATE
	if rec, err := e.store.Get(e.ctx, key); err == nil {
		rev = rec.Revision
		op = eventv1.Operation_OPERATION_UPDATE
		ev.Version = rec.Event.GetVersion() + 1
	} else if !errors.Is(err, eventbus.ErrNotFound) {
		e.t.Fatalf("get %s: %v", key, err)
	} else {
		ev.Version = 1
	}
	if ev.Op == eventv1.Operation_OPERATION_UNSPECIFIED {
		ev.Op = op
	}
	ev.TenantId = tenantID
	ev.Time = timestamppb.Now()
	if _, err := e.store.Put(e.ctx, key, ev, rev); err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
}

func (e *env) putUser(id, discordID string, active bool) {
	e.t.Helper()
	e.putUserSnapshot(id, discordID, active, []byte(fmt.Sprintf(`{"id":%q,"userName":%q,"active":%v}`, id, id+"@example.com", active)))
}

// putUserSnapshot writes a user with the given stored SCIM JSON.
func (e *env) putUserSnapshot(id, discordID string, active bool, snapshot []byte) {
	e.t.Helper()
	e.put(eventbus.UserKey(tenantID, id), &eventv1.Event{Kind: eventv1.ResourceKind_RESOURCE_KIND_USER, ResourceId: id,
		Snapshot: snapshot,
		Resource: &eventv1.Event_User{User: &eventv1.User{Id: id, UserName: id + "@example.com", Active: active, DiscordUserId: discordID}}})
}

func (e *env) deleteUser(id, discordID string) {
	e.t.Helper()
	e.put(eventbus.UserKey(tenantID, id), &eventv1.Event{Kind: eventv1.ResourceKind_RESOURCE_KIND_USER, ResourceId: id,
		Op:       eventv1.Operation_OPERATION_DELETE,
		Resource: &eventv1.Event_User{User: &eventv1.User{Id: id, UserName: id + "@example.com", Active: true, DiscordUserId: discordID, Deleted: true}}})
}

func (e *env) putGroup(id, name string) {
	e.t.Helper()
	e.put(eventbus.GroupKey(tenantID, id), &eventv1.Event{Kind: eventv1.ResourceKind_RESOURCE_KIND_GROUP, ResourceId: id,
		Resource: &eventv1.Event_Group{Group: &eventv1.Group{Id: id, DisplayName: name}}})
}

func (e *env) putMember(groupID, userID string, isMember bool) {
	e.t.Helper()
	e.put(eventbus.MemberKey(tenantID, groupID, userID), &eventv1.Event{Kind: eventv1.ResourceKind_RESOURCE_KIND_MEMBERSHIP,
		ResourceId: groupID + "/" + userID,
		Resource:   &eventv1.Event_Membership{Membership: &eventv1.Membership{GroupId: groupID, UserId: userID, Member: isMember}}})
}

// roles returns a member's roles from the emulator's state, sorted (nil if not a member).
func (e *env) roles(discordID string) []string {
	e.t.Helper()
	st, err := e.emu.Admin().State(e.ctx, guildID)
	if err != nil {
		e.t.Fatalf("state: %v", err)
	}
	m := st.Member(discordID)
	if m == nil {
		return nil
	}
	rs := slices.Clone(m.Roles)
	sort.Strings(rs)
	return rs
}

// eventually polls cond until it holds or the deadline passes.
func (e *env) eventually(what string, d time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRoles waits until the member has exactly want (sorted).
func (e *env) waitRoles(discordID string, want ...string) {
	e.t.Helper()
	sort.Strings(want)
	e.eventually("roles of "+discordID, 20*time.Second, func() (bool, string) {
		got := e.roles(discordID)
		return slices.Equal(got, want), fmt.Sprintf("roles %v, want %v", got, want)
	})
}

// waitState waits for a member's sync state.
func (e *env) waitState(r *applierRun, user string, want State) Status {
	e.t.Helper()
	var st Status
	e.eventually("status of "+user, 20*time.Second, func() (bool, string) {
		var err error
		st, err = r.svc.Status(e.ctx, tenantID, guildID, user)
		if err != nil {
			return false, err.Error()
		}
		return st.State == want, fmt.Sprintf("state %s (%s), want %s", st.State, st.Detail, want)
	})
	return st
}

// waitIdle waits until the durable consumer has no pending or unacked message.
func (e *env) waitIdle(durable string) {
	e.t.Helper()
	e.eventually("consumer idle", 20*time.Second, func() (bool, string) {
		c, err := e.js.Consumer(e.ctx, eventbus.ResourceStream, durable)
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(e.ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.NumPending == 0 && info.NumAckPending == 0,
			fmt.Sprintf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
	})
}

// mutations counts the mutating member calls the emulator received for a user.
func (e *env) mutations(discordID string) map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, r := range e.emu.Recorder().Requests(discordemu.RequestFilter{UserID: discordID}) {
		if r.Method != "GET" {
			out[r.Route]++
		}
	}
	return out
}

func joined(xs ...string) string { return strings.Join(xs, ",") }

func fmtUser(i int) string { return fmt.Sprintf("u%d", i) }

func discordemuFilterSince(seq int64, userID string) discordemu.RequestFilter {
	return discordemu.RequestFilter{SinceSeq: seq, UserID: userID}
}

func sortedRoles(rs []string) []string { out := slices.Clone(rs); sort.Strings(out); return out }

func equal(a, b []string) bool { return slices.Equal(a, b) }

func groupDeleted(id, name string) *eventv1.Event {
	return &eventv1.Event{Kind: eventv1.ResourceKind_RESOURCE_KIND_GROUP, ResourceId: id, Op: eventv1.Operation_OPERATION_DELETE,
		Resource: &eventv1.Event_Group{Group: &eventv1.Group{Id: id, DisplayName: name, Deleted: true}}}
}
