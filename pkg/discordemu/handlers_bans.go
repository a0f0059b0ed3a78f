package discordemu

import (
	"encoding/json"
	"sort"
	"time"
)

func banWire(w *world, b *banState) Ban {
	return Ban{Reason: b.Reason, User: userWire(w.Users[b.UserID])}
}

func hBanCreate(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	bot := c.id.userID
	if !hasPerm(g, bot, PermBanMembers) {
		return errMissingPerms()
	}
	uid := c.params["user_id"]
	if c.e.w.Users[uid] == nil {
		return errUnknownUser()
	}
	isMember := g.Members[uid] != nil
	if isMember && (uid == bot || !outranksMember(g, bot, uid)) {
		return errMissingPerms()
	}
	if !isMember && uid == g.OwnerID && bot != g.OwnerID {
		return errMissingPerms()
	}
	for k, max := range map[string]float64{"delete_message_seconds": 604800, "delete_message_days": 7} {
		if raw, ok := c.obj[k]; ok && string(raw) != "null" {
			var n float64
			if json.Unmarshal(raw, &n) != nil {
				return formErr(k, "NUMBER_TYPE_COERCE", "Value is not int.")
			}
			if n < 0 {
				return formErr(k, "NUMBER_TYPE_MIN", "int value should be greater than or equal to 0.")
			}
			if n > max {
				return formErr(k, "NUMBER_TYPE_MAX", "int value should be less than or equal to "+f3s(max)[:len(f3s(max))-4]+".")
			}
		}
	}
	if g.Bans[uid] != nil {
		return noContent()
	}
	if lim := c.cfg.Strict.NonmemberBanLimit; lim > 0 && !isMember {
		win := secs(3600 * c.cfg.scale())
		kept := g.NonmemberBans[:0:0]
		for _, t := range g.NonmemberBans {
			if c.now.Sub(t) < win {
				kept = append(kept, t)
			}
		}
		g.NonmemberBans = kept
		if len(kept) >= lim {
			return apiErr(400, 30035, "Maximum number of non-guild member bans has been exceeded.")
		}
		g.NonmemberBans = append(g.NonmemberBans, c.now)
	}
	g.Bans[uid] = &banState{UserID: uid, Reason: c.auditReason()}
	delete(g.Members, uid)
	c.auditLocked(g, AuditMemberBanAdd, uid, nil)
	c.commitLocked()
	return noContent()
}

func hBanDelete(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	g, er := c.guildLocked()
	if er != nil {
		return er
	}
	if !hasPerm(g, c.id.userID, PermBanMembers) {
		return errMissingPerms()
	}
	uid := c.params["user_id"]
	if g.Bans[uid] == nil {
		return errUnknownBan()
	}
	delete(g.Bans, uid)
	c.auditLocked(g, AuditMemberBanRemove, uid, nil)
	c.commitLocked()
	return noContent()
}

func hBanGet(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	w, g, er := c.viewGuildLocked()
	if er != nil {
		return er
	}
	if !hasPerm(g, c.id.userID, PermBanMembers) {
		return errMissingPerms()
	}
	b := g.Bans[c.params["user_id"]]
	if b == nil {
		return errUnknownBan()
	}
	return jsonResp(200, banWire(w, b))
}

func hBansList(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	w, g, er := c.viewGuildLocked()
	if er != nil {
		return er
	}
	if !hasPerm(g, c.id.userID, PermBanMembers) {
		return errMissingPerms()
	}
	q := c.r.URL.Query()
	limit := 1000
	if q.Has("limit") {
		n, er := parseIntParam("limit", q.Get("limit"), 1, 1000)
		if er != nil {
			return er
		}
		limit = n
	}
	for _, k := range []string{"before", "after"} {
		if q.Has(k) && !isSnowflake(q.Get(k)) {
			return formErr(k, "NUMBER_TYPE_COERCE", "Value \""+q.Get(k)+"\" is not snowflake.")
		}
	}
	ids := make([]string, 0, len(g.Bans))
	for id := range g.Bans {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return snowLess(ids[i], ids[j]) })
	var sel []string
	switch {
	case q.Has("before"):
		b := q.Get("before")
		for _, id := range ids {
			if snowLess(id, b) {
				sel = append(sel, id)
			}
		}
		if len(sel) > limit {
			sel = sel[len(sel)-limit:]
		}
	default:
		a := q.Get("after")
		if a == "" {
			a = "0"
		}
		for _, id := range ids {
			if snowLess(a, id) {
				sel = append(sel, id)
			}
		}
		if len(sel) > limit {
			sel = sel[:limit]
		}
	}
	out := make([]Ban, len(sel))
	for i, id := range sel {
		out[i] = banWire(w, g.Bans[id])
	}
	return jsonResp(200, out)
}

var _ = time.Now
