package mapping

import (
	"testing"

	"github.com/scimcord/scimcord/services/mapping/internal/rules"
)

func TestRegistryNeverGoesBackInVersion(t *testing.T) {
	t.Parallel()
	g := &rules.GuildSpec{ID: "1100000000000000000", Rules: []rules.RuleSpec{{Name: "s", AllActiveUsers: true, Roles: []rules.RoleRef{{ID: "1100000000000000103"}}}}}
	at := func(v uint64) *rules.RuleSet {
		rs, err := rules.Compile("dev", v, g)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	r := newRegistry()
	steps := []struct {
		name    string
		rs      *rules.RuleSet
		version uint64
		want    uint64 // 0: absent
	}{
		{"first version", at(5), 5, 5},
		{"older version delivered late is ignored", at(3), 3, 5},
		{"newer version replaces", at(8), 8, 8},
		{"delete", nil, 9, 0},
		{"version from before the delete does not come back", at(8), 8, 0},
		{"re-created after the delete", at(12), 12, 12},
	}
	for _, s := range steps {
		r.set("dev", g.ID, s.rs, s.version)
		var got uint64
		if rs := r.get("dev", g.ID); rs != nil {
			got = rs.Version
		}
		if got != s.want {
			t.Fatalf("%s: version %d, want %d", s.name, got, s.want)
		}
	}
}
