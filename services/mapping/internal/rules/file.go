// Package rules decodes, validates, compiles and evaluates mapping rules: the
// policy that turns a SCIM user's groups and attributes into the Discord roles
// they should have in a guild.
package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// File is a rules file (SCIMCORD_MAPPING): rule sets per tenant and guild.
type File struct {
	// Generation orders rules files: raise it with every change. A replica
	// never seeds a file older than the generation stored with the rule sets,
	// and refuses a file of the same generation with different rules.
	// Optional: absent is 0.
	Generation int64        `yaml:"generation,omitempty" json:"generation,omitempty"`
	Tenants    []TenantSpec `yaml:"tenants" json:"tenants"`
}

// TenantSpec holds the rule sets of one tenant (one IdP connection).
type TenantSpec struct {
	ID     string      `yaml:"id" json:"id"`
	Guilds []GuildSpec `yaml:"guilds" json:"guilds"`
}

// GuildSpec is the rule set of one guild. It is also the unit stored,
// versioned and edited through the admin API.
type GuildSpec struct {
	ID    string     `yaml:"id,omitempty" json:"id,omitempty"`
	Rules []RuleSpec `yaml:"rules" json:"rules"`
}

// RuleSpec is one rule: a condition and the roles it grants. The condition is
// all_active_users, or groups, or when, or groups and when together (both must
// hold). Every rule applies to active users only: an inactive user gets no
// managed role.
type RuleSpec struct {
	// Name identifies the rule in explanations and errors; unique in the guild.
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// AllActiveUsers grants the roles to every active user (the default role).
	AllActiveUsers bool `yaml:"all_active_users,omitempty" json:"all_active_users,omitempty"`
	// Groups matches when the user is in any of these groups.
	Groups []GroupMatch `yaml:"groups,omitempty" json:"groups,omitempty"`
	// When is a CEL expression over the SCIM user that must be true.
	When string `yaml:"when,omitempty" json:"when,omitempty"`
	// Roles are granted when the rule matches.
	Roles []RoleRef `yaml:"roles" json:"roles"`
}

// GroupMatch selects a SCIM group by exactly one of its keys. IdPs differ in
// which key is stable: id (scimcord's), externalId (the IdP's) or displayName
// (compared case-insensitively).
type GroupMatch struct {
	ID          string `yaml:"id,omitempty" json:"id,omitempty"`
	ExternalID  string `yaml:"external_id,omitempty" json:"external_id,omitempty"`
	DisplayName string `yaml:"display_name,omitempty" json:"display_name,omitempty"`
}

// String describes the match for explanations.
func (g GroupMatch) String() string {
	switch {
	case g.ID != "":
		return "id=" + strconv.Quote(g.ID)
	case g.ExternalID != "":
		return "externalId=" + strconv.Quote(g.ExternalID)
	default:
		return "displayName=" + strconv.Quote(g.DisplayName)
	}
}

// RoleRef names a Discord role by id, or by name (resolved against the guild's
// roles by whoever knows them). With both, the id decides and the name is a label.
type RoleRef struct {
	ID   string `yaml:"id,omitempty" json:"id,omitempty"`
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
}

// Key is the identity of the role within a rule set: its id, or "name:<name>".
func (r RoleRef) Key() string {
	if r.ID != "" {
		return r.ID
	}
	return "name:" + r.Name
}

// String describes the role for explanations.
func (r RoleRef) String() string {
	switch {
	case r.ID != "" && r.Name != "":
		return r.Name + " (" + r.ID + ")"
	case r.ID != "":
		return r.ID
	default:
		return "name " + strconv.Quote(r.Name)
	}
}

// Limits bound what one rule set may hold.
const (
	MaxRules          = 10000
	MaxGroupsPerRule  = 1000
	MaxRolesPerRule   = 250 // Discord's role limit per guild
	MaxExprLen        = 4096
	MaxNameLen        = 100
	MaxDescriptionLen = 1000
	MaxFileBytes      = 8 << 20
)

// ErrInvalid is matched (errors.Is) by every validation error.
var ErrInvalid = errors.New("rules: invalid")

// FieldError is one problem of a rule file: where (path and line), in which
// rule, and what is wrong.
type FieldError struct {
	// Path is the field, such as tenants[0].guilds[0].rules[2].groups[1].
	Path string
	// Line is the 1-based line in the YAML document (0 when unknown).
	Line int
	// Rule is the rule's name (or #index when it has none), if the field is in a rule.
	Rule string
	// Problem says what is wrong.
	Problem string
}

func (e FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %s: ", e.Rule)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// ValidationError lists every problem found; one problem rejects the whole write.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Errors) == 1 {
		return "invalid rules: " + e.Errors[0].Error()
	}
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return fmt.Sprintf("invalid rules (%d problems): %s", len(e.Errors), strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

var (
	snowflakeRE = regexp.MustCompile(`^[0-9]{17,20}$`)
	ruleNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	tenantRE    = regexp.MustCompile(`^[A-Za-z0-9_=-]{1,64}$`)
	yamlLineRE  = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// IsEveryone reports whether a role name is Discord's default role
// (@everyone, whose id is the guild id): it can never be granted.
func IsEveryone(name string) bool {
	return strings.EqualFold(strings.TrimSpace(name), "@everyone")
}

// ValidSnowflake reports whether s looks like a Discord id.
func ValidSnowflake(s string) bool { return snowflakeRE.MatchString(s) }

// ValidTenant reports whether s can be a tenant id (one key token).
func ValidTenant(s string) bool { return tenantRE.MatchString(s) }

// DecodeFile decodes and validates a rules file strictly: unknown fields,
// duplicate keys, several documents and every semantic problem are errors.
// CEL expressions are compiled too, so a file that decodes can be served.
func DecodeFile(data []byte) (*File, error) {
	var f File
	lines, err := decodeStrict(data, &f)
	if err != nil {
		return nil, err
	}
	v := &validator{lines: lines}
	v.file(&f)
	if err := v.err(); err != nil {
		return nil, err
	}
	return &f, nil
}

// DecodeGuild decodes and validates the rule set of one guild (the body of the
// admin API's put, YAML or JSON). An id in the document must match guildID;
// when absent it is set.
func DecodeGuild(tenant, guildID string, data []byte) (*GuildSpec, error) {
	var g GuildSpec
	lines, err := decodeStrict(data, &g)
	if err != nil {
		return nil, err
	}
	v := &validator{lines: lines}
	if !ValidTenant(tenant) {
		v.add("tenant_id", "", fmt.Sprintf("tenant id %q: want 1-64 characters of A-Z a-z 0-9 _ = -", tenant))
	}
	if !ValidSnowflake(guildID) {
		v.add("guild_id", "", fmt.Sprintf("guild id %q: want a Discord snowflake (17-20 digits)", guildID))
	}
	if g.ID != "" && g.ID != guildID {
		v.add("id", "", fmt.Sprintf("guild id %q in the document differs from %q in the request", g.ID, guildID))
	}
	g.ID = guildID
	v.guild("", &g)
	if err := v.err(); err != nil {
		return nil, err
	}
	return &g, nil
}

// ValidateGuild validates an already decoded rule set (with its guild id).
func ValidateGuild(g *GuildSpec) error {
	_, err := validateGuild(g)
	return err
}

// validateGuild validates g and returns its compiled conditions by source.
func validateGuild(g *GuildSpec) (map[string]*Expr, error) {
	v := &validator{exprs: map[string]*Expr{}}
	if !ValidSnowflake(g.ID) {
		v.add("id", "", fmt.Sprintf("guild id %q: want a Discord snowflake (17-20 digits)", g.ID))
	}
	v.guild("", g)
	return v.exprs, v.err()
}

// EncodeGuild renders a rule set as YAML (the stored and the API form).
func EncodeGuild(g *GuildSpec) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(g); err != nil {
		return nil, fmt.Errorf("rules: encode guild %s: %w", g.ID, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rules: encode guild %s: %w", g.ID, err)
	}
	return buf.Bytes(), nil
}

func decodeStrict(data []byte, out any) (map[string]int, error) {
	if len(data) > MaxFileBytes {
		return nil, &ValidationError{Errors: []FieldError{{Problem: fmt.Sprintf("document is %d bytes, over the %d limit", len(data), MaxFileBytes)}}}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ValidationError{Errors: []FieldError{{Problem: "document is empty"}}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(err, nil)
	}
	if n := wideMapping(&root); n != nil {
		// yaml.v3's duplicate-key check is quadratic in the keys of a mapping
		// (30,000 keys take seconds): no part of a rules file has more than
		// a handful of fields, so refuse before decoding.
		return nil, &ValidationError{Errors: []FieldError{{Line: n.Line,
			Problem: fmt.Sprintf("a mapping with %d keys: no part of a rules file has more than %d fields", len(n.Content)/2, maxMappingKeys)}}}
	}
	idx := &docIndex{lines: map[string]int{}, names: map[string]string{}}
	if len(root.Content) > 0 {
		indexLines(root.Content[0], "", idx)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return nil, yamlError(err, idx)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, yamlError(err, idx)
		}
		return nil, &ValidationError{Errors: []FieldError{{Line: line, Problem: "more than one YAML document: put every tenant in one document"}}}
	}
	return idx.lines, nil
}

// maxMappingKeys bounds the keys of one YAML mapping (a rule has 6 fields).
const maxMappingKeys = 16

// wideMapping returns the first mapping node with more than maxMappingKeys
// keys, or nil; it visits every node once (aliases are not followed).
func wideMapping(root *yaml.Node) *yaml.Node {
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.MappingNode && len(n.Content)/2 > maxMappingKeys {
			return n
		}
		stack = append(stack, n.Content...)
	}
	return nil
}

// docIndex locates the fields of a YAML document: the line of every path and
// the name of every list item that has one (by the item's path).
type docIndex struct {
	lines   map[string]int
	names   map[string]string
	byField map[lineField]string // built on the first unknown field
}

// lineField is a field name on a line.
type lineField struct {
	line  int
	field string
}

var (
	unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	ruleIndexRE    = regexp.MustCompile(`^(.*rules\[\d+\])`)
	listIndexRE    = regexp.MustCompile(`\[\d+\]`)
	// goTypes are the decoder's type names, as a reader of the file knows them.
	goTypes = strings.NewReplacer(
		"[]rules.TenantSpec", "list of tenants", "[]rules.GuildSpec", "list of guilds",
		"[]rules.RuleSpec", "list of rules", "[]rules.GroupMatch", "list of groups", "[]rules.RoleRef", "list of roles",
		"rules.File", "rules file", "rules.TenantSpec", "tenant", "rules.GuildSpec", "guild",
		"rules.RuleSpec", "rule", "rules.GroupMatch", "group match", "rules.RoleRef", "role",
	)
	// knownFields lists the fields of each part of a rules file, for errors.
	knownFields = []struct{ suffix, fields string }{
		{".groups[]", "id, external_id, display_name"},
		{".roles[]", "id, name"},
		{"rules[]", "name, description, all_active_users, groups, when, roles"},
		{".guilds[]", "id, rules"},
		{"tenants[]", "id, guilds"},
	}
)

// yamlError turns a yaml.v3 error into a ValidationError with line numbers,
// and for an unknown field the path and rule it is in (idx may be nil).
func yamlError(err error, idx *docIndex) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		ve := &ValidationError{}
		for _, msg := range te.Errors {
			fe := FieldError{Problem: msg}
			if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
				fe.Line, _ = strconv.Atoi(m[1])
				fe.Problem = m[2]
			}
			if m := unknownFieldRE.FindStringSubmatch(fe.Problem); m != nil {
				fe.Path, fe.Rule, fe.Problem = idx.unknownField(fe.Line, m[1])
			} else {
				fe.Problem = goTypes.Replace(fe.Problem)
			}
			ve.Errors = append(ve.Errors, fe)
		}
		return ve
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := FieldError{Problem: "not valid YAML: " + msg}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Problem = "not valid YAML: " + m[2]
	}
	return &ValidationError{Errors: []FieldError{fe}}
}

// unknownField describes the unknown field named field on line: its path, the
// rule it is in, and the fields that are allowed there.
func (idx *docIndex) unknownField(line int, field string) (path, rule, problem string) {
	problem = fmt.Sprintf("unknown field %q", field)
	if idx == nil {
		return "", "", problem
	}
	if idx.byField == nil {
		// One pass, so that many unknown fields cost O(fields), not O(fields²).
		idx.byField = make(map[lineField]string, len(idx.lines))
		for p, l := range idx.lines {
			k := lineField{l, p[strings.LastIndex(p, ".")+1:]}
			if cur, ok := idx.byField[k]; !ok || p < cur {
				idx.byField[k] = p
			}
		}
	}
	path = idx.byField[lineField{line, field}]
	if path == "" {
		return "", "", problem
	}
	if m := ruleIndexRE.FindStringSubmatch(path); m != nil {
		rule = idx.names[m[1]]
		if rule == "" {
			rule = "#" + m[1][strings.LastIndex(m[1], "[")+1:len(m[1])-1]
		}
	}
	parent := strings.TrimSuffix(strings.TrimSuffix(path, field), ".")
	generic := listIndexRE.ReplaceAllString(parent, "[]")
	allowed := "generation, tenants"
	if parent != "" {
		allowed = ""
		for _, k := range knownFields {
			if strings.HasSuffix(generic, k.suffix) {
				allowed = k.fields
				break
			}
		}
	}
	if parent == "" && !strings.HasPrefix(path, "tenants") && idx.lines["rules"] > 0 {
		allowed = "id, rules" // a guild document of the admin API
	}
	if allowed != "" {
		problem += " (allowed here: " + allowed + ")"
	}
	return path, rule, problem
}

// indexLines records the line of every mapping value and sequence item by
// path, and the name of every list item that has one.
func indexLines(n *yaml.Node, path string, idx *docIndex) {
	out := idx.lines
	if n == nil || len(out) > 1<<16 {
		return
	}
	if _, ok := out[path]; !ok {
		out[path] = n.Line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			p := k
			if path != "" {
				p = path + "." + k
			}
			out[p] = n.Content[i].Line
			if k == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
				idx.names[path] = n.Content[i+1].Value
			}
			indexLines(n.Content[i+1], p, idx)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			indexLines(c, path+"["+strconv.Itoa(i)+"]", idx)
		}
	}
}

type validator struct {
	lines map[string]int
	errs  []FieldError
	// exprs keeps the compiled conditions by source, for Compile.
	exprs map[string]*Expr
}

// strict reports whether v checks a document being written or loaded from a
// rules file (every check), rather than a rule set already stored: checks
// added later (a dyn CEL result, the role name @everyone, a null rules list)
// apply to writes, so a rule set stored before them still loads.
func (v *validator) strict() bool { return v.lines != nil }

func (v *validator) add(path, rule, problem string) {
	line := 0
	for p := path; p != "" && line == 0; {
		line = v.lines[p]
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	v.errs = append(v.errs, FieldError{Path: path, Line: line, Rule: rule, Problem: problem})
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line && v.errs[i].Line > 0 })
	return &ValidationError{Errors: v.errs}
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

func (v *validator) file(f *File) {
	if f.Generation < 0 {
		v.add("generation", "", fmt.Sprintf("generation %d: want 0 or more", f.Generation))
	}
	if len(f.Tenants) == 0 {
		v.add("tenants", "", "no tenants: list at least one tenant with its guilds")
	}
	seen := map[string]int{}
	for i := range f.Tenants {
		t := &f.Tenants[i]
		p := fmt.Sprintf("tenants[%d]", i)
		switch {
		case t.ID == "":
			v.add(p+".id", "", "tenant id is required")
		case !ValidTenant(t.ID):
			v.add(p+".id", "", fmt.Sprintf("tenant id %q: want 1-64 characters of A-Z a-z 0-9 _ = -", t.ID))
		}
		if j, dup := seen[t.ID]; dup && t.ID != "" {
			v.add(p+".id", "", fmt.Sprintf("tenant %q is listed twice (also tenants[%d])", t.ID, j))
		}
		seen[t.ID] = i
		if len(t.Guilds) == 0 {
			v.add(p+".guilds", "", fmt.Sprintf("tenant %q has no guilds", t.ID))
		}
		gseen := map[string]int{}
		for j := range t.Guilds {
			g := &t.Guilds[j]
			gp := fmt.Sprintf("%s.guilds[%d]", p, j)
			switch {
			case g.ID == "":
				v.add(gp+".id", "", "guild id is required")
			case !ValidSnowflake(g.ID):
				v.add(gp+".id", "", fmt.Sprintf("guild id %q: want a Discord snowflake (17-20 digits, quoted)", g.ID))
			}
			if k, dup := gseen[g.ID]; dup && g.ID != "" {
				v.add(gp+".id", "", fmt.Sprintf("guild %s is listed twice for tenant %q (also guilds[%d])", g.ID, t.ID, k))
			}
			gseen[g.ID] = j
			v.guild(gp, g)
		}
	}
}

func (v *validator) guild(prefix string, g *GuildSpec) {
	if g.Rules == nil && v.strict() {
		// A document must say `rules: []` to manage nothing on purpose; a
		// missing or null list is most likely a mistake.
		v.add(join(prefix, "rules"), "", "rules is missing or null: list the rules, or write `rules: []` for a guild whose roles scimcord should not manage")
	}
	if len(g.Rules) > MaxRules {
		v.add(join(prefix, "rules"), "", fmt.Sprintf("%d rules, over the limit of %d", len(g.Rules), MaxRules))
		return
	}
	names := map[string]int{}
	idName := map[string]string{} // role id → label seen first
	for i := range g.Rules {
		r := &g.Rules[i]
		p := fmt.Sprintf("%s[%d]", join(prefix, "rules"), i)
		rn := r.Name
		if rn == "" {
			rn = "#" + strconv.Itoa(i)
		}
		switch {
		case r.Name == "":
			v.add(p+".name", rn, "name is required")
		case !ruleNameRE.MatchString(r.Name):
			v.add(p+".name", rn, "name: want 1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit")
		}
		if j, dup := names[r.Name]; dup && r.Name != "" {
			v.add(p+".name", rn, fmt.Sprintf("name is already used by rules[%d]", j))
		}
		names[r.Name] = i
		if len(r.Description) > MaxDescriptionLen {
			v.add(p+".description", rn, fmt.Sprintf("description is %d characters, over %d", len(r.Description), MaxDescriptionLen))
		}
		// The condition.
		switch {
		case r.AllActiveUsers && (len(r.Groups) > 0 || r.When != ""):
			v.add(p+".all_active_users", rn, "all_active_users cannot be combined with groups or when")
		case !r.AllActiveUsers && len(r.Groups) == 0 && strings.TrimSpace(r.When) == "":
			v.add(p, rn, "no condition: set all_active_users: true, groups, or when")
		}
		if len(r.Groups) > MaxGroupsPerRule {
			v.add(p+".groups", rn, fmt.Sprintf("%d groups, over the limit of %d", len(r.Groups), MaxGroupsPerRule))
		}
		gseen := map[GroupMatch]int{}
		for j, gm := range r.Groups {
			gp := fmt.Sprintf("%s.groups[%d]", p, j)
			n := 0
			for _, s := range []string{gm.ID, gm.ExternalID, gm.DisplayName} {
				if s != "" {
					n++
				}
			}
			if n != 1 {
				v.add(gp, rn, "set exactly one of id, external_id, display_name")
				continue
			}
			for _, s := range []string{gm.ID, gm.ExternalID, gm.DisplayName} {
				if len(s) > 256 || strings.TrimSpace(s) != s {
					v.add(gp, rn, fmt.Sprintf("group key %q: want at most 256 characters without leading or trailing space", s))
				}
			}
			if k, dup := gseen[gm]; dup {
				v.add(gp, rn, fmt.Sprintf("group %s is listed twice (also groups[%d])", gm, k))
			}
			gseen[gm] = j
		}
		if r.When != "" {
			if len(r.When) > MaxExprLen {
				v.add(p+".when", rn, fmt.Sprintf("expression is %d characters, over %d", len(r.When), MaxExprLen))
			} else if e, err := compileExpr(r.When, v.strict()); err != nil {
				v.add(p+".when", rn, err.Error())
			} else if v.exprs != nil {
				v.exprs[r.When] = e
			}
		}
		// The roles.
		if len(r.Roles) == 0 {
			v.add(p+".roles", rn, "no roles: list at least one role (id or name)")
		}
		if len(r.Roles) > MaxRolesPerRule {
			v.add(p+".roles", rn, fmt.Sprintf("%d roles, over the limit of %d", len(r.Roles), MaxRolesPerRule))
		}
		rseen := map[string]int{}
		for j, ro := range r.Roles {
			rp := fmt.Sprintf("%s.roles[%d]", p, j)
			switch {
			case ro.ID == "" && ro.Name == "":
				v.add(rp, rn, "set id (a role snowflake) or name (resolved against the guild's roles)")
				continue
			case ro.ID != "" && !ValidSnowflake(ro.ID):
				v.add(rp+".id", rn, fmt.Sprintf("role id %q: want a Discord snowflake (17-20 digits, quoted)", ro.ID))
			case ro.ID != "" && ro.ID == g.ID:
				v.add(rp+".id", rn, "role id is the guild id (the @everyone role), which cannot be granted")
			}
			if len(ro.Name) > MaxNameLen || (ro.Name != "" && strings.TrimSpace(ro.Name) == "") {
				v.add(rp+".name", rn, fmt.Sprintf("role name: want 1-%d characters, not only spaces", MaxNameLen))
			}
			if IsEveryone(ro.Name) && v.strict() {
				v.add(rp+".name", rn, "role name @everyone is the guild's default role, which cannot be granted or removed")
			}
			if k, dup := rseen[ro.Key()]; dup {
				v.add(rp, rn, fmt.Sprintf("role %s is listed twice (also roles[%d])", ro, k))
			}
			rseen[ro.Key()] = j
			if ro.ID != "" && ro.Name != "" {
				if prev, ok := idName[ro.ID]; ok && prev != ro.Name {
					v.add(rp+".name", rn, fmt.Sprintf("role %s is labelled %q here and %q elsewhere", ro.ID, ro.Name, prev))
				} else {
					idName[ro.ID] = ro.Name
				}
			}
		}
	}
}
