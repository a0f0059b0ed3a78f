// Package scimcord runs the whole system in one process: an embedded NATS
// JetStream server (persisted under DataDir), the mapping, ingest and applier
// services over real loopback listeners, and — unless a real bot token and
// guild are given — the Discord emulator seeded from the dev fixture.
package scimcord

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/scimcord/scimcord/pkg/telemetry"
)

// Config is the all-in-one's configuration (read from the environment by cmd/scimcord).
type Config struct {
	// DataDir holds the NATS store and the emulator's state (SCIMCORD_DATA_DIR, default ./.scimcord).
	DataDir string
	// HTTPAddr serves SCIM at /scim/v2 plus /healthz and /readyz (SCIMCORD_HTTP_ADDR).
	HTTPAddr string
	// EmulatorAddr serves the Discord emulator's API and /_emu admin API (SCIMCORD_EMULATOR_ADDR).
	EmulatorAddr string
	// NATSPort is the embedded NATS client port; 0 = ephemeral (SCIMCORD_NATS_PORT).
	NATSPort int
	// MappingAddr is mapping's gRPC listener; default an ephemeral loopback port (SCIMCORD_GRPC_ADDR).
	MappingAddr string
	// TenantsFile is the tenant YAML (SCIMCORD_CONFIG); empty = one dev tenant driven by DevToken.
	TenantsFile string
	// DevToken is the dev tenant's bearer token (SCIMCORD_DEV_TOKEN); empty = generate and print one.
	DevToken string
	// MappingFile is the rules YAML (SCIMCORD_MAPPING, default deploy/dev/mapping.yaml).
	MappingFile string
	// FixtureFile seeds the emulator on first start (default deploy/dev/guild.yaml).
	FixtureFile string
	// BotToken and GuildID select real Discord when both are set (DISCORD_BOT_TOKEN, DISCORD_GUILD_ID).
	BotToken string
	GuildID  string
	// GlobalRPS is the applier's global Discord request rate (SCIMCORD_DISCORD_GLOBAL_RPS).
	GlobalRPS float64
	// GlobalWindow is the window GlobalRPS is measured over; 0 = 1s (Discord's).
	// Benchmarks against a time-scaled emulator scale it with the emulator.
	GlobalWindow time.Duration
	// EmulatorInMemory keeps the emulator's state in memory only (no state
	// file rewritten after every change): for benchmarks, where that file
	// would cost more than Discord's own work.
	EmulatorInMemory bool
	// AdminToken guards the operator API and status page under /admin/ on
	// HTTPAddr (SCIMCORD_ADMIN_TOKEN); empty = generate and print one.
	AdminToken string
	// MetricsAddr serves Prometheus /metrics of all three services
	// (SCIMCORD_METRICS_ADDR); default an ephemeral loopback port, printed at
	// start; "off" = none.
	MetricsAddr string
	// Telemetry configures tracing (OTEL_* variables); each service gets its own provider.
	Telemetry telemetry.Config
	// LogLevel is the slog level (SCIMCORD_LOG_LEVEL).
	LogLevel slog.Level
}

// DevTenantID is the id of the tenant the all-in-one creates when no tenant file is given.
const DevTenantID = "dev"

// DefaultConfig returns the defaults of `make run`.
func DefaultConfig() Config {
	return Config{
		DataDir:      ".scimcord",
		HTTPAddr:     "127.0.0.1:8080",
		EmulatorAddr: "127.0.0.1:8090",
		MappingAddr:  "127.0.0.1:0",
		MetricsAddr:  "127.0.0.1:0",
		MappingFile:  filepath.Join("deploy", "dev", "mapping.yaml"),
		FixtureFile:  filepath.Join("deploy", "dev", "guild.yaml"),
		GlobalRPS:    50,
	}
}

// RealDiscord reports whether the all-in-one talks to real Discord.
func (c Config) RealDiscord() bool { return c.BotToken != "" && c.GuildID != "" }

// Validate reports a configuration that cannot start.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("SCIMCORD_DATA_DIR must not be empty"))
	}
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("SCIMCORD_HTTP_ADDR must not be empty"))
	}
	if (c.BotToken == "") != (c.GuildID == "") {
		errs = append(errs, errors.New("set both DISCORD_BOT_TOKEN and DISCORD_GUILD_ID for real Discord, or neither for the emulator"))
	}
	if !c.RealDiscord() && c.EmulatorAddr == "" {
		errs = append(errs, errors.New("SCIMCORD_EMULATOR_ADDR must not be empty when the emulator runs"))
	}
	if c.MappingFile == "" {
		errs = append(errs, errors.New("SCIMCORD_MAPPING must name the rules file"))
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		errs = append(errs, errors.New("SCIMCORD_ADMIN_TOKEN must be at least 16 characters"))
	}
	if c.AdminToken != "" && c.AdminToken == c.DevToken {
		// A tenant file's tokens are checked when the tenants are loaded (admin.New).
		errs = append(errs, errors.New("SCIMCORD_ADMIN_TOKEN must differ from SCIMCORD_DEV_TOKEN (the admin token must not be a SCIM token)"))
	}
	if c.GlobalWindow < 0 {
		errs = append(errs, fmt.Errorf("GlobalWindow must be >= 0, got %s", c.GlobalWindow))
	}
	if c.GlobalRPS <= 0 {
		errs = append(errs, fmt.Errorf("SCIMCORD_DISCORD_GLOBAL_RPS must be > 0, got %v", c.GlobalRPS))
	}
	if err := c.Telemetry.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
