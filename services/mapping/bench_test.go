package mapping_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/services/mapping"
)

// BenchmarkResolveRolesGRPC measures ResolveRoles over a real loopback gRPC
// connection against a guild with 1,000 rules: calls/s and p99 latency, with
// concurrent callers (as the applier's workers call it).
func BenchmarkResolveRolesGRPC(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("tenants:\n  - id: dev\n    guilds:\n      - id: \"1100000000000000000\"\n        rules:\n")
	sb.WriteString("          - name: staff\n            all_active_users: true\n            roles: [{id: \"1100000000000000103\"}]\n")
	for i := range 1000 {
		fmt.Fprintf(&sb, "          - name: r%d\n            groups: [{display_name: Group-%d}]\n            roles: [{id: \"%d\"}]\n", i, i, 1100000000000010000+i)
	}
	path := filepath.Join(b.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := mapping.DefaultConfig()
	cfg.RulesFile, cfg.GRPCAddr = path, "127.0.0.1:0"
	svc, err := mapping.New(cfg, mapping.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-svc.Ready()
	conn, err := grpc.NewClient(svc.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := mappingv1.NewMappingServiceClient(conn)
	req := &mappingv1.ResolveRolesRequest{TenantId: "dev", GuildId: "1100000000000000000", UserId: "u1", Active: true}
	for i := range 10 {
		req.Groups = append(req.Groups, &mappingv1.GroupRef{Id: fmt.Sprint("g", i), DisplayName: fmt.Sprint("Group-", i*97)})
	}
	if _, err := client.ResolveRoles(ctx, req); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.ResolveRoles(ctx, req)
			local = append(local, time.Since(t0))
			if err != nil || len(resp.GetRoleIds()) != 11 {
				b.Errorf("ResolveRoles = %v, %v", resp, err)
				return
			}
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "calls/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	}
}
