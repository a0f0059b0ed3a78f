package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/natsembed"
	"github.com/scimcord/scimcord/services/mapping"
)

func TestApplyDryRunPrintsThePlanAndWritesNothing(t *testing.T) {
	t.Parallel()
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	env := map[string]string{"NATS_URL": ns.URL()}
	getenv := func(k string) string { return env[k] }
	rules, err := filepath.Abs("../../../../deploy/dev/mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"apply", "--dry-run", rules}, getenv, &out); err != nil {
		t.Fatalf("apply --dry-run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "tenant dev guild 1100000000000000000: create") || !strings.Contains(out.String(), "dry run: nothing written") {
		t.Errorf("dry run output:\n%s", out.String())
	}
	// Applying needs the bucket, which the service creates; without it the error says so.
	out.Reset()
	err = run(ctx, []string{"apply", rules}, getenv, &out)
	if err == nil || !strings.Contains(err.Error(), "start the mapping service once") {
		t.Errorf("apply without bucket = %v", err)
	}
}

func TestRunRejectsBadInvocations(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("tenants: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"serve without rules file", nil, map[string]string{}, "SCIMCORD_MAPPING"},
		{"serve with invalid rules", nil, map[string]string{"SCIMCORD_MAPPING": bad}, "no tenants"},
		{"bad log level", nil, map[string]string{"SCIMCORD_LOG_LEVEL": "loud"}, "SCIMCORD_LOG_LEVEL"},
		{"bad replicas", nil, map[string]string{"SCIMCORD_NATS_REPLICAS": "three"}, "SCIMCORD_NATS_REPLICAS"},
		{"unknown argument", []string{"serve"}, map[string]string{}, "unknown arguments"},
		{"apply without file", []string{"apply"}, map[string]string{}, "usage"},
		{"apply without NATS", []string{"apply", bad}, map[string]string{}, "NATS_URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestApplyRefusesAnOlderRulesFile(t *testing.T) {
	t.Parallel()
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, js, err := connect(ns.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := context.Background()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: mapping.DefaultConfig().Bucket, History: 16}); err != nil {
		t.Fatal(err)
	}
	file := func(gen int, role string) string {
		p := filepath.Join(t.TempDir(), "mapping.yaml")
		doc := fmt.Sprintf("generation: %d\ntenants:\n  - id: dev\n    guilds:\n      - id: \"1100000000000000000\"\n        rules:\n          - name: s\n            all_active_users: true\n            roles: [{id: \"%s\"}]\n", gen, role)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := map[string]string{"NATS_URL": ns.URL()}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	if err := run(ctx, []string{"apply", file(2, "1100000000000000103")}, getenv, &out); err != nil {
		t.Fatalf("apply generation 2: %v\n%s", err, out.String())
	}
	older := file(1, "1100000000000000101")
	out.Reset()
	err = run(ctx, []string{"apply", "--dry-run", older}, getenv, &out)
	if err == nil || !strings.Contains(err.Error(), "would be refused") || !strings.Contains(out.String(), ": refuse") ||
		!strings.Contains(out.String(), "older than generation 2") {
		t.Errorf("dry run of an older file = %v\n%s", err, out.String())
	}
	out.Reset()
	err = run(ctx, []string{"apply", older}, getenv, &out)
	if !errors.Is(err, mapping.ErrGeneration) || !strings.Contains(err.Error(), "nothing written") {
		t.Errorf("apply of an older file = %v, want ErrGeneration", err)
	}
	e, err := js.KeyValue(ctx, mapping.DefaultConfig().Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.Get(ctx, "dev.1100000000000000000"); err != nil || got.Revision() != 1 || !strings.Contains(string(got.Value()), "1100000000000000103") {
		t.Errorf("stored rule set after the refusals: %v, %v; want generation 2's, version 1", got, err)
	}
}
