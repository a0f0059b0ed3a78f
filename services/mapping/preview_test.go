package mapping_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/services/mapping"
)

// seedSCIM writes users, groups and memberships the way ingest stores them.
func seedSCIM(t *testing.T, js jetstream.JetStream, tenant string) {
	t.Helper()
	ctx := context.Background()
	st, err := eventbus.OpenStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, ev *eventv1.Event) {
		t.Helper()
		ev.TenantId = tenant
		if _, err := st.Put(ctx, key, ev, 0); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	user := func(id, name string, active, deleted bool, snapshot string) {
		op := eventv1.Operation_OPERATION_CREATE
		if deleted {
			op = eventv1.Operation_OPERATION_DELETE
		}
		put(eventbus.UserKey(tenant, id), &eventv1.Event{Kind: eventv1.ResourceKind_RESOURCE_KIND_USER, Op: op, ResourceId: id,
			Snapshot: []byte(snapshot),
			Resource: &eventv1.Event_User{User: &eventv1.User{Id: id, UserName: name, Active: active, Deleted: deleted, DiscordUserId: "11000000000000010" + id[1:]}}})
	}
	group := func(id, ext, name string) {
		put(eventbus.GroupKey(tenant, id), &eventv1.Event{Kind: eventv1.ResourceKind_RESOURCE_KIND_GROUP, Op: eventv1.Operation_OPERATION_CREATE, ResourceId: id,
			Resource: &eventv1.Event_Group{Group: &eventv1.Group{Id: id, ExternalId: ext, DisplayName: name}}})
	}
	member := func(g, u string, in bool) {
		put(eventbus.MemberKey(tenant, g, u), &eventv1.Event{Kind: eventv1.ResourceKind_RESOURCE_KIND_MEMBERSHIP, Op: eventv1.Operation_OPERATION_CREATE, ResourceId: g + "/" + u,
			Resource: &eventv1.Event_Membership{Membership: &eventv1.Membership{GroupId: g, UserId: u, Member: in}}})
	}
	user("u01", "alice", true, false, `{"id":"u01","userName":"alice","title":"Lead","active":true}`)
	user("u02", "bob", true, false, `{"id":"u02","userName":"bob","active":true}`)
	user("u03", "carol", false, false, `{"id":"u03","userName":"carol","active":false}`)
	user("u04", "dave", true, true, `{"id":"u04","userName":"dave"}`)
	group("g-eng", "00g-eng", "Engineering")
	group("g-design", "00g-design", "Design")
	member("g-eng", "u01", true)
	member("g-design", "u02", true)
	member("g-eng", "u03", true)
	member("g-eng", "u02", false) // removed from the group
	member("g-eng", "u04", true)
}

func names(rs []*mappingv1.Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.GetId() + r.GetName()
	}
	return out
}

func TestPreviewReportsTheBlastRadiusFromSCIMState(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	seedSCIM(t, js, "dev")
	_, c := startService(t, devConfig(t), mapping.Deps{JS: js})
	ctx := context.Background()
	cur, err := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		req           *mappingv1.PreviewRequest
		changes       []string // "user:+role,-role"
		unmanaged     []string
		newlyManaged  []string
		wantRoleCount int
	}{
		{
			name: "rule removed, CEL rule added",
			req: &mappingv1.PreviewRequest{Yaml: `rules:
  - name: engineering
    groups: [{display_name: Engineering}]
    roles: [{id: "1100000000000000101", name: Engineering}]
  - name: staff
    all_active_users: true
    roles: [{id: "1100000000000000103", name: Staff}]
  - name: leads
    when: 'has(user.title) && user.title == "Lead"'
    roles: [{id: "1100000000000000104", name: Moderator}]
`},
			changes:      []string{"u01:+1100000000000000104"},
			unmanaged:    []string{"1100000000000000102Design"},
			newlyManaged: []string{"1100000000000000104Moderator"},
		},
		{
			name: "group matched by id instead moves the role to the other group's members",
			req: &mappingv1.PreviewRequest{Yaml: `rules:
  - name: engineering
    groups: [{id: g-design}]
    roles: [{id: "1100000000000000101", name: Engineering}]
  - name: design
    groups: [{external_id: 00g-design}]
    roles: [{id: "1100000000000000102", name: Design}]
  - name: staff
    all_active_users: true
    roles: [{id: "1100000000000000103", name: Staff}]
`},
			changes: []string{"u01:-1100000000000000101", "u02:+1100000000000000101"},
		},
		{
			name:      "deleting the rule set unmanages every role and removes none",
			req:       &mappingv1.PreviewRequest{Delete: true},
			unmanaged: []string{"1100000000000000101Engineering", "1100000000000000102Design", "1100000000000000103Staff"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.req.TenantId, tc.req.GuildId = "dev", devGuild
			got, err := c.Preview(ctx, tc.req)
			if err != nil {
				t.Fatalf("Preview: %v", err)
			}
			if got.GetMembersScanned() != 3 || got.GetCurrentVersion() != cur.GetRuleSet().GetVersion() {
				t.Errorf("scanned %d at version %d, want 3 (deleted user excluded) at %d", got.GetMembersScanned(), got.GetCurrentVersion(), cur.GetRuleSet().GetVersion())
			}
			var changes []string
			for _, ch := range got.GetChanges() {
				var parts []string
				for _, r := range ch.GetGained() {
					parts = append(parts, "+"+r.GetId())
				}
				for _, r := range ch.GetLost() {
					parts = append(parts, "-"+r.GetId())
				}
				changes = append(changes, ch.GetUserId()+":"+strings.Join(parts, ","))
			}
			if !slices.Equal(changes, tc.changes) {
				t.Errorf("changes = %v, want %v", changes, tc.changes)
			}
			if u := names(got.GetUnmanaged()); !slices.Equal(u, tc.unmanaged) {
				t.Errorf("unmanaged = %v, want %v", u, tc.unmanaged)
			}
			if n := names(got.GetNewlyManaged()); !slices.Equal(n, tc.newlyManaged) {
				t.Errorf("newly managed = %v, want %v", n, tc.newlyManaged)
			}
		})
	}
	// Preview writes nothing.
	after, _ := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if after.GetRuleSet().GetVersion() != cur.GetRuleSet().GetVersion() {
		t.Error("Preview changed the stored version")
	}
	// A proposal that does not compile is refused like a put.
	_, err = c.Preview(ctx, &mappingv1.PreviewRequest{TenantId: "dev", GuildId: devGuild, Yaml: "rules: [{name: x, when: 'user.', roles: [{id: \"1100000000000000101\"}]}]"})
	if statusCode(err) != "InvalidArgument" {
		t.Errorf("bad proposal = %v, want InvalidArgument", err)
	}
}

func TestExplainSaysWhyForEveryManagedRole(t *testing.T) {
	t.Parallel()
	_, c := startService(t, devConfig(t), mapping.Deps{})
	ctx := context.Background()
	got, err := c.Explain(ctx, &mappingv1.ExplainRequest{Member: &mappingv1.ResolveRolesRequest{
		TenantId: "dev", GuildId: devGuild, UserId: "u1", Active: true,
		Groups: []*mappingv1.GroupRef{{Id: "g1", DisplayName: "engineering"}}}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		granted bool
		reason  string
	}{
		roleEng:    {true, `member of group "engineering" (id g1) matched by displayName="Engineering"`},
		roleDesign: {false, `not a member of any of the groups displayName="Design"`},
		roleStaff:  {true, "every active user gets it"},
	}
	if len(got.GetRoles()) != len(want) {
		t.Fatalf("roles = %v, want 3", got.GetRoles())
	}
	for _, r := range got.GetRoles() {
		w := want[r.GetRole().GetId()]
		if r.GetGranted() != w.granted || len(r.GetRules()) != 1 || r.GetRules()[0].GetReason() != w.reason {
			t.Errorf("role %s: granted %v rules %v; want %v %q", r.GetRole().GetId(), r.GetGranted(), r.GetRules(), w.granted, w.reason)
		}
	}
	if !slices.Equal(got.GetResult().GetRoleIds(), []string{roleEng, roleStaff}) {
		t.Errorf("result = %v", got.GetResult())
	}
	inactive, err := c.Explain(ctx, &mappingv1.ExplainRequest{Member: &mappingv1.ResolveRolesRequest{TenantId: "dev", GuildId: devGuild, Active: false}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range inactive.GetRoles() {
		if r.GetGranted() || !strings.Contains(r.GetRules()[0].GetReason(), "not active") {
			t.Errorf("inactive: %v", r)
		}
	}
}

func TestRolesByNameResolveAgainstTheGuild(t *testing.T) {
	t.Parallel()
	cfg := devConfig(t)
	cfg.RulesFile = writeRules(t, `tenants:
  - id: dev
    guilds:
      - id: "1100000000000000000"
        rules:
          - name: builders
            groups: [{display_name: Engineering}]
            roles: [{name: Builders}, {name: Ghost}]
          - name: staff
            all_active_users: true
            roles: [{id: "1100000000000000103"}]
`)
	_, c := startService(t, cfg, mapping.Deps{})
	member := func() *mappingv1.ResolveRolesRequest {
		return &mappingv1.ResolveRolesRequest{Active: true, Groups: []*mappingv1.GroupRef{{DisplayName: "Engineering"}}}
	}
	// Without the guild's roles, names come back for the caller to resolve.
	r := resolveDev(t, c, member())
	if !slices.Equal(r.GetRoleNames(), []string{"Builders", "Ghost"}) || !slices.Equal(r.GetRoleIds(), []string{roleStaff}) ||
		!slices.Equal(r.GetManagedRoleNames(), []string{"Builders", "Ghost"}) {
		t.Errorf("unresolved: %v", r)
	}
	// With them, Builders resolves; Ghost matches nothing and is reported.
	req := member()
	req.GuildRoles = []*mappingv1.GuildRole{{Id: "1100000000000000201", Name: "Builders"}, {Id: roleStaff, Name: "Staff"}}
	r = resolveDev(t, c, req)
	if !slices.Equal(r.GetRoleIds(), []string{roleStaff, "1100000000000000201"}) || len(r.GetRoleNames()) != 0 {
		t.Errorf("resolved: %v", r)
	}
	if p := r.GetRoleNameProblems(); len(p) != 1 || p[0].GetName() != "Ghost" || !strings.Contains(p[0].GetProblem(), "no role") {
		t.Errorf("problems = %v", p)
	}
	// Two roles with one name: ambiguous, neither granted nor managed.
	req = member()
	req.GuildRoles = []*mappingv1.GuildRole{{Id: "1100000000000000201", Name: "Builders"}, {Id: "1100000000000000202", Name: "Builders"}, {Id: "1100000000000000203", Name: "Ghost"}}
	r = resolveDev(t, c, req)
	if slices.Contains(r.GetManagedRoleIds(), "1100000000000000201") || len(r.GetRoleNameProblems()) != 1 ||
		!slices.Equal(r.GetRoleNameProblems()[0].GetMatchingRoleIds(), []string{"1100000000000000201", "1100000000000000202"}) {
		t.Errorf("ambiguous: %v", r)
	}
}

func TestResolveRolesBatchAndStreamAnswerInOrder(t *testing.T) {
	t.Parallel()
	_, c := startService(t, devConfig(t), mapping.Deps{})
	ctx := context.Background()
	reqs := []*mappingv1.ResolveRolesRequest{
		{TenantId: "dev", GuildId: devGuild, UserId: "a", Active: true, Groups: []*mappingv1.GroupRef{{DisplayName: "Design"}}},
		{TenantId: "dev", GuildId: devGuild, UserId: "b", Active: false},
		{TenantId: "dev", GuildId: devGuild, UserId: "c", Active: true},
	}
	want := [][]string{{roleDesign, roleStaff}, nil, {roleStaff}}
	batch, err := c.ResolveRolesBatch(ctx, &mappingv1.ResolveRolesBatchRequest{Members: reqs})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range batch.GetResults() {
		if r.GetUserId() != reqs[i].GetUserId() || !slices.Equal(r.GetRoleIds(), want[i]) {
			t.Errorf("batch[%d] = %v, want %v", i, r, want[i])
		}
	}
	if _, err := c.ResolveRolesBatch(ctx, &mappingv1.ResolveRolesBatchRequest{Members: []*mappingv1.ResolveRolesRequest{{TenantId: "dev", GuildId: "x"}}}); statusCode(err) != "InvalidArgument" {
		t.Errorf("bad batch = %v", err)
	}
	stream, err := c.ResolveRolesStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad := &mappingv1.ResolveRolesRequest{TenantId: "dev", GuildId: "bad"}
	for _, r := range append(reqs, bad) {
		if err := stream.Send(&mappingv1.ResolveRolesStreamRequest{Member: r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		got, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.GetResult().GetRoleIds(), want[i]) {
			t.Errorf("stream[%d] = %v, want %v", i, got, want[i])
		}
	}
	if got, err := stream.Recv(); err != nil || !strings.Contains(got.GetError(), "guild_id") {
		t.Errorf("bad member on the stream = %v, %v; want an error answer", got, err)
	}
}
