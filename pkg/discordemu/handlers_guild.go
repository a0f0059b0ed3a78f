package discordemu

import (
	"encoding/json"
	"maps"
	"sort"
	"strconv"
	"strings"
)

// guildLocked is stage 8 (§6.0). Caller holds e.mu.
func (c *call) guildLocked() (*guildState, *resp) {
	g := c.e.w.Guilds[c.params["guild_id"]]
	if g == nil {
		return nil, errUnknownGuild()
	}
	if g.Members[c.id.userID] == nil {
		if c.route.id == "guild_get" {
			return nil, errUnknownGuild()
		}
		return nil, errMissingAccess()
	}
	return g, nil
}

// viewGuildLocked is guildLocked on the (possibly lagged) read view for GET routes.
func (c *call) viewGuildLocked() (*world, *guildState, *resp) {
	w := c.e.viewLocked(c.now)
	g := w.Guilds[c.params["guild_id"]]
	if g == nil {
		return w, nil, errUnknownGuild()
	}
	if g.Members[c.id.userID] == nil {
		if c.route.id == "guild_get" {
			return w, nil, errUnknownGuild()
		}
		return w, nil, errMissingAccess()
	}
	return w, g, nil
}

// auditLocked appends an audit entry and marks the call committed.
func (c *call) auditLocked(g *guildState, action int, target string, changes []AuditChange) {
	if changes == nil {
		changes = []AuditChange{}
	}
	g.Audit = append(g.Audit, AuditEntry{
		ID: c.e.newIDLocked(), GuildID: g.ID, UserID: c.id.userID, TargetID: target, ActionType: action,
		Changes: changes, Reason: c.auditReason(),
	})
}

// auditReason is the decoded header reason, or the legacy ?reason= query when
// the knob strict.legacy_reason_query=honour.
func (c *call) auditReason() *string {
	if c.reason != nil {
		s := *c.reason
		return &s
	}
	if c.cfg.Strict.LegacyReasonQuery == "honour" && c.r.URL.Query().Has("reason") {
		s := c.r.URL.Query().Get("reason")
		return &s
	}
	return nil
}

// commitLocked marks the call committed and persists the state.
func (c *call) commitLocked() {
	c.committed = true
	c.e.afterCommitLocked()
}

func hGuildGet(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	_, g, er := c.viewGuildLocked()
	if er != nil {
		return er
	}
	wc := c.r.URL.Query().Get("with_counts") == "true"
	return jsonResp(200, guildWire(g, wc))
}

func hRolesList(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	_, g, er := c.viewGuildLocked()
	if er != nil {
		return er
	}
	return jsonResp(200, rolesWire(g))
}

func hRoleGet(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	_, g, er := c.viewGuildLocked()
	if er != nil {
		return er
	}
	r := g.Roles[c.params["role_id"]]
	if r == nil {
		return errUnknownRole()
	}
	return jsonResp(200, roleWire(r))
}

// roleFields are the validated fields of a role create/edit body.
type roleFields struct {
	name        *string
	perms       *uint64
	color       *int
	hoist       *bool
	mentionable *bool
	emoji, icon *string
	emojiSet    bool
	iconSet     bool
}

func parseRoleBody(obj map[string]json.RawMessage, g *guildState) (roleFields, *resp) {
	var f roleFields
	if raw, ok := obj["name"]; ok && string(raw) != "null" {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return f, formErr("name", "BASE_TYPE_STRING", "Must be a string.")
		}
		s = strings.TrimSpace(s)
		if n := len([]rune(s)); n < 1 || n > 100 {
			return f, formErr("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
		}
		f.name = &s
	}
	if raw, ok := obj["permissions"]; ok && string(raw) != "null" {
		var v any
		_ = json.Unmarshal(raw, &v)
		var p uint64
		switch x := v.(type) {
		case string:
			n, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return f, formErr("permissions", "NUMBER_TYPE_COERCE", "Value \""+x+"\" is not int.")
			}
			p = n
		case float64:
			if x < 0 {
				return f, formErr("permissions", "NUMBER_TYPE_MIN", "Int value should be greater than or equal to 0.")
			}
			p = uint64(x)
		default:
			return f, formErr("permissions", "NUMBER_TYPE_COERCE", "Value is not int.")
		}
		f.perms = &p
	}
	if raw, ok := obj["color"]; ok && string(raw) != "null" {
		var n float64
		if json.Unmarshal(raw, &n) != nil || n != float64(int(n)) {
			return f, formErr("color", "NUMBER_TYPE_COERCE", "Value is not int.")
		}
		if n < 0 || n > 16777215 {
			return f, formErr("color", "NUMBER_TYPE_MAX", "int value should be less than or equal to 16777215.")
		}
		c := int(n)
		f.color = &c
	}
	for _, k := range []string{"hoist", "mentionable"} {
		if raw, ok := obj[k]; ok && string(raw) != "null" {
			var b bool
			if json.Unmarshal(raw, &b) != nil {
				return f, formErr(k, "BASE_TYPE_BOOLEAN", "Must be either true or false.")
			}
			if k == "hoist" {
				f.hoist = &b
			} else {
				f.mentionable = &b
			}
		}
	}
	for _, k := range []string{"unicode_emoji", "icon"} {
		if raw, ok := obj[k]; ok && string(raw) != "null" {
			if !g.hasFeature("ROLE_ICONS") {
				return f, formErr(k, "GUILD_FEATURE_REQUIRED", "This server needs more boosts to perform this action")
			}
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return f, formErr(k, "BASE_TYPE_STRING", "Must be a string.")
			}
			if k == "icon" {
				f.icon, f.iconSet = &s, true
			} else {
				f.emoji, f.emojiSet = &s, true
			}
		}
	}
	return f, nil
}

func hRoleCreate(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	bot := c.id.userID
	if !hasPerm(g, bot, PermManageRoles) {
		return errMissingPerms()
	}
	f, er := parseRoleBody(c.obj, g)
	if er != nil {
		return er
	}
	if len(g.Roles)-1 >= c.cfg.Strict.MaxRoles {
		return apiErr(400, 30005, "Maximum number of server roles reached ("+strconv.Itoa(c.cfg.Strict.MaxRoles)+")")
	}
	r := &roleState{ID: c.e.newIDLocked(), Name: "new role"}
	if f.perms != nil {
		if !permsGrantable(g, bot, *f.perms) {
			return errMissingPerms()
		}
		r.Permissions = *f.perms
	}
	applyRoleFields(r, f)
	order := append([]*roleState{r}, g.nonEveryone()...)
	g.Roles[r.ID] = r
	g.renumber(order)
	c.auditLocked(g, AuditRoleCreate, r.ID, []AuditChange{{Key: "name", NewValue: r.Name}, {Key: "permissions", NewValue: strconv.FormatUint(r.Permissions, 10)}})
	c.commitLocked()
	return jsonResp(200, roleWire(r))
}

func applyRoleFields(r *roleState, f roleFields) {
	if f.name != nil {
		r.Name = *f.name
	}
	if f.color != nil {
		r.Color = *f.color
	}
	if f.hoist != nil {
		r.Hoist = *f.hoist
	}
	if f.mentionable != nil {
		r.Mentionable = *f.mentionable
	}
	if f.iconSet {
		r.Icon = f.icon
	}
	if f.emojiSet {
		r.UnicodeEmoji = f.emoji
	}
}

func hRoleEdit(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	r := g.Roles[c.params["role_id"]]
	if r == nil {
		return errUnknownRole()
	}
	bot := c.id.userID
	if !hasPerm(g, bot, PermManageRoles) || !outranksRole(g, bot, r) {
		return errMissingPerms()
	}
	f, er := parseRoleBody(c.obj, g)
	if er != nil {
		return er
	}
	if f.perms != nil && !permsGrantable(g, bot, *f.perms) {
		return errMissingPerms()
	}
	var changes []AuditChange
	if r.ID == g.ID {
		f.name = nil // @everyone cannot be renamed; silently ignored
	}
	if f.name != nil && *f.name != r.Name {
		changes = append(changes, AuditChange{Key: "name", OldValue: r.Name, NewValue: *f.name})
	}
	if f.perms != nil && *f.perms != r.Permissions {
		changes = append(changes, AuditChange{Key: "permissions", OldValue: strconv.FormatUint(r.Permissions, 10), NewValue: strconv.FormatUint(*f.perms, 10)})
		r.Permissions = *f.perms
	}
	applyRoleFields(r, f)
	c.auditLocked(g, AuditRoleUpdate, r.ID, changes)
	c.commitLocked()
	return jsonResp(200, roleWire(r))
}

func hRoleDelete(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	r := g.Roles[c.params["role_id"]]
	if r == nil {
		return errUnknownRole()
	}
	if r.ID == g.ID || r.Managed {
		return apiErr(c.cfg.Strict.InvalidRoleStatus, 50028, "Invalid Role")
	}
	bot := c.id.userID
	if !hasPerm(g, bot, PermManageRoles) || !outranksRole(g, bot, r) {
		return errMissingPerms()
	}
	delete(g.Roles, r.ID)
	for _, m := range g.Members {
		m.Roles = removeStr(m.Roles, r.ID)
	}
	g.renumber(g.nonEveryone())
	c.auditLocked(g, AuditRoleDelete, r.ID, []AuditChange{{Key: "name", OldValue: r.Name}})
	c.commitLocked()
	return noContent()
}

func hRolePositions(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	type elem struct {
		ID       *string         `json:"id"`
		Position json.RawMessage `json:"position"`
	}
	want := map[string]int{}
	for i, raw := range c.arr {
		var el elem
		if json.Unmarshal(raw, &el) != nil || el.ID == nil {
			return formErr(strconv.Itoa(i)+".id", "BASE_TYPE_REQUIRED", "This field is required")
		}
		if !isSnowflake(*el.ID) {
			return formErr(strconv.Itoa(i)+".id", "NUMBER_TYPE_COERCE", "Value \""+*el.ID+"\" is not snowflake.")
		}
		if g.Roles[*el.ID] == nil {
			return errUnknownRole()
		}
		if *el.ID == g.ID || len(el.Position) == 0 || string(el.Position) == "null" {
			continue
		}
		var p float64
		if json.Unmarshal(el.Position, &p) != nil {
			return formErr(strconv.Itoa(i)+".position", "NUMBER_TYPE_COERCE", "Value is not int.")
		}
		want[*el.ID] = int(p)
	}
	bot := c.id.userID
	if !hasPerm(g, bot, PermManageRoles) {
		return errMissingPerms()
	}
	isOwner := bot == g.OwnerID
	botHigh := highestPos(g, bot)
	pin := maps.Clone(want) // every listed role, moved or not, ends at its requested slot
	for id, p := range want {
		r := g.Roles[id]
		if p == r.Position {
			delete(want, id)
			continue
		}
		if !isOwner && (!outranksRole(g, bot, r) || p >= botHigh) {
			return errMissingPerms()
		}
	}
	newOrder := reorderRoles(g.nonEveryone(), pin)
	if !isOwner {
		// Collisions may shift roles nobody listed: every role that changes
		// position must stay below the bot's highest role, before and after.
		for i, r := range newOrder {
			if i+1 != r.Position && (r.Position >= botHigh || i+1 >= botHigh) {
				return errMissingPerms()
			}
		}
	}
	before := map[string]int{}
	for _, r := range newOrder {
		before[r.ID] = r.Position
	}
	g.renumber(newOrder)
	moved := false
	for _, r := range newOrder {
		if before[r.ID] != r.Position {
			moved = true
			c.auditLocked(g, AuditRoleUpdate, r.ID, []AuditChange{{Key: "position", OldValue: before[r.ID], NewValue: r.Position}})
		}
	}
	if moved {
		c.commitLocked()
	}
	return jsonResp(200, rolesWire(g))
}

// reorderRoles returns the non-@everyone roles (given bottom→top) in their new
// order: every listed role lands exactly at its requested position (clamped to
// 1..n), and the unlisted roles fill the remaining slots in their old relative
// order. Listed roles asking for the same slot keep their old relative order
// and take the nearest free slots above it (below when the top is full).
func reorderRoles(order []*roleState, want map[string]int) []*roleState {
	n := len(order)
	slots := make([]*roleState, n)
	type mv struct {
		r      *roleState
		p, idx int
	}
	var moved []mv
	var rest []*roleState
	for i, r := range order {
		p, ok := want[r.ID]
		if !ok {
			rest = append(rest, r)
			continue
		}
		moved = append(moved, mv{r, min(max(p, 1), n), i})
	}
	sort.SliceStable(moved, func(i, j int) bool {
		if moved[i].p != moved[j].p {
			return moved[i].p < moved[j].p
		}
		return moved[i].idx < moved[j].idx
	})
	for _, m := range moved {
		s := m.p - 1
		for s < n && slots[s] != nil {
			s++
		}
		if s == n {
			for s = m.p - 1; slots[s] != nil; s-- {
			}
		}
		slots[s] = m.r
	}
	k := 0
	for i := range slots {
		if slots[i] == nil {
			slots[i] = rest[k]
			k++
		}
	}
	return slots
}

func removeStr(xs []string, s string) []string {
	out := xs[:0:0]
	for _, x := range xs {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func hAuditLog(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	if !hasPerm(g, c.id.userID, PermViewAuditLog) {
		return errMissingPerms()
	}
	entries := make([]AuditEntry, 0, len(g.Audit))
	users := map[string]User{}
	q := c.r.URL.Query()
	at, _ := strconv.Atoi(q.Get("action_type"))
	for i := len(g.Audit) - 1; i >= 0; i-- {
		a := g.Audit[i]
		if at != 0 && a.ActionType != at {
			continue
		}
		entries = append(entries, a)
		for _, id := range []string{a.UserID, a.TargetID} {
			if u := c.e.w.Users[id]; u != nil {
				users[id] = userWire(u)
			}
		}
	}
	ul := make([]User, 0, len(users))
	for _, u := range users {
		ul = append(ul, u)
	}
	return jsonResp(200, map[string]any{
		"audit_log_entries": entries, "users": ul, "integrations": []any{}, "webhooks": []any{},
		"guild_scheduled_events": []any{}, "threads": []any{}, "application_commands": []any{}, "auto_moderation_rules": []any{},
	})
}
