package mapping_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/services/mapping"
)

func TestEveryoneIsNeverGrantedOrManaged(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	_, c := startService(t, devConfig(t), mapping.Deps{JS: js})
	ctx := context.Background()
	cur, err := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if err != nil {
		t.Fatal(err)
	}
	// The name @everyone is refused when written.
	for _, name := range []string{"@everyone", "@Everyone", " @everyone"} {
		_, err := c.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, ExpectedVersion: cur.GetRuleSet().GetVersion(),
			Yaml: "rules: [{name: a, all_active_users: true, roles: [{name: \"" + name + "\"}]}]\n"})
		if statusCode(err) != "InvalidArgument" || !strings.Contains(err.Error(), "@everyone") {
			t.Errorf("put with role name %q = %v, want InvalidArgument naming @everyone", name, err)
		}
	}
	// A name never resolves to the guild's default role, whatever the guild
	// calls it: the guild id is never granted or managed.
	put, err := c.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, ExpectedVersion: cur.GetRuleSet().GetVersion(),
		Yaml: "rules: [{name: a, all_active_users: true, roles: [{name: Members}, {name: Staff}]}]\n"})
	if err != nil {
		t.Fatal(err)
	}
	_ = put
	for _, roles := range [][]*mappingv1.GuildRole{
		{{Id: devGuild, Name: "Members"}, {Id: roleStaff, Name: "Staff"}},
		{{Id: devGuild, Name: "@everyone"}, {Id: "1100000000000000201", Name: "@everyone"}, {Id: roleStaff, Name: "Staff"}},
	} {
		r := resolveDev(t, c, &mappingv1.ResolveRolesRequest{Active: true, GuildRoles: roles})
		if slices.Contains(r.GetRoleIds(), devGuild) || slices.Contains(r.GetManagedRoleIds(), devGuild) ||
			!slices.Equal(r.GetRoleIds(), []string{roleStaff}) || !slices.Equal(r.GetManagedRoleIds(), []string{roleStaff}) {
			t.Errorf("guild roles %v: resolve = %v, want only Staff granted and managed", roles, r)
		}
		ex, err := c.Explain(ctx, &mappingv1.ExplainRequest{Member: &mappingv1.ResolveRolesRequest{TenantId: "dev", GuildId: devGuild, Active: true, GuildRoles: roles}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ex.GetRoles() {
			if e.GetRole().GetId() == devGuild {
				t.Errorf("Explain resolves %v to the guild id", e)
			}
		}
	}
}

func TestUserJSONThatIsNotAnObjectIsInvalidArgument(t *testing.T) {
	t.Parallel()
	cfg := devConfig(t)
	cfg.RulesFile = writeRules(t, `tenants:
  - id: dev
    guilds:
      - id: "1100000000000000000"
        rules:
          - name: leads
            when: 'user.title == "Lead"'
            roles: [{id: "1100000000000000101"}]
`)
	_, c := startService(t, cfg, mapping.Deps{})
	ctx := context.Background()
	for _, doc := range []string{`[]`, `"str"`, `null`, `{`} {
		req := &mappingv1.ResolveRolesRequest{TenantId: "dev", GuildId: devGuild, UserId: "u", Active: true, UserJson: []byte(doc)}
		if _, err := c.ResolveRoles(ctx, req); statusCode(err) != "InvalidArgument" || !strings.Contains(err.Error(), "user_json") {
			t.Errorf("ResolveRoles(user_json %s) = %v, want InvalidArgument", doc, err)
		}
		if _, err := c.ResolveRolesBatch(ctx, &mappingv1.ResolveRolesBatchRequest{Members: []*mappingv1.ResolveRolesRequest{req}}); statusCode(err) != "InvalidArgument" || !strings.Contains(err.Error(), "members[0]") {
			t.Errorf("ResolveRolesBatch(user_json %s) = %v, want InvalidArgument", doc, err)
		}
		if _, err := c.Explain(ctx, &mappingv1.ExplainRequest{Member: req}); statusCode(err) != "InvalidArgument" {
			t.Errorf("Explain(user_json %s) = %v, want InvalidArgument", doc, err)
		}
	}
	// The stream answers the bad member with an error and goes on.
	stream, err := c.ResolveRolesStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{`[]`, `{"title":"Lead"}`} {
		if err := stream.Send(&mappingv1.ResolveRolesStreamRequest{Member: &mappingv1.ResolveRolesRequest{TenantId: "dev", GuildId: devGuild, Active: true, UserJson: []byte(doc)}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = stream.CloseSend()
	if got, err := stream.Recv(); err != nil || !strings.Contains(got.GetError(), "user_json") || got.GetResult() != nil {
		t.Errorf("stream, user_json []: %v, %v; want an error answer", got, err)
	}
	if got, err := stream.Recv(); err != nil || !slices.Equal(got.GetResult().GetRoleIds(), []string{roleEng}) {
		t.Errorf("stream, a lead: %v, %v", got, err)
	}
	// An object without the attribute is not an error: the rule does not match.
	r := resolveDev(t, c, &mappingv1.ResolveRolesRequest{Active: true, UserJson: []byte(`{}`)})
	if len(r.GetRoleIds()) != 0 {
		t.Errorf("user_json {}: %v, want no role", r)
	}
}

func TestPreviewListsMembersWhoseStoredUserIsNotAnObject(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	seedSCIM(t, js, "dev")
	ctx := context.Background()
	st, err := eventbus.OpenStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, eventbus.UserKey("dev", "u05"), &eventv1.Event{TenantId: "dev", Kind: eventv1.ResourceKind_RESOURCE_KIND_USER,
		Op: eventv1.Operation_OPERATION_CREATE, ResourceId: "u05", Snapshot: []byte(`["not","an","object"]`),
		Resource: &eventv1.Event_User{User: &eventv1.User{Id: "u05", UserName: "eve", Active: true}}}, 0); err != nil {
		t.Fatal(err)
	}
	svc, _ := startService(t, devConfig(t), mapping.Deps{JS: js})
	rep, err := svc.Preview(ctx, "dev", devGuild, []byte("rules: [{name: leads, when: 'user.title == \"Lead\"', roles: [{id: \"1100000000000000101\"}]}]\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Unresolvable, []string{"u05"}) {
		t.Errorf("Unresolvable = %v, want [u05]", rep.Unresolvable)
	}
	for _, c := range rep.Changes {
		if c.UserID == "u05" {
			t.Errorf("u05 reported as a change: %+v", c)
		}
	}
}
