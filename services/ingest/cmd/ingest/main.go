// Command ingest runs the SCIM 2.0 service provider against an external NATS
// JetStream. Configuration comes from environment variables (README).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scimcord/scimcord/pkg/eventbus"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/grpcauth"
	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/pkg/tenants"
	"github.com/scimcord/scimcord/services/ingest"
	"github.com/scimcord/scimcord/services/ingest/admin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(env("SCIMCORD_LOG_LEVEL", "info"))); err != nil {
		return fmt.Errorf("SCIMCORD_LOG_LEVEL: %w", err)
	}
	log := telemetry.NewLogger(os.Stderr, level)

	cfgPath := os.Getenv("SCIMCORD_CONFIG")
	if cfgPath == "" {
		return errors.New("SCIMCORD_CONFIG (tenant YAML) is required")
	}
	ts, err := tenants.Load(cfgPath)
	if err != nil {
		return err
	}
	replicas, err := strconv.Atoi(env("SCIMCORD_NATS_REPLICAS", "1"))
	if err != nil || replicas < 1 {
		return fmt.Errorf("SCIMCORD_NATS_REPLICAS must be a positive integer")
	}

	tp, err := telemetry.NewProvider(ctx, "scimcord-ingest", telemetry.FromEnv(os.Getenv))
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}()

	opts := []nats.Option{nats.Name("scimcord-ingest"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		// No reconnect buffer: a write during an outage must fail now, not be
		// replayed later after the client was told it failed.
		nats.ReconnectBufSize(-1)}
	if creds := os.Getenv("NATS_CREDS"); creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(env("NATS_URL", nats.DefaultURL), opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := eventbus.EnsureBuckets(ctx, js, eventbus.BucketConfig{Replicas: replicas}); err != nil {
		log.WarnContext(ctx, "buckets not ready yet; the service keeps retrying", "error", err)
	}

	// The operator API and status page (/admin/) when SCIMCORD_ADMIN_TOKEN
	// is set; explain and rules need mapping (SCIMCORD_MAPPING_ADDR).
	var adm http.Handler
	if tok := os.Getenv("SCIMCORD_ADMIN_TOKEN"); tok != "" {
		var mc mappingv1.MappingServiceClient
		if addr := os.Getenv("SCIMCORD_MAPPING_ADDR"); addr != "" {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(telemetry.Propagator()))),
				grpcauth.DialOption(os.Getenv("SCIMCORD_MAPPING_TOKEN")))
			if err != nil {
				return fmt.Errorf("SCIMCORD_MAPPING_ADDR %q: %w", addr, err)
			}
			defer conn.Close()
			mc = mappingv1.NewMappingServiceClient(conn)
		}
		a, err := admin.New(admin.Config{Token: tok}, admin.Deps{JS: js, Tenants: ts, Mapping: mc, Logger: log.With("component", "admin"), TracerProvider: tp})
		if err != nil {
			return err
		}
		adm = a
	}

	cfg := ingest.DefaultConfig()
	cfg.HTTPAddr = env("SCIMCORD_HTTP_ADDR", cfg.HTTPAddr)
	// The deployed ingest sits behind a Service/Ingress that sets
	// X-Forwarded-*/Forwarded: meta.location and $ref use them.
	cfg.TrustForwardedHeaders = true
	cfg.BucketReplicas = replicas
	svc, err := ingest.New(cfg, ingest.Deps{JS: js, Tenants: ts, Logger: log, TracerProvider: tp.TracerProvider, Admin: adm})
	if err != nil {
		return err
	}
	if addr := env("SCIMCORD_METRICS_ADDR", ":9464"); addr != "" && addr != "off" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", svc.MetricsHandler())
		msrv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := msrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.ErrorContext(ctx, "metrics server stopped", "addr", addr, "error", err)
			}
		}()
		defer msrv.Close()
	}
	return svc.Run(ctx)
}
