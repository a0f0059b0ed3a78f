package helm

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scimcord/scimcord/services/mapping"
)

// TestMappingProbesWhileNATSIsDown runs the real mapping service with the
// rendered rules while NATS is unreachable (a slow or restarting NATS) and asks
// its gRPC health exactly what the rendered probes ask: liveness and startup
// must be SERVING (no restart loop), readiness NOT_SERVING (no traffic yet).
func TestMappingProbesWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	m := render(t, "-f", chartDir+"/ci/okta-full.yaml")
	var rules string
	for _, cm := range m.ConfigMaps {
		if v, ok := cm.Data["mapping.yaml"]; ok {
			rules = v
		}
	}
	if rules == "" {
		t.Fatal("okta-full renders no rules ConfigMap")
	}
	rulesFile := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(rulesFile, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}

	// A NATS that is not there: the client keeps trying in the background.
	nc, err := nats.Connect("nats://127.0.0.1:1", nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := mapping.DefaultConfig()
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.RulesFile = rulesFile
	svc, err := mapping.New(cfg, mapping.Deps{JS: js, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(t.Context()) }()
	t.Cleanup(func() {
		// t.Context is cancelled before Cleanup runs.
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("mapping did not stop")
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for svc.Addr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("mapping did not start listening")
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn, err := grpc.NewClient(svc.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	health := healthpb.NewHealthClient(conn)

	ctr := m.deployment("mapping").Spec.Template.Spec.Containers[0]
	for name, p := range map[string]struct {
		grpc *string
		want healthpb.HealthCheckResponse_ServingStatus
	}{
		"liveness":  {ctr.LivenessProbe.GRPC.Service, healthpb.HealthCheckResponse_SERVING},
		"startup":   {ctr.StartupProbe.GRPC.Service, healthpb.HealthCheckResponse_SERVING},
		"readiness": {ctr.ReadinessProbe.GRPC.Service, healthpb.HealthCheckResponse_NOT_SERVING},
	} {
		service := ""
		if p.grpc != nil {
			service = *p.grpc
		}
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Errorf("%s probe (service %q): %v", name, service, err)
			continue
		}
		if resp.Status != p.want {
			t.Errorf("%s probe (service %q) with NATS down: %v, want %v", name, service, resp.Status, p.want)
		}
	}
}
