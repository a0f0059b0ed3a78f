package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimcord/scimcord/pkg/natsembed"
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
