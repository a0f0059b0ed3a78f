// Package mapping is the mapping service: it owns the rules that turn a SCIM
// user's groups and attributes into the Discord roles they should have in each
// guild, serves them over gRPC (MappingService), explains every decision, and
// keeps the rule sets as versioned policy in JetStream KV.
package mapping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/scimcord/scimcord/pkg/grpcauth"
	"github.com/scimcord/scimcord/services/mapping/internal/rules"
)

// Config configures the service. Start from DefaultConfig.
type Config struct {
	// GRPCAddr is the gRPC listen address (SCIMCORD_GRPC_ADDR); "127.0.0.1:0"
	// picks a free loopback port (tests, all-in-one).
	GRPCAddr string
	// RulesFile is the rules YAML (SCIMCORD_MAPPING): the bootstrap / GitOps
	// source of the rule sets.
	RulesFile string
	// ShutdownTimeout bounds the graceful stop of the gRPC server.
	ShutdownTimeout time.Duration
	// Bucket is the JetStream KV bucket that stores the rule sets.
	Bucket string
	// Replicas of the bucket's stream (SCIMCORD_NATS_REPLICAS).
	Replicas int
	// History is how many versions of each rule set the bucket keeps.
	History int
	// ResyncInterval is how often a replica checks that its watch has seen the
	// bucket's newest version (and restarts the watch when it lags).
	ResyncInterval time.Duration
	// Token (SCIMCORD_MAPPING_TOKEN), when set, must come with every
	// MappingService call as "authorization: Bearer <token>" (at least 16
	// characters; checked in constant time); health and reflection stay
	// open for probes. "" means no authentication (a warning at start).
	Token string `json:"-"`
}

// DefaultConfig returns the defaults; RulesFile must still be set.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:        ":9090",
		ShutdownTimeout: 10 * time.Second,
		Bucket:          "mapping_rules",
		Replicas:        1,
		History:         16,
		ResyncInterval:  500 * time.Millisecond,
	}
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
		errs = append(errs, fmt.Errorf("mapping: gRPC address %q: %w", c.GRPCAddr, err))
	}
	if c.RulesFile == "" {
		errs = append(errs, errors.New("mapping: rules file (SCIMCORD_MAPPING) is required"))
	}
	if err := grpcauth.Validate(c.Token); err != nil {
		errs = append(errs, fmt.Errorf("mapping: SCIMCORD_MAPPING_TOKEN: %w", err))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("mapping: shutdown timeout %s: want > 0", c.ShutdownTimeout))
	}
	if !rules.ValidTenant(c.Bucket) {
		errs = append(errs, fmt.Errorf("mapping: bucket %q: want letters, digits, _ or -", c.Bucket))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("mapping: replicas %d: want 1-5", c.Replicas))
	}
	if c.ResyncInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("mapping: resync interval %s: want at least 10ms", c.ResyncInterval))
	}
	if c.History < 1 || c.History > 64 {
		errs = append(errs, fmt.Errorf("mapping: history %d: want 1-64 (JetStream's limit)", c.History))
	}
	return errors.Join(errs...)
}

// Deps are the service's collaborators.
type Deps struct {
	// JS stores the rule sets (KV) and is read by Preview (the SCIM state that
	// ingest stores). Nil serves the rules file read-only (no admin writes, no Preview).
	JS jetstream.JetStream
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider defaults to a no-op provider.
	TracerProvider trace.TracerProvider
}

// Role is one managed role of a tenant: a role some rule produces. ID is empty
// for a role referenced only by name (resolved against the guild by the applier).
type Role struct {
	ID      string
	Name    string
	GuildID string
}

// Service is the mapping service.
type Service struct {
	cfg     Config
	js      jetstream.JetStream
	log     *slog.Logger
	tp      trace.TracerProvider
	file    *rules.File
	rules   *registry
	metrics metrics

	ready     chan struct{}
	readyOnce sync.Once
	mu        sync.Mutex
	addr      string
	kv        jetstream.KeyValue
}

// New validates cfg and loads the rules file; it does no network I/O (Run does).
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f, err := LoadFile(cfg.RulesFile)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:   cfg,
		js:    deps.JS,
		log:   deps.Logger,
		tp:    deps.TracerProvider,
		file:  f,
		rules: newRegistry(),
		ready: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.tp == nil {
		s.tp = noop.NewTracerProvider()
	}
	if s.js == nil {
		// No store: serve the file, version 1 for every rule set.
		if err := s.rules.loadFile(f); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// LoadFile reads and validates a rules file (every CEL condition compiled).
func LoadFile(path string) (*rules.File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mapping: read rules file %s: %w", path, err)
	}
	f, err := rules.DecodeFile(data)
	if err != nil {
		return nil, fmt.Errorf("mapping: rules file %s: %w", path, err)
	}
	return f, nil
}

// Addr is the gRPC listen address once listening (empty before).
func (s *Service) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Ready is closed once the service listens and serves the stored rules.
func (s *Service) Ready() <-chan struct{} { return s.ready }

func (s *Service) markReady() { s.readyOnce.Do(func() { close(s.ready) }) }

// ManagedRoles lists every managed role of the tenant's guilds (the roles some
// rule produces), sorted by guild and role; ingest serves them as SCIM /Roles.
func (s *Service) ManagedRoles(ctx context.Context, tenantID string) ([]Role, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Role
	for _, rs := range s.rules.tenant(tenantID) {
		for _, r := range rs.Managed() {
			out = append(out, Role{ID: r.ID, Name: r.Name, GuildID: rs.Guild})
		}
	}
	return out, nil
}
