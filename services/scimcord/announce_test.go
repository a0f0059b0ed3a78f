package scimcord_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/services/scimcord"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestRun_ReadyIsAJSONRecordAndTokensNeverEnterTheLog: the start-up facts
// are one structured "scimcord ready" record (every log line stays JSON, so
// jq works on the log file) naming the token files; generated tokens go to
// Deps.Out once (the terminal), never into the log stream.
func TestRun_ReadyIsAJSONRecordAndTokensNeverEnterTheLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() (logs, out string, sys *scimcord.System) {
		cfg := scimcord.DefaultConfig()
		cfg.DataDir, cfg.HTTPAddr, cfg.EmulatorAddr = dir, "127.0.0.1:0", "127.0.0.1:0"
		cfg.MappingFile, cfg.FixtureFile = "../../deploy/dev/mapping.yaml", "../../deploy/dev/guild.yaml"
		var lb, ob lockedBuf
		sys, err := scimcord.New(cfg, scimcord.Deps{Logger: telemetry.NewLogger(&lb, slog.LevelInfo), Out: &ob})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sys.Run(ctx) }()
		select {
		case <-sys.Ready():
		case err := <-done:
			t.Fatalf("not ready: %v", err)
		}
		cancel()
		<-done
		return lb.String(), ob.String(), sys
	}
	logs, out, sys := start()
	for _, tok := range []string{sys.Token(), sys.AdminToken()} {
		if strings.Contains(logs, tok) {
			t.Fatalf("a generated token is in the log stream:\n%s", logs)
		}
		if strings.Count(out, tok) != 1 {
			t.Fatalf("first start: token %q… printed %d times to Out:\n%s", tok[:8], strings.Count(out, tok), out)
		}
	}
	var ready map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON (%v): %q", err, line)
		}
		if rec["msg"] == "scimcord ready" {
			ready = rec
		}
	}
	if ready == nil {
		t.Fatalf("no \"scimcord ready\" record:\n%s", logs)
	}
	for _, k := range []string{"scim_base_url", "status_page", "operator_api", "metrics_url", "emulator_url", "scim_token_file", "admin_token_file"} {
		if s, _ := ready[k].(string); s == "" {
			t.Errorf("ready record lacks %s: %v", k, ready)
		}
	}
	if ready["scim_token_generated"] != true || ready["admin_token_generated"] != true {
		t.Errorf("first start: generated flags %v %v", ready["scim_token_generated"], ready["admin_token_generated"])
	}
	logs, out, sys = start() // the tokens are kept: not generated, not printed again
	if out != "" || strings.Contains(logs, sys.Token()) || strings.Contains(logs, sys.AdminToken()) {
		t.Fatalf("second start printed %q; log has a token: %v", out, strings.Contains(logs, sys.Token()))
	}
}
