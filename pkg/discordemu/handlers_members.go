package discordemu

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"
)

func hMembersList(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	w, g, er := c.viewGuildLocked()
	if er != nil {
		return er
	}
	if app := w.Apps[c.id.appID]; app == nil || !app.MembersIntent {
		return errMissingAccess()
	}
	q := c.r.URL.Query()
	limit := 1
	if q.Has("limit") {
		n, er := parseIntParam("limit", q.Get("limit"), 1, 1000)
		if er != nil {
			return er
		}
		limit = n
	}
	after := "0"
	if q.Has("after") {
		v := q.Get("after")
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			if len(v) > 0 && v[0] == '-' {
				return formErr("after", "NUMBER_TYPE_MIN", "int value should be greater than or equal to 0.")
			}
			return formErr("after", "NUMBER_TYPE_COERCE", "Value \""+v+"\" is not snowflake.")
		}
		after = v
	}
	ids := make([]string, 0, len(g.Members))
	for id := range g.Members {
		if snowLess(after, id) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return snowLess(ids[i], ids[j]) })
	if len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]Member, len(ids))
	for i, id := range ids {
		out[i] = memberWire(w, g.Members[id])
	}
	return jsonResp(200, out)
}

func parseIntParam(name, v string, min, max int) (int, *resp) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, formErr(name, "NUMBER_TYPE_COERCE", "Value \""+v+"\" is not int.")
	}
	if n < min {
		return 0, formErr(name, "NUMBER_TYPE_MIN", "int value should be greater than or equal to "+strconv.Itoa(min)+".")
	}
	if n > max {
		return 0, formErr(name, "NUMBER_TYPE_MAX", "int value should be less than or equal to "+strconv.Itoa(max)+".")
	}
	return n, nil
}

func hMemberGet(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	w, g, er := c.viewGuildLocked()
	if er != nil {
		return er
	}
	m := g.Members[c.params["user_id"]]
	if m == nil {
		return errUnknownMember()
	}
	return jsonResp(200, memberWire(w, m))
}

func hMemberEdit(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	uid := c.params["user_id"]
	m := g.Members[uid]
	if m == nil {
		return errUnknownMember()
	}
	bot := c.id.userID
	obj := c.obj
	present := func(k string) (json.RawMessage, bool) {
		raw, ok := obj[k]
		return raw, ok
	}
	isNull := func(raw json.RawMessage) bool { return string(raw) == "null" }

	// Validation.
	var nick *string
	nickSet := false
	if raw, ok := present("nick"); ok {
		nickSet = true
		if !isNull(raw) {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return formErr("nick", "BASE_TYPE_STRING", "Must be a string.")
			}
			if n := len([]rune(s)); n > 32 {
				return formErr("nick", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
			}
			if s != "" {
				nick = &s
			}
		}
	}
	var newRoles []string
	rolesSet := false
	if raw, ok := present("roles"); ok && !isNull(raw) {
		rolesSet = true
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil {
			return formErr("roles", "BASE_TYPE_ARRAY", "Must be an array.")
		}
		if len(arr) > 350 {
			return formErr("roles", "BASE_TYPE_MAX_LENGTH", "Must be 350 or fewer in length.")
		}
		seen := map[string]bool{}
		newRoles = []string{}
		for i, el := range arr {
			var s string
			if json.Unmarshal(el, &s) != nil {
				var n json.Number
				if json.Unmarshal(el, &n) != nil {
					return formErr("roles."+strconv.Itoa(i), "NUMBER_TYPE_COERCE", "Value is not snowflake.")
				}
				s = n.String()
			}
			if !isSnowflake(s) {
				return formErr("roles."+strconv.Itoa(i), "NUMBER_TYPE_COERCE", "Value \""+s+"\" is not snowflake.")
			}
			if seen[s] {
				return formErr("roles", "SET_TYPE_ALREADY_CONTAINS_VALUE", "The set already contains this value.")
			}
			seen[s] = true
			newRoles = append(newRoles, s)
		}
	}
	var cdu *time.Time
	cduSet := false
	if raw, ok := present("communication_disabled_until"); ok {
		cduSet = true
		if !isNull(raw) {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return formErr("communication_disabled_until", "DATE_TYPE_PARSE", "Could not parse date.")
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return formErr("communication_disabled_until", "DATE_TYPE_PARSE", "Could not parse \""+s+"\".")
			}
			if t.After(c.now.Add(28 * 24 * time.Hour)) {
				return formErr("communication_disabled_until", "COMMUNICATION_DISABLED_TIMESTAMP_TOO_LARGE", "Timeout can be at most 28 days.")
			}
			cdu = &t
		}
	}
	if raw, ok := present("channel_id"); ok && !isNull(raw) {
		return formErr("channel_id", "BASE_TYPE_CHOICES", "Target user is not connected to voice.")
	}
	var flags *int
	if raw, ok := present("flags"); ok && !isNull(raw) {
		var n int
		if json.Unmarshal(raw, &n) != nil {
			return formErr("flags", "NUMBER_TYPE_COERCE", "Value is not int.")
		}
		flags = &n
	}

	// Checks, per field, first failure aborts.
	if nickSet {
		if !hasPerm(g, bot, PermManageNicknames) {
			return errMissingPerms()
		}
		if uid != bot && !outranksMember(g, bot, uid) {
			return errMissingPerms()
		}
	}
	var added, removed []string
	if rolesSet {
		if !hasPerm(g, bot, PermManageRoles) {
			return errMissingPerms()
		}
		filtered := newRoles[:0:0]
		for _, id := range newRoles {
			if id == g.ID {
				if c.cfg.Strict.EveryoneInRoles == "ignore" {
					continue
				}
				return formErr("roles", "INVALID_ROLE", "Invalid role: @everyone cannot be assigned.")
			}
			if g.Roles[id] == nil {
				if c.cfg.Strict.UnknownRoleInPatch == "50035" {
					return formErr("roles", "INVALID_ROLE", "Role \""+id+"\" does not exist.")
				}
				return errUnknownRole()
			}
			filtered = append(filtered, id)
		}
		newRoles = filtered
		newSet := map[string]bool{}
		for _, id := range newRoles {
			newSet[id] = true
			if !m.hasRole(id) {
				added = append(added, id)
			}
		}
		for _, id := range m.Roles {
			if !newSet[id] {
				removed = append(removed, id)
			}
		}
		for _, id := range append(append([]string{}, added...), removed...) {
			r := g.Roles[id]
			if r == nil {
				continue // a stale id being removed
			}
			if r.Managed || !outranksRole(g, bot, r) {
				return errMissingPerms()
			}
		}
		if c.cfg.Strict.CheckUntouchedRoles == nil || *c.cfg.Strict.CheckUntouchedRoles {
			for _, id := range newRoles {
				if m.hasRole(id) {
					if r := g.Roles[id]; r != nil && !outranksRole(g, bot, r) {
						return errMissingPerms()
					}
				}
			}
		}
	}
	for _, k := range []string{"mute", "deaf"} {
		if raw, ok := present(k); ok && !isNull(raw) {
			p := PermMuteMembers
			if k == "deaf" {
				p = PermDeafenMembers
			}
			if !hasPerm(g, bot, p) {
				return errMissingPerms()
			}
			return apiErr(400, 40032, "Target user is not connected to voice.")
		}
	}
	if cduSet {
		if !hasPerm(g, bot, PermModerateMembers) || !outranksMember(g, bot, uid) || uid == g.OwnerID ||
			basePerms(g, uid)&PermAdministrator != 0 || basePerms(g, uid) == permAll {
			return errMissingPerms()
		}
	}
	if flags != nil {
		bp := basePerms(g, bot)
		all := PermModerateMembers | PermKickMembers | PermBanMembers
		if bp&PermManageGuild == 0 && bp&PermManageRoles == 0 && bp&all != all {
			return errMissingPerms()
		}
	}

	// Commit.
	changed := false
	if rolesSet && (len(added) > 0 || len(removed) > 0) {
		var ch []AuditChange
		if len(added) > 0 {
			ch = append(ch, AuditChange{Key: "$add", NewValue: roleRefs(g, added)})
		}
		if len(removed) > 0 {
			ch = append(ch, AuditChange{Key: "$remove", NewValue: roleRefs(g, removed)})
		}
		m.Roles = newRoles
		c.auditLocked(g, AuditMemberRoleUpdate, uid, ch)
		changed = true
	}
	var ch24 []AuditChange
	if nickSet && !strPtrEq(nick, m.Nick) {
		ch24 = append(ch24, AuditChange{Key: "nick", OldValue: m.Nick, NewValue: nick})
		m.Nick = nick
	}
	if cduSet {
		ch24 = append(ch24, AuditChange{Key: "communication_disabled_until", NewValue: fmtTSPtr(cdu)})
		m.CommunicationDisabledUntil = cdu
	}
	if flags != nil {
		nf := (m.Flags &^ 4) | (*flags & 4)
		if nf != m.Flags {
			ch24 = append(ch24, AuditChange{Key: "flags", OldValue: m.Flags, NewValue: nf})
			m.Flags = nf
		}
	}
	if len(ch24) > 0 {
		c.auditLocked(g, AuditMemberUpdate, uid, ch24)
		changed = true
	}
	if changed {
		c.commitLocked()
	}
	if c.cfg.Strict.PatchMember204 {
		return noContent()
	}
	return jsonResp(200, memberWire(c.e.w, m))
}

func strPtrEq(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func roleRefs(g *guildState, ids []string) []map[string]string {
	out := make([]map[string]string, 0, len(ids))
	for _, id := range ids {
		name := ""
		if r := g.Roles[id]; r != nil {
			name = r.Name
		}
		out = append(out, map[string]string{"id": id, "name": name})
	}
	return out
}

func memberRoleChange(c *call, add bool) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	uid, rid := c.params["user_id"], c.params["role_id"]
	m := g.Members[uid]
	if m == nil {
		return errUnknownMember()
	}
	r := g.Roles[rid]
	if r == nil || rid == g.ID {
		return errUnknownRole()
	}
	bot := c.id.userID
	if !hasPerm(g, bot, PermManageRoles) {
		return errMissingPerms()
	}
	if r.Managed || !outranksRole(g, bot, r) {
		return errMissingPerms()
	}
	if m.hasRole(rid) == add {
		return noContent()
	}
	key := "$remove"
	if add {
		m.Roles = append(m.Roles, rid)
		key = "$add"
	} else {
		m.Roles = removeStr(m.Roles, rid)
	}
	c.auditLocked(g, AuditMemberRoleUpdate, uid, []AuditChange{{Key: key, NewValue: roleRefs(g, []string{rid})}})
	c.commitLocked()
	return noContent()
}

func hMemberRoleAdd(c *call) *resp    { return memberRoleChange(c, true) }
func hMemberRoleRemove(c *call) *resp { return memberRoleChange(c, false) }

func hMemberKick(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	uid := c.params["user_id"]
	if g.Members[uid] == nil {
		return errUnknownMember()
	}
	bot := c.id.userID
	if !hasPerm(g, bot, PermKickMembers) || uid == bot || !outranksMember(g, bot, uid) {
		return errMissingPerms()
	}
	delete(g.Members, uid)
	c.auditLocked(g, AuditMemberKick, uid, nil)
	c.commitLocked()
	return noContent()
}

func hMemberAdd(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	uid := c.params["user_id"]
	raw, ok := c.obj["access_token"]
	var tok string
	if !ok || string(raw) == "null" {
		return formErr("access_token", "BASE_TYPE_REQUIRED", "This field is required")
	}
	if json.Unmarshal(raw, &tok) != nil {
		return formErr("access_token", "BASE_TYPE_STRING", "Must be a string.")
	}
	var body struct {
		Nick  *string   `json:"nick"`
		Roles *[]string `json:"roles"`
		Mute  *bool     `json:"mute"`
		Deaf  *bool     `json:"deaf"`
	}
	if err := json.Unmarshal(c.body, &body); err != nil {
		return formErr("roles", "BASE_TYPE_ARRAY", "Must be an array of snowflakes.")
	}
	t := c.e.w.Tokens[tok]
	if t == nil || t.Revoked || !c.now.Before(t.ExpiresAt) || t.AppID != c.id.appID || !t.hasScope("guilds.join") || t.UserID != uid {
		return apiErr(403, 50025, "Invalid OAuth2 access token")
	}
	if g.Bans[uid] != nil {
		return apiErr(403, 40007, "The user is banned from this guild.")
	}
	if g.Members[uid] != nil {
		return noContent()
	}
	u := c.e.w.Users[uid]
	if u == nil {
		return errUnknownUser()
	}
	maxG := u.MaxGuilds
	if maxG <= 0 {
		maxG = 100
	}
	n := 0
	for _, og := range c.e.w.Guilds {
		if og.Members[uid] != nil {
			n++
		}
	}
	if n >= maxG {
		return apiErr(c.cfg.Strict.MaxGuildsStatus, 30001, "Maximum number of guilds reached (100)")
	}
	bot := c.id.userID
	if !hasPerm(g, bot, PermCreateInstantInvite) {
		return errMissingPerms()
	}
	var roles []string
	if body.Roles != nil {
		if !hasPerm(g, bot, PermManageRoles) {
			return errMissingPerms()
		}
		seen := map[string]bool{}
		for _, rid := range *body.Roles {
			r := g.Roles[rid]
			if r == nil || rid == g.ID {
				return errUnknownRole()
			}
			if r.Managed || !outranksRole(g, bot, r) {
				return errMissingPerms()
			}
			if !seen[rid] {
				seen[rid] = true
				roles = append(roles, rid)
			}
		}
	}
	if body.Nick != nil && !hasPerm(g, bot, PermManageNicknames) {
		return errMissingPerms()
	}
	if body.Mute != nil && *body.Mute && !hasPerm(g, bot, PermMuteMembers) {
		return errMissingPerms()
	}
	if body.Deaf != nil && *body.Deaf && !hasPerm(g, bot, PermDeafenMembers) {
		return errMissingPerms()
	}
	if roles == nil {
		roles = []string{}
	}
	m := &memberState{UserID: uid, Roles: roles, JoinedAt: c.now.UTC(), Pending: g.hasFeature("MEMBER_VERIFICATION_GATE_ENABLED")}
	if body.Nick != nil && *body.Nick != "" {
		nk := *body.Nick
		m.Nick = &nk
	}
	g.Members[uid] = m
	c.commitLocked()
	return jsonResp(201, memberWire(c.e.w, m))
}
