package rules

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Member is what a rule set is evaluated against: one SCIM user.
type Member struct {
	UserID string
	Active bool
	Groups []Group
	// UserJSON is the SCIM user (for CEL conditions); may be empty.
	UserJSON []byte
}

// Group is one SCIM group of the member.
type Group struct {
	ID, ExternalID, DisplayName string
}

// RuleSet is a compiled rule set of one guild: group keys are indexed and CEL
// conditions compiled, so a resolve costs O(member's groups + CEL rules).
type RuleSet struct {
	Tenant  string
	Guild   string
	Version uint64
	Spec    GuildSpec
	// Source and UpdatedAt describe where the version came from (set by the store).
	Source    string
	UpdatedAt time.Time

	rules     []compiled
	byID      map[string][]int
	byExt     map[string][]int
	byName    map[string][]int // FoldName(displayName)
	allActive []int
	exprOnly  []int // rules with when and no groups
	managed   []RoleRef
}

type compiled struct {
	spec RuleSpec
	expr *Expr
}

// Compile validates and compiles the rule set of one guild.
func Compile(tenant string, version uint64, g *GuildSpec) (*RuleSet, error) {
	exprs, err := validateGuild(g)
	if err != nil {
		return nil, err
	}
	rs := &RuleSet{
		Tenant: tenant, Guild: g.ID, Version: version, Spec: *g,
		byID: map[string][]int{}, byExt: map[string][]int{}, byName: map[string][]int{},
	}
	managed := map[string]RoleRef{}
	for i, r := range g.Rules {
		c := compiled{spec: r}
		if r.When != "" {
			c.expr = exprs[r.When] // compiled (once) by the validation
		}
		rs.rules = append(rs.rules, c)
		switch {
		case r.AllActiveUsers:
			rs.allActive = append(rs.allActive, i)
		case len(r.Groups) == 0:
			rs.exprOnly = append(rs.exprOnly, i)
		}
		for _, gm := range r.Groups {
			switch {
			case gm.ID != "":
				rs.byID[gm.ID] = appendOnce(rs.byID[gm.ID], i)
			case gm.ExternalID != "":
				rs.byExt[gm.ExternalID] = appendOnce(rs.byExt[gm.ExternalID], i)
			default:
				k := FoldName(gm.DisplayName)
				rs.byName[k] = appendOnce(rs.byName[k], i)
			}
		}
		for _, ro := range r.Roles {
			if prev, ok := managed[ro.Key()]; !ok || prev.Name == "" {
				managed[ro.Key()] = ro
			}
		}
	}
	rs.managed = sortedRoles(managed)
	return rs, nil
}

func appendOnce(s []int, i int) []int {
	if n := len(s); n > 0 && s[n-1] == i {
		return s
	}
	return append(s, i)
}

func sortedRoles(m map[string]RoleRef) []RoleRef {
	out := make([]RoleRef, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Managed is every role some rule of the set produces, sorted by Key.
func (rs *RuleSet) Managed() []RoleRef { return rs.managed }

// Len is the number of rules.
func (rs *RuleSet) Len() int { return len(rs.rules) }

// FoldName is the one case-insensitive key of group display names, used by
// Resolve and Explain alike: every rune is replaced by the smallest rune of
// its Unicode simple case-folding orbit, so two names have the same key
// exactly when strings.EqualFold says they are equal ("ΟΔΟΣ" = "οδος";
// "İnfra" ≠ "infra", as U+0130 folds to no ASCII letter).
func FoldName(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		lo := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			lo = min(lo, f)
		}
		// Keep ASCII letters lower-case, like the ASCII path.
		if lo >= 'A' && lo <= 'Z' {
			lo += 'a' - 'A'
		}
		b.WriteRune(lo)
	}
	return b.String()
}

// Resolve returns the roles the member should have, sorted by Key. An
// inactive member gets none. A CEL condition that fails to evaluate does not
// match (Explain reports the error), but a user JSON that is not a readable
// JSON object is an error (ErrUserJSON): the member cannot be resolved, which
// is different from "no CEL rule matches".
func (rs *RuleSet) Resolve(ctx context.Context, m *Member) ([]RoleRef, error) {
	if err := CheckUserJSON(m.UserJSON); err != nil {
		return nil, err
	}
	if !m.Active || len(rs.rules) == 0 {
		return nil, nil
	}
	hit := make(map[string]RoleRef, 4)
	grant := func(i int) {
		for _, ro := range rs.rules[i].spec.Roles {
			if _, ok := hit[ro.Key()]; !ok {
				hit[ro.Key()] = ro
			}
		}
	}
	in := &Input{Member: m}
	matched := make(map[int]bool, 4)
	var bad error
	check := func(i int) {
		if done, ok := matched[i]; ok && done {
			return
		}
		ok := true
		if e := rs.rules[i].expr; e != nil {
			var err error
			if ok, err = e.Eval(ctx, in); errors.Is(err, ErrUserJSON) {
				bad = err
			}
		}
		matched[i] = true
		if ok {
			grant(i)
		}
	}
	for _, g := range m.Groups {
		for _, i := range rs.groupRules(g) {
			check(i)
		}
	}
	for _, i := range rs.allActive {
		grant(i)
	}
	for _, i := range rs.exprOnly {
		check(i)
	}
	if bad != nil {
		return nil, bad
	}
	return sortedRoles(hit), nil
}

// groupRules lists the rules that one of the group's keys matches.
func (rs *RuleSet) groupRules(g Group) []int {
	var out []int
	if g.ID != "" {
		out = append(out, rs.byID[g.ID]...)
	}
	if g.ExternalID != "" {
		out = append(out, rs.byExt[g.ExternalID]...)
	}
	if g.DisplayName != "" {
		out = append(out, rs.byName[FoldName(g.DisplayName)]...)
	}
	return out
}

// RuleOutcome says whether one rule matched the member, and why (not).
type RuleOutcome struct {
	Rule    string
	Matched bool
	Reason  string
	err     error // ErrUserJSON: the member cannot be explained
}

// RoleDecision explains one managed role: granted or not, and every rule that
// produces it with its outcome.
type RoleDecision struct {
	Role    RoleRef
	Granted bool
	Rules   []RuleOutcome
}

// Explain evaluates every rule for the member and explains every managed role.
// The granted roles are exactly those of Resolve; like Resolve, it refuses a
// user JSON that is not a readable JSON object (ErrUserJSON).
func (rs *RuleSet) Explain(ctx context.Context, m *Member) ([]RoleDecision, error) {
	if err := CheckUserJSON(m.UserJSON); err != nil {
		return nil, err
	}
	outcomes := make([]RuleOutcome, len(rs.rules))
	in := &Input{Member: m}
	for i, c := range rs.rules {
		outcomes[i] = rs.explainRule(ctx, c, m, in)
	}
	var out []RoleDecision
	for _, role := range rs.managed {
		d := RoleDecision{Role: role}
		for i, c := range rs.rules {
			for _, ro := range c.spec.Roles {
				if ro.Key() == role.Key() {
					d.Rules = append(d.Rules, outcomes[i])
					d.Granted = d.Granted || outcomes[i].Matched
				}
			}
		}
		out = append(out, d)
	}
	for _, o := range outcomes {
		if o.err != nil {
			return nil, o.err
		}
	}
	return out, nil
}

func (rs *RuleSet) explainRule(ctx context.Context, c compiled, m *Member, in *Input) RuleOutcome {
	o := RuleOutcome{Rule: c.spec.Name}
	if !m.Active {
		o.Reason = "user is not active: inactive users get no managed role"
		return o
	}
	var why []string
	if c.spec.AllActiveUsers {
		o.Matched = true
		o.Reason = "every active user gets it"
		return o
	}
	if len(c.spec.Groups) > 0 {
		g, gm, ok := matchGroup(c.spec.Groups, m.Groups)
		if !ok {
			keys := make([]string, len(c.spec.Groups))
			for i, gm := range c.spec.Groups {
				keys[i] = gm.String()
			}
			o.Reason = "not a member of any of the groups " + strings.Join(keys, ", ")
			return o
		}
		why = append(why, fmt.Sprintf("member of group %q (id %s) matched by %s", g.DisplayName, g.ID, gm))
	}
	if c.expr != nil {
		ok, err := c.expr.Eval(ctx, in)
		switch {
		case err != nil:
			if errors.Is(err, ErrUserJSON) {
				o.err = err
			}
			o.Reason = fmt.Sprintf("condition %q could not be evaluated: %v", c.expr, err)
			return o
		case !ok:
			o.Reason = fmt.Sprintf("condition %q is false", c.expr)
			return o
		}
		why = append(why, fmt.Sprintf("condition %q is true", c.expr))
	}
	o.Matched = true
	o.Reason = strings.Join(why, " and ")
	return o
}

func matchGroup(want []GroupMatch, have []Group) (Group, GroupMatch, bool) {
	for _, gm := range want {
		for _, g := range have {
			switch {
			case gm.ID != "" && gm.ID == g.ID,
				gm.ExternalID != "" && gm.ExternalID == g.ExternalID,
				gm.DisplayName != "" && FoldName(gm.DisplayName) == FoldName(g.DisplayName):
				return g, gm, true
			}
		}
	}
	return Group{}, GroupMatch{}, false
}
