package applier

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

func TestHeldRemovalsAreRecheckedWithoutDiscordCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.BrakeMaxCount = 3
	cfg.BrakeMaxShare = 0
	cfg.BrakeRecheck = 100 * time.Millisecond
	logs := &syncBuffer{}
	r := e.startLogged(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	for i := 1; i <= 6; i++ {
		e.putUser(fmtUser(i), member(i), true)
	}
	for i := 1; i <= 6; i++ {
		e.waitRoles(member(i), roleStaff)
	}
	for i := 1; i <= 6; i++ {
		e.putUser(fmtUser(i), member(i), false)
	}
	e.eventually("brake engaged", 20*time.Second, func() (bool, string) {
		bs := r.svc.Brakes()
		return len(bs) == 1 && len(bs[0].Held) == 3, "not yet"
	})
	e.waitIdle(cfg.Durable)
	gets := func() int { return len(e.emu.Recorder().Requests(discordemu.RequestFilter{Route: "member_get"})) }
	rechecks := func() int64 { return r.svc.Metrics().Counters["brake_rechecks_held"] }
	before, rc := gets(), rechecks()
	// Several rounds of rechecks of the three held members.
	e.eventually("held members rechecked", 20*time.Second, func() (bool, string) {
		n := rechecks() - rc
		return n >= 12, fmt.Sprintf("%d rechecks", n)
	})
	if d := gets() - before; d != 0 {
		t.Errorf("%d member GETs while 3 removals stay held, want 0 (a recheck reads the brake record only)", d)
	}
	if n := strings.Count(logs.String(), `"level":"WARN"`+`,"msg":"mass-removal brake engaged`); n != 1 {
		t.Errorf("%d WARN lines for one brake event, want 1:\n%s", n, grepLines(logs.String(), "brake"))
	}
	// Allowed: the held removals proceed.
	r.svc.AllowRemovals(e.ctx, guildID)
	for i := 1; i <= 6; i++ {
		e.waitRoles(member(i))
	}
}

func grepLines(s, sub string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
