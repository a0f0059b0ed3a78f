package mapping_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/grpcauth"
	"github.com/scimcord/scimcord/services/mapping"
)

const (
	devGuild    = "1100000000000000000"
	roleEng     = "1100000000000000101"
	roleDesign  = "1100000000000000102"
	roleStaff   = "1100000000000000103"
	devRulesRel = "../../deploy/dev/mapping.yaml"
)

// writeRules writes a rules file into a temp dir and returns its path.
func writeRules(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startService runs a service on a loopback port until the test ends and
// returns it with a connected client.
func startService(t *testing.T, cfg mapping.Config, deps mapping.Deps) (*mapping.Service, mappingv1.MappingServiceClient) {
	t.Helper()
	cfg.GRPCAddr = "127.0.0.1:0"
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	svc, err := mapping.New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
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
	select {
	case <-svc.Ready():
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("service not ready after 10s")
	}
	conn, err := grpc.NewClient(svc.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpcauth.DialOption(cfg.Token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return svc, mappingv1.NewMappingServiceClient(conn)
}

func devConfig(t *testing.T) mapping.Config {
	t.Helper()
	cfg := mapping.DefaultConfig()
	cfg.RulesFile = devRulesRel
	return cfg
}

func TestResolveRolesOverGRPCWithDevRules(t *testing.T) {
	t.Parallel()
	_, client := startService(t, devConfig(t), mapping.Deps{})
	managed := []string{roleEng, roleDesign, roleStaff}
	tests := []struct {
		name string
		req  *mappingv1.ResolveRolesRequest
		want []string
	}{
		{"active member of Engineering gets Engineering and Staff",
			&mappingv1.ResolveRolesRequest{Active: true, Groups: []*mappingv1.GroupRef{{Id: "g1", DisplayName: "Engineering"}}},
			[]string{roleEng, roleStaff}},
		{"active member of both groups gets all three, sorted",
			&mappingv1.ResolveRolesRequest{Active: true, Groups: []*mappingv1.GroupRef{{DisplayName: "Design"}, {DisplayName: "Engineering"}}},
			[]string{roleEng, roleDesign, roleStaff}},
		{"display name matches case-insensitively",
			&mappingv1.ResolveRolesRequest{Active: true, Groups: []*mappingv1.GroupRef{{DisplayName: "design"}}},
			[]string{roleDesign, roleStaff}},
		{"active user without groups gets the every-active-user role",
			&mappingv1.ResolveRolesRequest{Active: true},
			[]string{roleStaff}},
		{"unknown group grants nothing extra",
			&mappingv1.ResolveRolesRequest{Active: true, Groups: []*mappingv1.GroupRef{{DisplayName: "Sales"}}},
			[]string{roleStaff}},
		{"inactive user gets no managed role",
			&mappingv1.ResolveRolesRequest{Active: false, Groups: []*mappingv1.GroupRef{{DisplayName: "Engineering"}}},
			nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.req.TenantId, tc.req.GuildId, tc.req.UserId = "dev", devGuild, "u1"
			resp, err := client.ResolveRoles(context.Background(), tc.req)
			if err != nil {
				t.Fatalf("ResolveRoles: %v", err)
			}
			if !slices.Equal(resp.GetRoleIds(), tc.want) {
				t.Errorf("role_ids = %v, want %v", resp.GetRoleIds(), tc.want)
			}
			if !slices.Equal(resp.GetManagedRoleIds(), managed) {
				t.Errorf("managed_role_ids = %v, want %v", resp.GetManagedRoleIds(), managed)
			}
			if resp.GetRulesVersion() == 0 {
				t.Error("rules_version = 0, want the version of the rule set")
			}
		})
	}
}

func TestResolveRolesUnknownGuildManagesNothing(t *testing.T) {
	t.Parallel()
	_, client := startService(t, devConfig(t), mapping.Deps{})
	resp, err := client.ResolveRoles(context.Background(), &mappingv1.ResolveRolesRequest{
		TenantId: "other", GuildId: devGuild, Active: true})
	if err != nil {
		t.Fatalf("ResolveRoles: %v", err)
	}
	if len(resp.GetRoleIds())+len(resp.GetManagedRoleIds()) != 0 || resp.GetRulesVersion() != 0 {
		t.Errorf("got %v, want an empty answer with version 0", resp)
	}
}

func TestResolveRolesRejectsMalformedRequests(t *testing.T) {
	t.Parallel()
	_, client := startService(t, devConfig(t), mapping.Deps{})
	for _, req := range []*mappingv1.ResolveRolesRequest{
		{TenantId: "", GuildId: devGuild},
		{TenantId: "dev", GuildId: "not-a-snowflake"},
		{TenantId: "dev.x", GuildId: devGuild},
	} {
		_, err := client.ResolveRoles(context.Background(), req)
		if code := statusCode(err); code != "InvalidArgument" {
			t.Errorf("ResolveRoles(%v) = %v, want InvalidArgument", req, err)
		}
	}
}

func TestHealthServesOnceReady(t *testing.T) {
	t.Parallel()
	svc, _ := startService(t, devConfig(t), mapping.Deps{})
	conn, err := grpc.NewClient(svc.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for _, name := range []string{"", mappingv1.MappingService_ServiceDesc.ServiceName} {
		waitFor(t, 5*time.Second, "health SERVING for "+name, func() bool {
			resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
			return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
		})
	}
}

func TestNewRejectsBadConfigAndRules(t *testing.T) {
	t.Parallel()
	bad := writeRules(t, "tenants:\n  - id: dev\n    guilds:\n      - id: \"1100000000000000000\"\n        rules:\n          - name: x\n            groups: [{display_name: A}]\n            roles: [{id: \"12\"}]\n")
	tests := []struct {
		name string
		mod  func(*mapping.Config)
	}{
		{"missing rules file", func(c *mapping.Config) { c.RulesFile = "" }},
		{"rules file that does not exist", func(c *mapping.Config) { c.RulesFile = filepath.Join(t.TempDir(), "nope.yaml") }},
		{"rules file with a bad role id", func(c *mapping.Config) { c.RulesFile = bad }},
		{"bad address", func(c *mapping.Config) { c.GRPCAddr = "no-port" }},
		{"zero shutdown timeout", func(c *mapping.Config) { c.ShutdownTimeout = 0 }},
		{"a service token under 16 characters", func(c *mapping.Config) { c.Token = "short" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := devConfig(t)
			tc.mod(&cfg)
			if _, err := mapping.New(cfg, mapping.Deps{}); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}

func TestManagedRolesListsTheTenantsRoles(t *testing.T) {
	t.Parallel()
	svc, _ := startService(t, devConfig(t), mapping.Deps{})
	got, err := svc.ManagedRoles(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping.Role{
		{ID: roleEng, Name: "Engineering", GuildID: devGuild},
		{ID: roleDesign, Name: "Design", GuildID: devGuild},
		{ID: roleStaff, Name: "Staff", GuildID: devGuild},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ManagedRoles = %v, want %v", got, want)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ = errors.New

func statusCode(err error) string {
	if err == nil {
		return "OK"
	}
	return status.Code(err).String()
}

func TestMetricsCountResolvesAndServeVersions(t *testing.T) {
	t.Parallel()
	svc, c := startService(t, devConfig(t), mapping.Deps{})
	for range 3 {
		resolveDev(t, c, &mappingv1.ResolveRolesRequest{Active: true})
	}
	_, _ = c.ResolveRoles(context.Background(), &mappingv1.ResolveRolesRequest{TenantId: "dev", GuildId: "x"})
	rec := httptest.NewRecorder()
	svc.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"scimcord_mapping_resolves_total 3\n",
		"scimcord_mapping_resolve_errors_total 1\n",
		`scimcord_mapping_rule_set_version{tenant="dev",guild="1100000000000000000"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// scrape returns the service's metrics text.
func scrape(t *testing.T, svc *mapping.Service) string {
	t.Helper()
	rec := httptest.NewRecorder()
	svc.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
