package mapping

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/scimcord/scimcord/services/mapping/internal/rules"
)

// setKey names one rule set.
type setKey struct{ tenant, guild string }

// registry holds the compiled rule sets that the service serves. Readers get
// an immutable snapshot without locks; writers copy on write.
type registry struct {
	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[map[setKey]*rules.RuleSet]
	// gone holds the version at which a rule set was deleted, so that an
	// older version delivered late cannot bring it back (guarded by mu).
	gone map[setKey]uint64
}

func newRegistry() *registry {
	r := &registry{gone: map[setKey]uint64{}}
	m := map[setKey]*rules.RuleSet{}
	r.snap.Store(&m)
	return r
}

// get returns the rule set of a guild, or nil.
func (r *registry) get(tenant, guild string) *rules.RuleSet {
	return (*r.snap.Load())[setKey{tenant, guild}]
}

// all returns every rule set sorted by tenant and guild.
func (r *registry) all() []*rules.RuleSet {
	m := *r.snap.Load()
	out := make([]*rules.RuleSet, 0, len(m))
	for _, rs := range m {
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Guild < out[j].Guild
	})
	return out
}

// tenant returns the tenant's rule sets sorted by guild.
func (r *registry) tenant(tenant string) []*rules.RuleSet {
	var out []*rules.RuleSet
	for _, rs := range r.all() {
		if rs.Tenant == tenant {
			out = append(out, rs)
		}
	}
	return out
}

// set installs (rs != nil) or removes (rs == nil) one rule set. An older
// version never replaces a newer one.
func (r *registry) set(tenant, guild string, rs *rules.RuleSet, version uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.snap.Load()
	k := setKey{tenant, guild}
	if cur, ok := old[k]; ok && cur.Version > version {
		return
	}
	if v, ok := r.gone[k]; ok && v > version {
		return
	}
	m := make(map[setKey]*rules.RuleSet, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	if rs == nil {
		delete(m, k)
		r.gone[k] = version
	} else {
		m[k] = rs
		delete(r.gone, k)
	}
	r.snap.Store(&m)
}

// loadFile installs every rule set of a file at version 1 (no store).
func (r *registry) loadFile(f *rules.File) error {
	for _, t := range f.Tenants {
		for i := range t.Guilds {
			rs, err := rules.Compile(t.ID, 1, &t.Guilds[i])
			if err != nil {
				return err
			}
			r.set(t.ID, rs.Guild, rs, 1)
		}
	}
	return nil
}
