// Command discordemu runs the Discord REST emulator standalone.
//
//	discordemu serve [--listen 127.0.0.1:8090] [--fixture demo.yaml] [--state ./emu-state.json]
//	                 [--admin-listen ADDR] [--admin-token TOKEN] [--profile realistic|fast|off]
//	                 [--time-scale 1.0] [--config cfg.json] [--log-level info]
//	                 [--tls [--tls-cert-out cert.pem]]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "discordemu:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "serve" {
		return errors.New("usage: discordemu serve [flags] (see discordemu serve -h)")
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8090", "address of the API (and admin) listener")
	fixture := fs.String("fixture", "", "YAML fixture loaded at start when the state file does not exist yet")
	state := fs.String("state", "", "state file (loaded at start, saved after every mutation)")
	adminListen := fs.String("admin-listen", "", "serve /_emu on this address instead of the main listener")
	adminToken := fs.String("admin-token", "", "require X-Emu-Admin-Token on admin requests")
	profile := fs.String("profile", "realistic", "rate-limit profile: realistic, fast or off")
	timeScale := fs.Float64("time-scale", 1.0, "multiplier for rate-limit windows, cooldowns and bans")
	cfgFile := fs.String("config", "", "JSON config file (same fields as PUT /_emu/config); flags override it")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a self-signed certificate (names loopback, the listen host and Discord's hosts)")
	certOut := fs.String("tls-cert-out", "", "with --tls, write the certificate's PEM here (curl --cacert FILE)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg := discordemu.DefaultConfig()
	if *cfgFile != "" {
		data, err := os.ReadFile(*cfgFile)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields() // a misspelled knob is an error, not a silent default
		if err := dec.Decode(&cfg); err != nil {
			return fmt.Errorf("decode config %s: %w", *cfgFile, err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["listen"] || cfg.Listen == "" {
		cfg.Listen = *listen
	}
	if set["profile"] || *cfgFile == "" {
		cfg.Profile = *profile
	}
	if set["time-scale"] || *cfgFile == "" {
		cfg.TimeScale = *timeScale
	}
	if *state != "" {
		cfg.StatePath = *state
	}
	if *adminListen != "" {
		cfg.AdminListen = *adminListen
	}
	if *adminToken != "" {
		cfg.AdminToken = *adminToken
	}
	if *useTLS {
		cfg.TLS = true
	}
	if *certOut != "" {
		cfg.TLSCertFile = *certOut
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	return discordemu.Run(ctx, cfg, *fixture)
}
