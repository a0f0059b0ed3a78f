package applier

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

func TestDiffKeepsUnmanagedRolesAndComputesTheGap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                      string
		current, desired, managed []string
		add, rm, target           []string
	}{
		{name: "nothing to do", current: []string{"m1", "x"}, desired: []string{"m1"}, managed: []string{"m1", "m2"},
			target: []string{"m1", "x"}},
		{name: "add one", current: []string{"x"}, desired: []string{"m1"}, managed: []string{"m1"},
			add: []string{"m1"}, target: []string{"x", "m1"}},
		{name: "remove one and keep the unmanaged", current: []string{"x", "m2", "y"}, managed: []string{"m2"},
			rm: []string{"m2"}, target: []string{"x", "y"}},
		{name: "swap", current: []string{"m2"}, desired: []string{"m1"}, managed: []string{"m1", "m2"},
			add: []string{"m1"}, rm: []string{"m2"}, target: []string{"m1"}},
		{name: "a desired role the rules forgot to list is still managed", current: nil, desired: []string{"m9"},
			add: []string{"m9"}, target: []string{"m9"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			add, rm, target := diff(tc.current, tc.desired, tc.managed)
			if !slices.Equal(add, tc.add) || !slices.Equal(rm, tc.rm) || !slices.Equal(target, tc.target) {
				t.Errorf("diff = add %v rm %v target %v, want %v %v %v", add, rm, target, tc.add, tc.rm, tc.target)
			}
		})
	}
}

func TestEncodeReasonRoundTripsThroughDiscordDecoding(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"scimcord: add role 1 user u1 (trace abc)", "café + ünïcode & 100%", "a/b?c=d#e", ""} {
		enc := encodeReason(s)
		got, ok := discordemu.DecodeAuditReason(enc)
		if !ok || got != s {
			t.Errorf("encodeReason(%q) = %q decodes to %q, %v", s, enc, got, ok)
		}
	}
}

func FuzzEncodeReason(f *testing.F) {
	f.Add("scimcord: set roles user u1")
	f.Add("ü\x00%zz+")
	f.Fuzz(func(t *testing.T, s string) {
		enc := encodeReason(s)
		for i := 0; i < len(enc); i++ {
			if enc[i] >= 0x80 || enc[i] == ' ' || enc[i] == '+' {
				t.Fatalf("encodeReason(%q) = %q keeps byte %q", s, enc, enc[i])
			}
		}
		got, ok := discordemu.DecodeAuditReason(enc)
		if utf8.ValidString(s) && len(s) <= maxReasonBytes && (!ok || got != s) {
			t.Fatalf("round trip of %q: %q, %v", s, got, ok)
		}
	})
}

func TestRouteTemplateHidesIDs(t *testing.T) {
	t.Parallel()
	got := routeTemplate("/api/v9/guilds/123/members/456/roles/789")
	if got != "/api/v9/guilds/{id}/members/{id}/roles/{id}" || majorOf("/api/v9/guilds/123/members/4") != "123" {
		t.Errorf("routeTemplate = %q", got)
	}
}

func TestConfigValidateNamesTheBadField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{name: "zero global rate", mod: func(c *Config) { c.GlobalRPS = 0 }, want: "GlobalRPS"},
		{name: "bad durable", mod: func(c *Config) { c.Durable = "a.b" }, want: "Durable"},
		{name: "no workers", mod: func(c *Config) { c.Workers = 0 }, want: "Workers"},
		{name: "share above one", mod: func(c *Config) { c.BrakeMaxShare = 2 }, want: "BrakeMaxShare"},
		{name: "negative drift", mod: func(c *Config) { c.DriftInterval = -1 }, want: "DriftInterval"},
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			tc.mod(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestCoalescerRunsOnceForMessagesThatArriveDuringARun(t *testing.T) {
	t.Parallel()
	c := newCoalescer()
	var runs atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	fn := func(ctx context.Context, mark func(), stale func() bool) error {
		mark()
		if runs.Add(1) == 1 {
			started <- struct{}{}
			<-release
		}
		return nil
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Do(context.Background(), "k", fn) }()
	<-started
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Do(context.Background(), "k", fn) }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := c.m["k"].refs
		c.mu.Unlock()
		if n == 21 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 2 {
		t.Errorf("21 messages ran %d reconciles, want 2 (the busy one and one for the rest)", n)
	}
}

func TestMetricsHandlerServesPrometheusText(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putUser("alice", memberAlice, true)
	e.waitState(r, "alice", StateInSync)
	rec := httptest.NewRecorder()
	r.svc.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`scimcord_applier_discord_calls_total{route="PUT /guilds/{g}/members/{u}/roles/{r}",status="204"} 1`,
		"scimcord_applier_queue_pending 0", "scimcord_applier_reconciles_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
