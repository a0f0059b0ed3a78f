package mapping_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/services/mapping"
)

func TestPreviewFileThenApplyFile(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	seedSCIM(t, js, "dev")
	cfg := devConfig(t)
	_, c := startService(t, cfg, mapping.Deps{JS: js})
	ctx := context.Background()
	before, err := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	if err != nil {
		t.Fatal(err)
	}
	changed := writeRules(t, `generation: 1
tenants:
  - id: dev
    guilds:
      - id: "1100000000000000000"
        rules:
          - name: engineering
            groups: [{display_name: Engineering}]
            roles: [{id: "1100000000000000101", name: Engineering}, {id: "1100000000000000104", name: Moderator}]
          - name: design
            groups: [{display_name: Design}]
            roles: [{id: "1100000000000000102", name: Design}]
          - name: staff
            all_active_users: true
            roles: [{id: "1100000000000000103", name: Staff}]
`)
	// The dry run: a plan with the blast radius, nothing written.
	plan, err := mapping.PreviewFile(ctx, js, cfg.Bucket, changed)
	if err != nil {
		t.Fatalf("PreviewFile: %v", err)
	}
	if len(plan.Guilds) != 1 || plan.Guilds[0].Action != mapping.ActionUpdate || plan.Guilds[0].CurrentVersion != before.GetRuleSet().GetVersion() {
		t.Fatalf("plan = %+v", plan.Guilds)
	}
	var out bytes.Buffer
	if err := plan.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"guild 1100000000000000000: update", "members scanned: 3, changing: 1", "u01 (alice, discord 1100000000000001001): +Moderator (1100000000000000104)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan text lacks %q:\n%s", want, out.String())
		}
	}
	if v, _ := c.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild}); v.GetRuleSet().GetVersion() != before.GetRuleSet().GetVersion() {
		t.Fatal("PreviewFile wrote")
	}
	// Apply: the running service serves it soon after.
	if err := mapping.ApplyFile(ctx, js, plan); err != nil {
		t.Fatalf("ApplyFile: %v", err)
	}
	waitFor(t, 5*time.Second, "the service to serve the applied file", func() bool {
		r := resolveDev(t, c, &mappingv1.ResolveRolesRequest{Active: true, Groups: []*mappingv1.GroupRef{{DisplayName: "Engineering"}}})
		return slices.Equal(r.GetRoleIds(), []string{roleEng, roleStaff, "1100000000000000104"})
	})
	// The same plan again is stale.
	if err := mapping.ApplyFile(ctx, js, plan); !errors.Is(err, mapping.ErrConflict) {
		t.Errorf("stale ApplyFile = %v, want ErrConflict", err)
	}
	// Previewing the applied file again changes nothing.
	again, err := mapping.PreviewFile(ctx, js, cfg.Bucket, changed)
	if err != nil || again.Guilds[0].Action != mapping.ActionUnchanged || len(again.Guilds[0].Preview.Changes) != 0 {
		t.Errorf("second preview = %+v, %v", again, err)
	}
	// The file it replaced (generation 0) is older now: refused, nothing written.
	stale, err := mapping.PreviewFile(ctx, js, cfg.Bucket, cfg.RulesFile)
	if err != nil || stale.Guilds[0].Action != mapping.ActionRefuse || !strings.Contains(stale.Guilds[0].Refusal, "older than generation 1") {
		t.Fatalf("preview of the older file = %+v, %v; want refused", stale, err)
	}
	out.Reset()
	_ = stale.WriteText(&out)
	if !strings.Contains(out.String(), "refused: ") {
		t.Errorf("plan text lacks the refusal:\n%s", out.String())
	}
	if err := mapping.ApplyFile(ctx, js, stale); !errors.Is(err, mapping.ErrGeneration) || !strings.Contains(err.Error(), "nothing written") {
		t.Errorf("ApplyFile(older file) = %v, want ErrGeneration", err)
	}
	// The same generation with different rules is refused too.
	same := writeRules(t, "generation: 1\n"+mappingYAML(devGuild, roleStaff))
	conflict, err := mapping.PreviewFile(ctx, js, cfg.Bucket, same)
	if err != nil || conflict.Guilds[0].Action != mapping.ActionRefuse || !strings.Contains(conflict.Guilds[0].Refusal, "raise `generation:`") {
		t.Errorf("preview of a different file of the same generation = %+v, %v; want refused", conflict, err)
	}
	// A file that does not validate yields no plan.
	if _, err := mapping.PreviewFile(ctx, js, cfg.Bucket, writeRules(t, "tenants: [{id: dev}]\n")); err == nil {
		t.Error("PreviewFile accepted a file without guilds")
	}
}
