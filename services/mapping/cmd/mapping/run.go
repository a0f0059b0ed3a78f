package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/services/mapping"
)

// run serves the mapping service with the configuration from the environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "apply" {
		return runApply(ctx, args[1:], getenv, stdout)
	}
	if len(args) > 0 {
		return fmt.Errorf("unknown arguments %q (usage: mapping | mapping apply [--dry-run] FILE)", args)
	}
	log, err := newLogger(getenv)
	if err != nil {
		return err
	}
	cfg := mapping.DefaultConfig()
	if v := getenv("SCIMCORD_GRPC_ADDR"); v != "" {
		cfg.GRPCAddr = v
	}
	cfg.RulesFile = getenv("SCIMCORD_MAPPING")
	cfg.Token = getenv("SCIMCORD_MAPPING_TOKEN")
	if cfg.Replicas, err = intEnv(getenv, "SCIMCORD_NATS_REPLICAS", 1); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	tp, err := telemetry.NewProvider(ctx, "scimcord-mapping", telemetry.FromEnv(getenv))
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}()
	deps := mapping.Deps{Logger: log, TracerProvider: tp}
	if url := getenv("NATS_URL"); url != "" {
		nc, js, err := connect(url, getenv("NATS_CREDS"))
		if err != nil {
			return err
		}
		defer nc.Drain()
		deps.JS = js
	} else {
		log.Warn("NATS_URL is not set: serving the rules file read-only (no admin writes, no preview)")
	}
	svc, err := mapping.New(cfg, deps)
	if err != nil {
		return err
	}
	metricsAddr := getenv("SCIMCORD_METRICS_ADDR")
	if metricsAddr == "" {
		metricsAddr = ":9464"
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", svc.MetricsHandler())
	ms := &http.Server{Addr: metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := ms.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "addr", metricsAddr, "error", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = ms.Shutdown(sctx)
	}()
	return svc.Run(ctx)
}

func newLogger(getenv func(string) string) (*slog.Logger, error) {
	level := slog.LevelInfo
	if v := getenv("SCIMCORD_LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			return nil, fmt.Errorf("SCIMCORD_LOG_LEVEL %q: want debug, info, warn or error", v)
		}
	}
	return telemetry.NewLogger(os.Stderr, level), nil
}

func intEnv(getenv func(string) string, name string, def int) (int, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want an integer", name, v)
	}
	return n, nil
}

func connect(url, creds string) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("scimcord-mapping"), nats.MaxReconnects(-1)}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// runApply previews a rules file against the stored rule sets and the SCIM
// state, prints the blast radius, and (without --dry-run) writes it with
// compare-and-set on the versions it previewed.
func runApply(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mapping apply", flag.ContinueOnError)
	fs.SetOutput(stdout)
	dryRun := fs.Bool("dry-run", false, "print the preview only; write nothing")
	bucket := fs.String("bucket", mapping.DefaultConfig().Bucket, "JetStream KV bucket of the rule sets")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: mapping apply [--dry-run] [--bucket NAME] RULES.yaml (NATS_URL, NATS_CREDS from the environment)")
	}
	url := getenv("NATS_URL")
	if url == "" {
		return errors.New("NATS_URL is required for apply")
	}
	nc, js, err := connect(url, getenv("NATS_CREDS"))
	if err != nil {
		return err
	}
	defer nc.Close()
	plan, err := mapping.PreviewFile(ctx, js, *bucket, fs.Arg(0))
	if err != nil {
		return err
	}
	if err := plan.WriteText(stdout); err != nil {
		return err
	}
	if *dryRun {
		if _, err := fmt.Fprintln(stdout, "dry run: nothing written"); err != nil {
			return err
		}
		for _, gp := range plan.Guilds {
			if gp.Action == mapping.ActionRefuse {
				return fmt.Errorf("applying %s would be refused: %s", fs.Arg(0), gp.Refusal)
			}
		}
		return nil
	}
	if err := mapping.ApplyFile(ctx, js, plan); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, "applied")
	return err
}
