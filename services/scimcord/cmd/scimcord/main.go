// Command scimcord runs the whole system in one process (see package scimcord).
// This main only reads the environment; everything else is the library.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/services/scimcord"
	"github.com/scimcord/scimcord/services/scimcord/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string) error {
	if len(args) > 0 && args[0] != "run" {
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(os.Stdout, cli.Usage)
			return nil
		}
		// An operator subcommand against a running instance's admin API.
		return cli.Run(ctx, args, cli.Env{
			Token:  getenv("SCIMCORD_ADMIN_TOKEN"),
			Server: cli.DefaultServer(getenv("SCIMCORD_SERVER"), getenv("SCIMCORD_HTTP_ADDR")),
			Out:    os.Stdout, Err: os.Stderr,
		})
	}
	cfg, err := configFromEnv(getenv)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(os.Stderr, cfg.LogLevel)
	// Generated tokens go to the terminal only, never into the (JSON) log
	// stream: they are also kept in the data directory's token files.
	var out io.Writer
	if isTerminal(os.Stderr) {
		out = os.Stderr
	}
	sys, err := scimcord.New(cfg, scimcord.Deps{Logger: log, Out: out})
	if err != nil {
		return err
	}
	return sys.Run(ctx)
}

// isTerminal reports whether f is a character device (a terminal, not a
// file or pipe the logs are collected from).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// configFromEnv reads the all-in-one's configuration; the README lists every variable.
func configFromEnv(getenv func(string) string) (scimcord.Config, error) {
	cfg := scimcord.DefaultConfig()
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	str("SCIMCORD_DATA_DIR", &cfg.DataDir)
	str("SCIMCORD_HTTP_ADDR", &cfg.HTTPAddr)
	str("SCIMCORD_EMULATOR_ADDR", &cfg.EmulatorAddr)
	str("SCIMCORD_GRPC_ADDR", &cfg.MappingAddr)
	str("SCIMCORD_CONFIG", &cfg.TenantsFile)
	str("SCIMCORD_DEV_TOKEN", &cfg.DevToken)
	str("SCIMCORD_MAPPING", &cfg.MappingFile)
	str("SCIMCORD_FIXTURE", &cfg.FixtureFile)
	str("DISCORD_BOT_TOKEN", &cfg.BotToken)
	str("DISCORD_GUILD_ID", &cfg.GuildID)
	str("SCIMCORD_ADMIN_TOKEN", &cfg.AdminToken)
	str("SCIMCORD_METRICS_ADDR", &cfg.MetricsAddr)
	if v := getenv("SCIMCORD_NATS_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			return cfg, fmt.Errorf("SCIMCORD_NATS_PORT=%q: %w", v, err)
		}
		cfg.NATSPort = p
	}
	if v := getenv("SCIMCORD_DISCORD_GLOBAL_RPS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return cfg, fmt.Errorf("SCIMCORD_DISCORD_GLOBAL_RPS=%q: %w", v, err)
		}
		cfg.GlobalRPS = f
	}
	if v := getenv("SCIMCORD_LOG_LEVEL"); v != "" {
		if err := cfg.LogLevel.UnmarshalText([]byte(v)); err != nil {
			return cfg, fmt.Errorf("SCIMCORD_LOG_LEVEL=%q: %w", v, err)
		}
	}
	cfg.Telemetry = telemetry.FromEnv(getenv)
	return cfg, cfg.Validate()
}
