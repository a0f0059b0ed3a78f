package mapping_test

import (
	"context"
	"testing"
	"time"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/services/mapping"
)

// The watch of a replica loses its consumer (caused: deleted on the server);
// the resync check notices the bucket is ahead and restarts the watch.
func TestWatchRecoversWhenItsConsumerIsLost(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	_, a := startService(t, devConfig(t), mapping.Deps{JS: js})
	_, b := startService(t, devConfig(t), mapping.Deps{JS: js})
	ctx := context.Background()
	st, err := js.Stream(ctx, "KV_mapping_rules")
	if err != nil {
		t.Fatal(err)
	}
	names := st.ConsumerNames(ctx)
	n := 0
	for name := range names.Name() {
		if err := st.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("deleted %d watch consumers, want 2 (one per replica)", n)
	}
	cur, _ := a.GetRuleSet(ctx, &mappingv1.GetRuleSetRequest{TenantId: "dev", GuildId: devGuild})
	put, err := a.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: "dev", GuildId: devGuild, Yaml: staffOnly, ExpectedVersion: cur.GetRuleSet().GetVersion()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "replica b to serve the new version", func() bool {
		r := resolveDev(t, b, &mappingv1.ResolveRolesRequest{Active: true})
		return r.GetRulesVersion() == put.GetRuleSet().GetVersion()
	})
	t.Logf("replica b converged in %s after losing its watch", time.Since(start))
}
