package applier

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

func TestPreflightNamesEveryRoleTheBotCannotManage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	reps, err := r.svc.Preflight(e.ctx)
	if err != nil || len(reps) != 1 || !reps[0].OK() || !reps[0].CanManageRoles {
		t.Fatalf("preflight of the dev guild = %+v, %v; want ok", reps, err)
	}

	if _, err := e.emu.Admin().EditRole(e.ctx, guildID, roleDesign, discordemu.RolePatch{Position: intp(10)}); err != nil {
		t.Fatalf("move role: %v", err)
	}
	e.mapping.mu.Lock()
	e.mapping.rules["Ghosts"] = "1100000000000000666"
	e.mapping.mu.Unlock()
	reps, err = r.svc.Preflight(e.ctx)
	if err != nil || len(reps) != 1 {
		t.Fatalf("preflight = %+v, %v", reps, err)
	}
	issues := strings.Join(reps[0].Issues, "\n")
	for _, want := range []string{roleDesign + " (Design) is at position", "1100000000000000666 does not exist"} {
		if !strings.Contains(issues, want) {
			t.Errorf("issues %q do not mention %q", issues, want)
		}
	}
	if len(reps[0].Issues) != 2 {
		t.Errorf("issues = %q, want exactly 2", reps[0].Issues)
	}
}

// The preflight runs again when mapping answers with a new rules version: a
// rule that starts managing a role above the bot is reported at once, not at
// the next restart.
func TestPreflightRunsAgainWhenTheRulesChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	logs := &syncBuffer{}
	r := e.startLogged(testConfig(), slog.New(slog.NewJSONHandler(logs, nil)))
	e.eventually("preflight at start", 10*time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), `"msg":"preflight ok"`), "not yet"
	})
	e.putUser("alice", memberAlice, true)
	e.waitRoles(memberAlice, roleStaff)

	// A human moves Moderator above the bot; unmanaged, the preflight does not mind.
	if _, err := e.emu.Admin().EditRole(e.ctx, guildID, roleMod, discordemu.RolePatch{Position: intp(10)}); err != nil {
		t.Fatalf("move role: %v", err)
	}
	// Then the rules change (version 2) to manage it for group Mods.
	e.mapping.mu.Lock()
	e.mapping.rules["Mods"] = roleMod
	e.mapping.version = 2
	e.mapping.mu.Unlock()
	e.putUser("bob", member(2), true) // any reconcile sees the new version
	e.eventually("preflight issue for the newly managed role", 10*time.Second, func() (bool, string) {
		l := logs.String()
		return strings.Contains(l, `"msg":"mapping rules changed, running preflight"`) &&
				strings.Contains(l, `"msg":"preflight issue"`) && strings.Contains(l, roleMod+" (Moderator) is at position"),
			"no preflight issue logged yet"
	})
	_ = r
}
