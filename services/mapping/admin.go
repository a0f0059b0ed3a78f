package mapping

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/scimcord/scimcord/services/mapping/internal/rules"
)

func infoOf(rs *rules.RuleSet) RuleSetInfo {
	return RuleSetInfo{Tenant: rs.Tenant, Guild: rs.Guild, Version: rs.Version, Source: rs.Source,
		UpdatedAt: rs.UpdatedAt, Spec: rs.Spec}
}

// ListRuleSets lists the served rule sets of a tenant (every tenant when empty).
func (s *Service) ListRuleSets(ctx context.Context, tenant string) ([]RuleSetInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []RuleSetInfo
	for _, rs := range s.rules.all() {
		if tenant == "" || rs.Tenant == tenant {
			out = append(out, infoOf(rs))
		}
	}
	return out, nil
}

// GetRuleSet returns one rule set as stored (the authoritative version for a
// compare-and-set write), or as served when there is no store.
func (s *Service) GetRuleSet(ctx context.Context, tenant, guild string) (RuleSetInfo, error) {
	if err := checkMember(tenant, guild); err != nil {
		return RuleSetInfo{}, err
	}
	if s.js == nil {
		rs := s.rules.get(tenant, guild)
		if rs == nil {
			return RuleSetInfo{}, fmt.Errorf("get tenant %q guild %s: %w", tenant, guild, ErrNotFound)
		}
		return infoOf(rs), nil
	}
	kv, err := s.bucket()
	if err != nil {
		return RuleSetInfo{}, err
	}
	st, rev, err := readSet(ctx, kv, setKeyString(tenant, guild))
	if err != nil {
		return RuleSetInfo{}, err
	}
	if st == nil || st.Deleted {
		return RuleSetInfo{}, fmt.Errorf("get tenant %q guild %s: %w", tenant, guild, ErrNotFound)
	}
	st.Rules.ID = guild
	return RuleSetInfo{Tenant: tenant, Guild: guild, Version: rev, Source: st.Source, UpdatedAt: st.UpdatedAt, Spec: st.Rules}, nil
}

// PutRuleSet validates doc (YAML or JSON, `rules: [...]`) as the rule set of
// the guild and stores it if the current version is expected (0: no live rule
// set). Invalid rules (errors.Is rules.ErrInvalid, with every problem listed)
// never reach the store; a lost race is ErrConflict.
func (s *Service) PutRuleSet(ctx context.Context, tenant, guild string, doc []byte, expected uint64) (info RuleSetInfo, err error) {
	defer func() { s.countWrite(err) }()
	g, err := rules.DecodeGuild(tenant, guild, doc)
	if err != nil {
		return RuleSetInfo{}, err
	}
	rs, err := rules.Compile(tenant, 0, g)
	if err != nil {
		return RuleSetInfo{}, err
	}
	kv, err := s.bucket()
	if err != nil {
		return RuleSetInfo{}, err
	}
	key := setKeyString(tenant, guild)
	rev := expected
	if expected == 0 {
		// A deleted rule set is a tombstone record: creating over it is allowed.
		cur, curRev, err := readSet(ctx, kv, key)
		if err != nil {
			return RuleSetInfo{}, err
		}
		if cur != nil && !cur.Deleted {
			return RuleSetInfo{}, fmt.Errorf("create tenant %q guild %s: exists at version %d: %w", tenant, guild, curRev, ErrConflict)
		}
		rev = curRev
	}
	now := time.Now().UTC()
	st := &storedSet{Tenant: tenant, Guild: guild, Source: "api", UpdatedAt: now, Rules: *g}
	n, err := writeSet(ctx, kv, key, st, rev)
	if err != nil {
		return RuleSetInfo{}, err
	}
	// Serve it here at once; the watch brings it to the other replicas.
	rs.Version, rs.Source, rs.UpdatedAt = n, st.Source, now
	s.rules.set(tenant, guild, rs, n)
	s.log.InfoContext(ctx, "rule set written", "tenant", tenant, "guild", guild, "version", n, "previous_version", expected, "rules", rs.Len())
	return infoOf(rs), nil
}

// DeleteRuleSet deletes the guild's rule set if its version is expected. The
// guild then has no managed roles: members keep the roles they have.
func (s *Service) DeleteRuleSet(ctx context.Context, tenant, guild string, expected uint64) (version uint64, err error) {
	defer func() { s.countWrite(err) }()
	if err := checkMember(tenant, guild); err != nil {
		return 0, err
	}
	if expected == 0 {
		return 0, fmt.Errorf("%w: expected_version is required for a delete", errBadRequest)
	}
	kv, err := s.bucket()
	if err != nil {
		return 0, err
	}
	key := setKeyString(tenant, guild)
	cur, rev, err := readSet(ctx, kv, key)
	if err != nil {
		return 0, err
	}
	if cur == nil || cur.Deleted {
		return 0, fmt.Errorf("delete tenant %q guild %s: %w", tenant, guild, ErrNotFound)
	}
	if rev != expected {
		return 0, fmt.Errorf("delete tenant %q guild %s: at version %d, not %d: %w", tenant, guild, rev, expected, ErrConflict)
	}
	cur.Deleted, cur.Source, cur.UpdatedAt = true, "api", time.Now().UTC()
	n, err := writeSet(ctx, kv, key, cur, expected)
	if err != nil {
		return 0, err
	}
	s.rules.set(tenant, guild, nil, n)
	s.log.InfoContext(ctx, "rule set deleted", "tenant", tenant, "guild", guild, "version", n)
	return n, nil
}

func (s *Service) countWrite(err error) {
	switch {
	case err == nil:
		s.metrics.writes.Add(1)
	case errors.Is(err, rules.ErrInvalid), errors.Is(err, errBadRequest):
		s.metrics.writeRejected.Add(1)
	case errors.Is(err, ErrConflict):
		s.metrics.writeConflict.Add(1)
	}
}
