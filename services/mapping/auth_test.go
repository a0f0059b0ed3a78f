package mapping_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/grpcauth"
	"github.com/scimcord/scimcord/services/mapping"
)

const serviceToken = "mapping-service-token-for-tests"

func TestTheTokenGuardsEveryMappingServiceCall(t *testing.T) {
	t.Parallel()
	cfg := devConfig(t)
	cfg.Token = serviceToken
	svc, authed := startService(t, cfg, mapping.Deps{JS: startJS(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := authed.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if err != nil {
		t.Fatalf("GetRuleSet with the token: %v", err)
	}

	dial := func(opts ...grpc.DialOption) *grpc.ClientConn {
		conn, err := grpc.NewClient(svc.Addr(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	for _, c := range []struct {
		name string
		conn *grpc.ClientConn
	}{
		{"without a token", dial()},
		{"with a wrong token", dial(grpcauth.DialOption("not-the-mapping-token"))},
	} {
		t.Run(c.name, func(t *testing.T) {
			desc := mappingv1.MappingService_ServiceDesc
			// Every method, present and future: an empty message decodes as any request.
			for _, m := range desc.Methods {
				method := "/" + desc.ServiceName + "/" + m.MethodName
				err := c.conn.Invoke(ctx, method, &mappingv1.ListRuleSetsRequest{}, &mappingv1.ListRuleSetsResponse{})
				if status.Code(err) != codes.Unauthenticated {
					t.Errorf("%s: %v, want Unauthenticated", method, err)
				}
				if err != nil && strings.Contains(err.Error(), serviceToken[:10]) {
					t.Errorf("%s: the error echoes the token: %v", method, err)
				}
			}
			for _, sd := range desc.Streams {
				method := "/" + desc.ServiceName + "/" + sd.StreamName
				st, err := c.conn.NewStream(ctx, &sd, method)
				if err == nil {
					_ = st.SendMsg(&mappingv1.ResolveRolesStreamRequest{})
					_ = st.CloseSend()
					err = st.RecvMsg(&mappingv1.ResolveRolesStreamResponse{})
				}
				if status.Code(err) != codes.Unauthenticated {
					t.Errorf("%s: %v, want Unauthenticated", method, err)
				}
			}
			// A real rewrite of the policy is refused too.
			other := mappingv1.NewMappingServiceClient(c.conn)
			_, err := other.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild,
				Yaml: "rules: []", ExpectedVersion: before.GetRuleSet().GetVersion()})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("PutRuleSet: %v, want Unauthenticated", err)
			}
			if _, err := other.DeleteRuleSet(ctx, &mappingv1.DeleteRuleSetRequest{TenantId: "dev", GuildId: devGuild}); status.Code(err) != codes.Unauthenticated {
				t.Errorf("DeleteRuleSet: %v, want Unauthenticated", err)
			}
			// Health answers without the token (kubelet probes).
			if _, err := healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("health Check: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		// The refused PutRuleSet changed nothing.
		after, err := authed.GetRuleSet(context.Background(), &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
		if err != nil || after.GetRuleSet().GetVersion() != before.GetRuleSet().GetVersion() || after.GetRuleSet().GetYaml() != before.GetRuleSet().GetYaml() {
			t.Errorf("rule set after the refused calls: version %d (was %d), err %v", after.GetRuleSet().GetVersion(), before.GetRuleSet().GetVersion(), err)
		}
	})

	// With the token every call works as before.
	resp, err := authed.ResolveRoles(ctx, &mappingv1.ResolveRolesRequest{TenantId: "dev", GuildId: devGuild, UserId: "u1", Active: true})
	if err != nil || len(resp.GetRoleIds()) == 0 {
		t.Fatalf("ResolveRoles with the token: %v %v", resp, err)
	}
}
