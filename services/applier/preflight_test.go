package applier

import (
	"strings"
	"testing"

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
