package scimcord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"gopkg.in/yaml.v3"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/pkg/eventbus"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/grpcauth"
	"github.com/scimcord/scimcord/pkg/natsembed"
	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/pkg/tenants"
	"github.com/scimcord/scimcord/services/applier"
	"github.com/scimcord/scimcord/services/ingest"
	"github.com/scimcord/scimcord/services/ingest/admin"
	"github.com/scimcord/scimcord/services/mapping"
)

// Deps are the process-level outputs of the all-in-one.
type Deps struct {
	// Logger receives the logs of every part (standard error in cmd/scimcord).
	Logger *slog.Logger
	// Out receives a token generated at this start, once (the addresses and
	// the token files are in the "scimcord ready" log record). It must not be
	// the log stream: cmd/scimcord sets it to standard error only when that is
	// a terminal. Default io.Discard.
	Out io.Writer
}

// System is the whole of scimcord in one process.
type System struct {
	cfg  Config
	deps Deps

	mu        sync.Mutex
	ready     chan struct{}
	baseURL   string
	token     string
	emu       *discordemu.Emulator
	ingest    *ingest.Service
	applier   *applier.Service
	mapping   *mapping.Service
	nats      *natsembed.Server
	tenantID  string
	generated bool

	adminToken  string
	metricsAddr string
}

// New validates cfg. Nothing starts before Run.
func New(cfg Config, deps Deps) (*System, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("scimcord: config: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Out == nil {
		deps.Out = io.Discard
	}
	return &System{cfg: cfg, deps: deps, ready: make(chan struct{})}, nil
}

// Ready is closed once every service accepts requests.
func (s *System) Ready() <-chan struct{} { return s.ready }

// BaseURL is the SCIM base URL (valid after Ready).
func (s *System) BaseURL() string { s.mu.Lock(); defer s.mu.Unlock(); return s.baseURL }

// Token is the dev tenant's bearer token (valid after Ready; empty with a tenant file).
func (s *System) Token() string { s.mu.Lock(); defer s.mu.Unlock(); return s.token }

// AdminToken is the credential of the operator API and status page (valid after Ready).
func (s *System) AdminToken() string { s.mu.Lock(); defer s.mu.Unlock(); return s.adminToken }

// HTTPURL is ingest's root URL: SCIM under /scim/v2, the status page and the
// operator API under /admin/ (valid after Ready).
func (s *System) HTTPURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSuffix(s.baseURL, "/scim/v2")
}

// MetricsURL is the Prometheus endpoint of all three services, "" when off
// (valid after Ready).
func (s *System) MetricsURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metricsAddr == "" {
		return ""
	}
	return "http://" + s.metricsAddr + "/metrics"
}

// Emulator is the running Discord emulator, or nil with real Discord (valid after Ready).
func (s *System) Emulator() *discordemu.Emulator { s.mu.Lock(); defer s.mu.Unlock(); return s.emu }

// NATS is the embedded NATS server (valid after Ready); tests stop and restart it.
func (s *System) NATS() *natsembed.Server { s.mu.Lock(); defer s.mu.Unlock(); return s.nats }

// Applier is the running applier (valid after Ready).
func (s *System) Applier() *applier.Service { s.mu.Lock(); defer s.mu.Unlock(); return s.applier }

// Run starts everything and blocks until ctx ends or a part fails; then it
// stops every part, the producers first.
func (s *System) Run(ctx context.Context) error {
	cfg, log := s.cfg, s.deps.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("scimcord: data dir %s: %w", cfg.DataDir, err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()

	// NATS JetStream, persisted under the data directory.
	ns, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(cfg.DataDir, "nats"), Port: cfg.NATSPort})
	if err != nil {
		return fmt.Errorf("scimcord: %w", err)
	}
	defer ns.Shutdown()
	// No reconnect buffer: a write made while NATS is down must fail now, not be
	// sent later after ingest already answered the IdP with an error.
	nc, err := nats.Connect(ns.URL(), nats.Name("scimcord"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		return fmt.Errorf("scimcord: connect %s: %w", ns.URL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("scimcord: jetstream: %w", err)
	}
	if err := eventbus.EnsureBuckets(ctx, js, eventbus.BucketConfig{}); err != nil {
		return fmt.Errorf("scimcord: %w", err)
	}

	// Discord: the emulator unless a real bot token and guild are configured.
	botToken, guildID := cfg.BotToken, cfg.GuildID
	var httpClient *http.Client
	var emu *discordemu.Emulator
	if !cfg.RealDiscord() {
		ecfg := discordemu.DefaultConfig()
		ecfg.Listen = cfg.EmulatorAddr
		if !cfg.EmulatorInMemory {
			ecfg.StatePath = filepath.Join(cfg.DataDir, "discord-emulator.json")
		}
		ecfg.Logger = log.With("component", "discordemu")
		emu, err = discordemu.New(ecfg)
		if err != nil {
			return fmt.Errorf("scimcord: start the Discord emulator on %s: %w", cfg.EmulatorAddr, err)
		}
		defer emu.Close()
		fx, err := readFixture(cfg.FixtureFile)
		if err != nil {
			return err
		}
		if !emu.StateFileExisted() {
			if err := emu.Admin().LoadFixtureFile(ctx, cfg.FixtureFile); err != nil {
				return fmt.Errorf("scimcord: seed the emulator from %s: %w", cfg.FixtureFile, err)
			}
		}
		botToken, guildID = fx.botToken, fx.guildID
		httpClient = emu.HTTPClient()
	}

	// Tenants: a file, or one dev tenant driving the guild.
	ts, token, err := s.tenants(guildID)
	if err != nil {
		return err
	}

	tel := func(name string) (*telemetry.Provider, error) {
		tcfg := cfg.Telemetry
		tcfg.ServiceName = "" // OTEL_SERVICE_NAME is for the single-service binaries
		return telemetry.NewProvider(ctx, name, tcfg)
	}
	ingestTP, err := tel("scimcord-ingest")
	if err != nil {
		return err
	}
	mappingTP, err := tel("scimcord-mapping")
	if err != nil {
		return err
	}
	applierTP, err := tel("scimcord-applier")
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, tp := range []*telemetry.Provider{ingestTP, mappingTP, applierTP} {
			_ = tp.Shutdown(sctx)
		}
	}()

	// mapping (gRPC on loopback).
	mcfg := mapping.DefaultConfig()
	mcfg.GRPCAddr = cfg.MappingAddr
	mcfg.RulesFile = cfg.MappingFile
	// The loopback gRPC port is reachable by every local user: a token made
	// for this process only is required on every MappingService call.
	mcfg.Token, err = serviceToken()
	if err != nil {
		return err
	}
	mappingCreds := grpcauth.DialOption(mcfg.Token)
	msvc, err := mapping.New(mcfg, mapping.Deps{JS: js, Logger: log.With("service", "mapping"), TracerProvider: mappingTP})
	if err != nil {
		return fmt.Errorf("scimcord: mapping: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return msvc.Run(gctx) })
	select {
	case <-msvc.Ready():
	case <-gctx.Done():
		return g.Wait()
	}

	// The operator API and status page under ingest's /admin/, with its own
	// token: mapping over gRPC (spans of ingest), the applier over NATS.
	adminToken, adminGenerated := cfg.AdminToken, false
	if adminToken == "" {
		if adminToken, adminGenerated, err = devToken(filepath.Join(cfg.DataDir, "admin-token")); err != nil {
			return err
		}
	}
	iconn, err := grpc.NewClient(msvc.Addr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), mappingCreds,
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(ingestTP), otelgrpc.WithPropagators(telemetry.Propagator()))))
	if err != nil {
		return fmt.Errorf("scimcord: dial mapping at %s: %w", msvc.Addr(), err)
	}
	defer iconn.Close()
	adm, err := admin.New(admin.Config{Token: adminToken}, admin.Deps{
		JS: js, Tenants: ts, Mapping: mappingv1.NewMappingServiceClient(iconn),
		Logger: log.With("service", "ingest", "component", "admin"), TracerProvider: ingestTP,
	})
	if err != nil {
		return fmt.Errorf("scimcord: admin: %w", err)
	}

	// ingest (SCIM over HTTP).
	icfg := ingest.DefaultConfig()
	icfg.HTTPAddr = cfg.HTTPAddr
	isvc, err := ingest.New(icfg, ingest.Deps{
		JS: js, Tenants: ts, Logger: log.With("service", "ingest"), TracerProvider: ingestTP, Admin: adm,
		Roles: func(ctx context.Context, tenantID string) ([]ingest.Role, error) {
			rs, err := msvc.ManagedRoles(ctx, tenantID)
			if err != nil {
				return nil, err
			}
			out := make([]ingest.Role, 0, len(rs))
			for _, r := range rs {
				out = append(out, ingest.Role{ID: r.ID, Name: r.Name, GuildID: r.GuildID})
			}
			return out, nil
		},
	})
	if err != nil {
		return fmt.Errorf("scimcord: ingest: %w", err)
	}

	conn, err := grpc.NewClient(msvc.Addr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), mappingCreds,
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(applierTP), otelgrpc.WithPropagators(telemetry.Propagator()))))
	if err != nil {
		return fmt.Errorf("scimcord: dial mapping at %s: %w", msvc.Addr(), err)
	}
	defer conn.Close()

	acfg := applier.DefaultConfig()
	acfg.HTTPAddr = ""
	acfg.GlobalRPS = cfg.GlobalRPS
	if cfg.GlobalWindow > 0 {
		acfg.GlobalWindow = cfg.GlobalWindow
	}
	asvc, err := applier.New(acfg, applier.Deps{
		JS: js, Tenants: ts, Mapping: mappingv1.NewMappingServiceClient(conn), BotToken: botToken,
		HTTPClient: httpClient, Logger: log.With("service", "applier"), TracerProvider: applierTP,
	})
	if err != nil {
		return fmt.Errorf("scimcord: applier: %w", err)
	}
	g.Go(func() error { return isvc.Run(gctx) })
	g.Go(func() error { return asvc.Run(gctx) })

	metricsAddr := ""
	if cfg.MetricsAddr != "" && cfg.MetricsAddr != "off" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("scimcord: metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		metricsAddr = ln.Addr().String()
		msrv := &http.Server{Handler: metricsMux(isvc, msvc, asvc), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = msrv.Serve(ln) }()
		defer msrv.Close()
	}

	select {
	case <-isvc.Ready():
	case <-gctx.Done():
		return g.Wait()
	}
	s.mu.Lock()
	s.baseURL = "http://" + isvc.Addr() + "/scim/v2"
	s.token = token
	s.adminToken, s.metricsAddr = adminToken, metricsAddr
	s.emu, s.ingest, s.applier, s.mapping, s.nats = emu, isvc, asvc, msvc, ns
	s.mu.Unlock()
	s.announce(log, isvc.Addr(), metricsAddr, guildID, emu, token, adminToken, adminGenerated)
	close(s.ready)
	return g.Wait()
}

// announce logs the "scimcord ready" record — addresses and the files that
// hold the tokens, never a token: the log stream is JSON (jq-able) and is
// kept — and writes a token generated at this start, once, to Deps.Out (a
// terminal in cmd/scimcord, never the log stream).
func (s *System) announce(log *slog.Logger, httpAddr, metricsAddr, guildID string, emu *discordemu.Emulator, token, adminToken string, adminGenerated bool) {
	cfg := s.cfg
	attrs := []any{"scim_base_url", s.baseURL,
		"status_page", "http://" + httpAddr + "/admin/",
		"operator_api", "http://" + httpAddr + "/admin/api/v1/"}
	devFile := filepath.Join(cfg.DataDir, "dev-token")
	if cfg.TenantsFile == "" && cfg.DevToken == "" {
		attrs = append(attrs, "scim_token_file", devFile, "scim_token_generated", s.generated)
	}
	adminFile := filepath.Join(cfg.DataDir, "admin-token")
	if cfg.AdminToken == "" {
		attrs = append(attrs, "admin_token_file", adminFile, "admin_token_generated", adminGenerated)
	}
	if metricsAddr != "" {
		attrs = append(attrs, "metrics_url", "http://"+metricsAddr+"/metrics")
	}
	if emu != nil {
		attrs = append(attrs, "discord", "emulator", "emulator_url", emu.URL(), "emulator_state_url", emu.URL()+"/_emu/guilds/"+guildID+"/state")
	} else {
		attrs = append(attrs, "discord", "real", "guild", guildID)
	}
	log.Info("scimcord ready", attrs...)
	if cfg.TenantsFile == "" && cfg.DevToken == "" && s.generated {
		fmt.Fprintf(s.deps.Out, "scimcord: generated SCIM token (kept in %s; set SCIMCORD_DEV_TOKEN to choose one): %s\n", devFile, token)
	}
	if cfg.AdminToken == "" && adminGenerated {
		fmt.Fprintf(s.deps.Out, "scimcord: generated admin token (kept in %s; set SCIMCORD_ADMIN_TOKEN to choose one): %s\n", adminFile, adminToken)
	}
}

func (s *System) tenants(guildID string) (*tenants.Set, string, error) {
	if s.cfg.TenantsFile != "" {
		ts, err := tenants.Load(s.cfg.TenantsFile)
		if err != nil {
			return nil, "", fmt.Errorf("scimcord: %w", err)
		}
		return ts, "", nil
	}
	token := s.cfg.DevToken
	if token == "" {
		var err error
		if token, s.generated, err = devToken(filepath.Join(s.cfg.DataDir, "dev-token")); err != nil {
			return nil, "", err
		}
	}
	ts, err := tenants.New(&tenants.Tenant{
		ID: DevTenantID, Name: "Development", TokenSHA256: []string{tenants.HashToken(token)},
		Guilds: []tenants.Guild{{ID: guildID}},
	})
	if err != nil {
		return nil, "", fmt.Errorf("scimcord: dev tenant: %w", err)
	}
	return ts, token, nil
}

// devToken returns the dev tenant's generated token, kept in path (mode 0600)
// so that an IdP configured with it keeps working across restarts; generated
// reports whether it was made now.
func devToken(path string) (token string, generated bool, err error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), false, nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", false, fmt.Errorf("scimcord: generate a token: %w", err)
	}
	token = "scd_" + hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("scimcord: keep the generated token in %s: %w", path, err)
	}
	return token, true, nil
}

// lockDataDir takes an exclusive lock on the data directory, so that two
// instances never share one JetStream store or emulator state file.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("scimcord: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("scimcord: data dir %s is in use by another scimcord (SCIMCORD_DATA_DIR): %w", dir, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

type fixtureInfo struct{ botToken, guildID string }

// readFixture finds the bot token and the guild in the emulator fixture.
func readFixture(path string) (fixtureInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return fixtureInfo{}, fmt.Errorf("scimcord: read the emulator fixture: %w", err)
	}
	var fx struct {
		Applications []struct {
			Bot struct {
				Token string `yaml:"token"`
			} `yaml:"bot"`
		} `yaml:"applications"`
		Guilds []struct {
			ID string `yaml:"id"`
		} `yaml:"guilds"`
	}
	if err := yaml.Unmarshal(data, &fx); err != nil {
		return fixtureInfo{}, fmt.Errorf("scimcord: decode %s: %w", path, err)
	}
	if len(fx.Applications) == 0 || fx.Applications[0].Bot.Token == "" || len(fx.Guilds) == 0 || fx.Guilds[0].ID == "" {
		return fixtureInfo{}, errors.New("scimcord: " + path + " needs an application with a pinned bot token and a guild with a pinned id")
	}
	return fixtureInfo{botToken: fx.Applications[0].Bot.Token, guildID: fx.Guilds[0].ID}, nil
}

// serviceToken makes the token that guards the in-process mapping gRPC port
// for this run only (never written or logged).
func serviceToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("scimcord: generate the mapping service token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
