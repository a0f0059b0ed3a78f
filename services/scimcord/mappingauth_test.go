package scimcord_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/services/scimcord"
)

// The all-in-one's mapping port listens on loopback, where every local user
// reaches it: a call without the per-start token is refused, while ingest
// (admin explain) and the applier, which hold it, work.
func TestMappingPortRefusesCallsWithoutTheServiceToken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	sys, _ := startWith(t, func(c *scimcord.Config) { c.MappingAddr = addr })

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mc := mappingv1.NewMappingServiceClient(conn)
	if _, err := mc.ListRuleSets(ctx, &mappingv1.ListRuleSetsRequest{TenantId: "dev"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ListRuleSets without the token: %v, want Unauthenticated", err)
	}
	if _, err := mc.DeleteRuleSet(ctx, &mappingv1.DeleteRuleSetRequest{TenantId: "dev", GuildId: "1100000000000000000"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("DeleteRuleSet without the token: %v, want Unauthenticated", err)
	}

	// The services in the process hold the token: a SCIM user converges.
	scim(t, sys, "POST", "/Users", map[string]any{
		"schemas":  []string{"urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:discord:2.0:User"},
		"userName": "tokened@example.com", "active": true,
		"urn:ietf:params:scim:schemas:extension:discord:2.0:User": map[string]any{"userId": "1100000000000001002"},
	}, 201)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := sys.Emulator().Admin().State(ctx, "1100000000000000000")
		if err == nil {
			if m := st.Member("1100000000000001002"); m != nil && len(m.Roles) > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("member never got a role: the applier could not resolve through mapping (%v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
