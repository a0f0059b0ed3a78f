package main

import (
	"context"
	"strings"
	"testing"
)

func TestRun_OperatorCommandsNeedTheAdminToken(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, map[string]string{"SCIMCORD_ADMIN_TOKEN": "x"}, "unknown command"},
		{"status without a token", []string{"status", "alice"}, nil, "SCIMCORD_ADMIN_TOKEN"},
		{"bad output format", []string{"status", "alice", "-o", "yaml"}, map[string]string{"SCIMCORD_ADMIN_TOKEN": "x"}, "-o must be"},
		{"bad server URL", []string{"--server", "ftp://x", "dlq", "list"}, map[string]string{"SCIMCORD_ADMIN_TOKEN": "x"}, "--server"},
		{"no server listening", []string{"--server", "http://127.0.0.1:1", "dlq", "list"}, map[string]string{"SCIMCORD_ADMIN_TOKEN": "x"}, "connect"},
		{"the server follows SCIMCORD_HTTP_ADDR", []string{"dlq", "list"}, map[string]string{"SCIMCORD_ADMIN_TOKEN": "x", "SCIMCORD_HTTP_ADDR": "127.0.0.1:1"}, "127.0.0.1:1/admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := run(context.Background(), tc.args, env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run %v: %v, want an error with %q", tc.args, err, tc.want)
			}
		})
	}
}
