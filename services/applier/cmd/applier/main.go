// Command applier runs the scimcord applier: it consumes the SCIM resource
// stream from NATS JetStream and makes Discord match it.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
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
	"github.com/scimcord/scimcord/services/applier"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run starts the applier with the configuration from the environment.
func run(ctx context.Context, getenv func(string) string) error {
	level := slog.LevelInfo
	if v := getenv("SCIMCORD_LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			return fmt.Errorf("SCIMCORD_LOG_LEVEL %q: want debug, info, warn or error", v)
		}
	}
	log := telemetry.NewLogger(os.Stderr, level)

	cfg := applier.DefaultConfig()
	if v, ok := lookup(getenv, "SCIMCORD_HTTP_ADDR"); ok {
		cfg.HTTPAddr = v
	}
	if v := getenv("SCIMCORD_DISCORD_GLOBAL_RPS"); v != "" {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("SCIMCORD_DISCORD_GLOBAL_RPS %q: want a positive number", v)
		}
		cfg.GlobalRPS = f
	}
	if v := getenv("SCIMCORD_DISCORD_GLOBAL_WINDOW"); v != "" {
		// For a time-scaled emulator: the global limit is RPS × window per window.
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return fmt.Errorf("SCIMCORD_DISCORD_GLOBAL_WINDOW %q: want a positive duration such as 1s", v)
		}
		cfg.GlobalWindow = d
	}
	if v := getenv("SCIMCORD_GRACE_PERIOD"); v != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			return fmt.Errorf("SCIMCORD_GRACE_PERIOD %q: want a duration such as 24h", v)
		}
		cfg.GracePeriod = d
	}
	if v := getenv("SCIMCORD_DRIFT_INTERVAL"); v != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			return fmt.Errorf("SCIMCORD_DRIFT_INTERVAL %q: want a duration such as 6h (0 = off)", v)
		}
		cfg.DriftInterval = d
	}
	if v := getenv("SCIMCORD_PENDING_JOIN_INTERVAL"); v != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			return fmt.Errorf("SCIMCORD_PENDING_JOIN_INTERVAL %q: want a duration such as 1m (0 = off)", v)
		}
		cfg.PendingJoinInterval = d
	}
	cfg.AutoCreateRoles = strings.EqualFold(strings.TrimSpace(getenv("SCIMCORD_AUTO_CREATE_ROLES")), "true")
	cfg.DriftDryRun = strings.EqualFold(strings.TrimSpace(getenv("SCIMCORD_DRIFT_DRY_RUN")), "true")
	if v := getenv("SCIMCORD_BRAKE_MAX_COUNT"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return fmt.Errorf("SCIMCORD_BRAKE_MAX_COUNT %q: want an integer >= 0 (0 = off)", v)
		}
		cfg.BrakeMaxCount = n
	}
	if v := getenv("SCIMCORD_BRAKE_MAX_SHARE"); v != "" {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f < 0 || f > 1 {
			return fmt.Errorf("SCIMCORD_BRAKE_MAX_SHARE %q: want a number within 0..1", v)
		}
		cfg.BrakeMaxShare = f
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	replicas := 1
	if v := getenv("SCIMCORD_NATS_REPLICAS"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return fmt.Errorf("SCIMCORD_NATS_REPLICAS %q: want a positive integer", v)
		}
		replicas = n
	}
	var missing []string
	for _, k := range []string{"NATS_URL", "SCIMCORD_CONFIG", "SCIMCORD_MAPPING_ADDR", "DISCORD_BOT_TOKEN"} {
		if getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing required environment: %s", strings.Join(missing, ", "))
	}
	ts, err := tenants.Load(getenv("SCIMCORD_CONFIG"))
	if err != nil {
		return err
	}
	tp, err := telemetry.NewProvider(ctx, "scimcord-applier", telemetry.FromEnv(getenv))
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}()

	// RetryOnFailedConnect: a NATS that is not up yet (a fresh install, a NATS
	// restart) is waited for instead of failing the start.
	opts := []nats.Option{nats.Name("scimcord-applier"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true)}
	if c := getenv("NATS_CREDS"); c != "" {
		opts = append(opts, nats.UserCredentials(c))
	}
	nc, err := nats.Connect(getenv("NATS_URL"), opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	for delay := 250 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		err := eventbus.EnsureBuckets(ctx, js, eventbus.BucketConfig{Replicas: replicas})
		if err == nil {
			break
		}
		log.WarnContext(ctx, "NATS JetStream not ready yet, retrying", "error", err, "delay", delay)
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for NATS JetStream: %w", err)
		case <-time.After(delay):
		}
	}
	conn, err := grpc.NewClient(getenv("SCIMCORD_MAPPING_ADDR"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(telemetry.Propagator()))),
		grpcauth.DialOption(getenv("SCIMCORD_MAPPING_TOKEN")))
	if err != nil {
		return fmt.Errorf("dial mapping at %s: %w", getenv("SCIMCORD_MAPPING_ADDR"), err)
	}
	defer conn.Close()

	var hc *http.Client
	if u := getenv("SCIMCORD_DISCORD_URL"); u != "" {
		// Development and tests only: send Discord API calls to an emulator.
		hc, err = rewriteClient(u)
		if err != nil {
			return err
		}
		log.Warn("Discord API calls go to SCIMCORD_DISCORD_URL", "url", u)
	}
	svc, err := applier.New(cfg, applier.Deps{
		JS: js, Tenants: ts, Mapping: mappingv1.NewMappingServiceClient(conn),
		BotToken: getenv("DISCORD_BOT_TOKEN"), HTTPClient: hc, Logger: log.With("service", "applier"), TracerProvider: tp,
	})
	if err != nil {
		return err
	}
	maddr := ":9464"
	if v, ok := lookup(getenv, "SCIMCORD_METRICS_ADDR"); ok {
		maddr = v
	}
	if maddr != "" {
		ln, err := net.Listen("tcp", maddr)
		if err != nil {
			return fmt.Errorf("metrics listen %s: %w", maddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", svc.MetricsHandler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := msrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener failed", "error", err)
			}
		}()
		defer msrv.Close()
	}
	return svc.Run(ctx)
}

// lookup returns a variable that is set to a non-empty value.
func lookup(getenv func(string) string, k string) (string, bool) {
	v := strings.TrimSpace(getenv(k))
	return v, v != ""
}

// rewriteClient returns an HTTP client that sends requests for discord.com
// to base (scheme and host), keeping the path.
func rewriteClient(base string) (*http.Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("SCIMCORD_DISCORD_URL %q: want http(s)://host:port", base)
	}
	return &http.Client{Transport: rewriteTransport{scheme: u.Scheme, host: u.Host, base: http.DefaultTransport}}, nil
}

type rewriteTransport struct {
	scheme, host string
	base         http.RoundTripper
}

func (t rewriteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if h := req.URL.Hostname(); h == "discord.com" || h == "discordapp.com" {
		r2 := req.Clone(req.Context())
		r2.URL.Scheme, r2.URL.Host, r2.Host = t.scheme, t.host, t.host
		req = r2
	}
	return t.base.RoundTrip(req)
}
