package discordemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// GuildState is the answer of GET /_emu/guilds/{g}/state.
type GuildState struct {
	Guild    Guild        `json:"guild"`
	Roles    []Role       `json:"roles"`
	Members  []Member     `json:"members"`
	Bans     []Ban        `json:"bans"`
	AuditLog []AuditEntry `json:"audit_log"`
}

// Member returns the member with the given user id, or nil.
func (s *GuildState) Member(userID string) *Member {
	for i := range s.Members {
		if s.Members[i].User.ID == userID {
			return &s.Members[i]
		}
	}
	return nil
}

// Role returns the role with the given id, or nil.
func (s *GuildState) Role(id string) *Role {
	for i := range s.Roles {
		if s.Roles[i].ID == id {
			return &s.Roles[i]
		}
	}
	return nil
}

// RoleByName returns the first role with the given name, or nil.
func (s *GuildState) RoleByName(name string) *Role {
	for i := range s.Roles {
		if s.Roles[i].Name == name {
			return &s.Roles[i]
		}
	}
	return nil
}

// MemberPatch is the body of PATCH /_emu/guilds/{g}/members/{u} (direct, no checks).
type MemberPatch struct {
	Roles   *[]string `json:"roles,omitempty"`
	Nick    *string   `json:"nick,omitempty"`
	Pending *bool     `json:"pending,omitempty"`
}

// RolePatch is the body of PATCH /_emu/guilds/{g}/roles/{r} (direct, no checks).
type RolePatch struct {
	Name        *string      `json:"name,omitempty"`
	Permissions *Permissions `json:"permissions,omitempty"`
	Position    *int         `json:"position,omitempty"`
	Color       *int         `json:"color,omitempty"`
	Hoist       *bool        `json:"hoist,omitempty"`
	Mentionable *bool        `json:"mentionable,omitempty"`
	Managed     *bool        `json:"managed,omitempty"`
}

// ApplicationPatch is the body of PATCH /_emu/applications/{id}.
type ApplicationPatch struct {
	MembersIntent      *bool    `json:"members_intent,omitempty"`
	RotateBotToken     bool     `json:"rotate_bot_token,omitempty"`
	BotToken           string   `json:"bot_token,omitempty"`
	RotateClientSecret bool     `json:"rotate_client_secret,omitempty"`
	RedirectURIs       []string `json:"redirect_uris,omitempty"`
}

// AuthorizeRequest is the body of POST /_emu/oauth2/authorize.
type AuthorizeRequest struct {
	ClientID            string   `json:"client_id"`
	UserID              string   `json:"user_id"`
	Scopes              []string `json:"scopes"`
	RedirectURI         string   `json:"redirect_uri"`
	State               string   `json:"state,omitempty"`
	CodeChallenge       string   `json:"code_challenge,omitempty"`
	CodeChallengeMethod string   `json:"code_challenge_method,omitempty"`
}

// AuthorizeResult is the answer of POST /_emu/oauth2/authorize.
type AuthorizeResult struct {
	Code        string `json:"code"`
	RedirectURL string `json:"redirect_url"`
}

// TokenRequest is the body of POST /_emu/oauth2/tokens.
type TokenRequest struct {
	ClientID  string   `json:"client_id"`
	UserID    string   `json:"user_id"`
	Scopes    []string `json:"scopes"`
	ExpiresIn int      `json:"expires_in,omitempty"`
}

// TokenResult is the answer of POST /_emu/oauth2/tokens.
type TokenResult struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// CloudflareBanRequest is the body of POST /_emu/cloudflare/ban.
type CloudflareBanRequest struct {
	IP        string  `json:"ip,omitempty"`
	DurationS float64 `json:"duration_s"`
	Format    string  `json:"format,omitempty"`
}

type adminErr struct {
	status int
	msg    string
}

func (e *adminErr) Error() string { return e.msg }

func badReq(format string, a ...any) error { return &adminErr{400, fmt.Sprintf(format, a...)} }
func notFound(format string, a ...any) error {
	return &adminErr{404, fmt.Sprintf(format, a...)}
}

// serveAdmin serves /_emu/*.
func (e *Emulator) serveAdmin(w http.ResponseWriter, r *http.Request) {
	cfg := e.config()
	if cfg.AdminToken != "" && r.Header.Get("X-Emu-Admin-Token") != cfg.AdminToken {
		writeJSON(w, 401, map[string]string{"error": "missing or wrong X-Emu-Admin-Token"})
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	path := strings.TrimPrefix(r.URL.Path, "/_emu")
	segs := strings.Split(strings.Trim(path, "/"), "/")
	status, out, err := e.adminRoute(r, segs, body)
	e.log.Debug("discordemu admin", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	if err != nil {
		st := 400
		if ae, ok := err.(*adminErr); ok {
			st = ae.status
		}
		writeJSON(w, st, map[string]string{"error": err.Error()})
		return
	}
	if out == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, out)
}

func decodeStrict(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badReq("invalid JSON body: %v", err)
	}
	return nil
}

func (e *Emulator) adminRoute(r *http.Request, s []string, body []byte) (int, any, error) {
	m := r.Method
	n := len(s)
	at := func(i int) string {
		if i < n {
			return s[i]
		}
		return ""
	}
	switch {
	case m == "POST" && n == 1 && s[0] == "reset":
		e.Reset()
		return 200, map[string]bool{"ok": true}, nil
	case s[0] == "config" && n == 1:
		if m == "PUT" || m == "PATCH" {
			if err := e.mergeConfig(body); err != nil {
				return 0, nil, err
			}
		} else if m != "GET" {
			return 0, nil, &adminErr{405, "method not allowed"}
		}
		return 200, e.config(), nil
	case s[0] == "fixture" && m == "POST":
		if err := e.LoadFixture(body); err != nil {
			return 0, nil, badReq("%v", err)
		}
		return 200, map[string]bool{"ok": true}, nil
	case s[0] == "applications" && n == 1 && m == "POST":
		var a ApplicationSeed
		if err := decodeStrict(body, &a); err != nil {
			return 0, nil, err
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		info, err := e.createAppLocked(a)
		if err != nil {
			return 0, nil, badReq("%v", err)
		}
		e.afterCommitLocked()
		return 200, info, nil
	case s[0] == "applications" && n == 2 && m == "PATCH":
		var p ApplicationPatch
		if err := decodeStrict(body, &p); err != nil {
			return 0, nil, err
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		app := e.w.Apps[s[1]]
		if app == nil {
			return 0, nil, notFound("unknown application %s", s[1])
		}
		if p.MembersIntent != nil {
			app.MembersIntent = *p.MembersIntent
		}
		if p.BotToken != "" {
			app.BotToken = p.BotToken
		} else if p.RotateBotToken {
			app.BotToken = "emu." + e.randString(24) + "." + e.randString(6) + "." + e.randString(27)
		}
		if p.RotateClientSecret {
			app.ClientSecret = e.randString(32)
		}
		if p.RedirectURIs != nil {
			app.RedirectURIs = p.RedirectURIs
		}
		e.afterCommitLocked()
		return 200, ApplicationInfo{ApplicationID: app.ID, ClientID: app.ID, ClientSecret: app.ClientSecret, BotUserID: app.BotUserID, BotToken: app.BotToken}, nil
	case s[0] == "users" && n == 1 && m == "POST":
		var u UserSeed
		if err := decodeStrict(body, &u); err != nil {
			return 0, nil, err
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		us, err := e.createUserLocked(u)
		if err != nil {
			return 0, nil, badReq("%v", err)
		}
		e.afterCommitLocked()
		return 200, userWire(us), nil
	case s[0] == "users:batch" && m == "POST":
		var b struct {
			Count  int    `json:"count"`
			Prefix string `json:"prefix"`
		}
		if err := decodeStrict(body, &b); err != nil {
			return 0, nil, err
		}
		if b.Count <= 0 || b.Count > 100000 {
			return 0, nil, badReq("count must be 1..100000")
		}
		if b.Prefix == "" {
			b.Prefix = "user"
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		out := make([]User, 0, b.Count)
		for i := 0; i < b.Count; i++ {
			us, _ := e.createUserLocked(UserSeed{Username: b.Prefix + strconv.Itoa(i+1)})
			out = append(out, userWire(us))
		}
		e.afterCommitLocked()
		return 200, map[string]any{"users": out}, nil
	case s[0] == "guilds" && n == 1 && m == "POST":
		var g GuildSeed
		if err := decodeStrict(body, &g); err != nil {
			return 0, nil, err
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		res, err := e.createGuildLocked(g)
		if err != nil {
			return 0, nil, badReq("%v", err)
		}
		e.afterCommitLocked()
		return 200, res, nil
	case s[0] == "guilds" && n == 3 && s[2] == "state" && m == "GET":
		st, err := e.GuildState(s[1])
		if err != nil {
			return 0, nil, err
		}
		return 200, st, nil
	case s[0] == "guilds" && n >= 3 && (s[2] == "roles" || s[2] == "members" || s[2] == "bans"):
		return e.adminGuildDirect(m, s[1], s[2], at(3), body)
	case s[0] == "oauth2":
		return e.adminOAuth(m, s, body)
	case s[0] == "ratelimits":
		return e.adminRateLimits(m, at(1), body)
	case s[0] == "invalid-requests" && m == "GET":
		cfg := e.config()
		e.lim.mu.Lock()
		bans := map[string]ipBan{}
		for k, v := range e.lim.bans {
			bans[k] = v
		}
		e.lim.mu.Unlock()
		return 200, map[string]any{"counts": e.lim.invalidCounts(e.now(), &cfg), "limit": cfg.InvalidRequestLimit, "bans": bans}, nil
	case s[0] == "cloudflare" && at(1) == "ban":
		cfg := e.config()
		switch m {
		case "POST":
			var b CloudflareBanRequest
			if err := decodeStrict(body, &b); err != nil {
				return 0, nil, err
			}
			if b.IP == "" {
				b.IP = "127.0.0.1"
			}
			if b.DurationS <= 0 {
				b.DurationS = cfg.CloudflareBanSeconds
			}
			if b.Format == "" {
				b.Format = cfg.CloudflareBanFormat
			}
			e.lim.ban(b.IP, e.now().Add(secs(b.DurationS*cfg.scale())), b.Format)
			return 200, map[string]bool{"ok": true}, nil
		case "DELETE":
			e.lim.unban(r.URL.Query().Get("ip"))
			return 200, map[string]bool{"ok": true}, nil
		}
	case s[0] == "faults":
		return e.adminFaults(m, at(1), body)
	case s[0] == "requests":
		return e.adminRequests(r, m, at(1))
	case s[0] == "metrics" && m == "GET":
		return 200, e.rec.Metrics(), nil
	case s[0] == "snapshot" && m == "POST":
		e.mu.Lock()
		defer e.mu.Unlock()
		data, err := e.snapshotLocked()
		if err != nil {
			return 0, nil, err
		}
		id := "snap-" + strconv.Itoa(len(e.snapshots)+1)
		e.snapshots[id] = data
		return 200, map[string]string{"snapshot_id": id}, nil
	case s[0] == "restore" && n == 2 && m == "POST":
		e.mu.Lock()
		defer e.mu.Unlock()
		data, ok := e.snapshots[s[1]]
		if !ok {
			return 0, nil, notFound("unknown snapshot %s", s[1])
		}
		if err := e.restoreLocked(data); err != nil {
			return 0, nil, err
		}
		return 200, map[string]bool{"ok": true}, nil
	case s[0] == "audit-log" && m == "GET":
		q := r.URL.Query()
		at, _ := strconv.Atoi(q.Get("action_type"))
		e.mu.Lock()
		defer e.mu.Unlock()
		out := []AuditEntry{}
		ids := make([]string, 0, len(e.w.Guilds))
		for id := range e.w.Guilds {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if g := q.Get("guild_id"); g != "" && g != id {
				continue
			}
			for _, a := range e.w.Guilds[id].Audit {
				if at == 0 || a.ActionType == at {
					out = append(out, a)
				}
			}
		}
		return 200, map[string]any{"audit_log": out}, nil
	}
	return 0, nil, notFound("unknown admin route %s %s", m, r.URL.Path)
}

func (e *Emulator) mergeConfig(body []byte) error {
	e.cfgMu.Lock()
	defer e.cfgMu.Unlock()
	c := e.cfg
	cu := *c.Strict.CheckUntouchedRoles
	c.Strict.CheckUntouchedRoles = &cu // do not write through the shared pointer
	// Strict decoding: a misspelled key ({"strikt":…} or a knob inside strict)
	// is a 400 naming it, not a silently ignored setting.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return badReq("invalid config: %v", err)
	}
	if dec.More() {
		return badReq("invalid config: trailing data after the JSON object")
	}
	c.Logger, c.Clock = e.cfg.Logger, e.cfg.Clock
	c.Listen, c.AdminListen, c.StatePath = e.cfg.Listen, e.cfg.AdminListen, e.cfg.StatePath
	c.TLS, c.TLSCertFile = e.cfg.TLS, e.cfg.TLSCertFile
	c.normalize()
	if err := validateConfig(&c); err != nil {
		return badReq("%v", err)
	}
	e.cfg = c
	return nil
}

func validateConfig(c *Config) error {
	switch {
	case c.Profile != "realistic" && c.Profile != "fast" && c.Profile != "off":
		return fmt.Errorf("profile must be realistic, fast or off")
	case c.CloudflareBanFormat != "json" && c.CloudflareBanFormat != "html":
		return fmt.Errorf("cloudflare_ban_format must be json or html")
	case c.Strict.UnknownRoleInPatch != "10011" && c.Strict.UnknownRoleInPatch != "50035":
		return fmt.Errorf("strict.unknown_role_in_patch must be 10011 or 50035")
	case c.Strict.EveryoneInRoles != "reject" && c.Strict.EveryoneInRoles != "ignore":
		return fmt.Errorf("strict.everyone_in_roles must be reject or ignore")
	case c.Strict.LegacyReasonQuery != "ignore" && c.Strict.LegacyReasonQuery != "honour":
		return fmt.Errorf("strict.legacy_reason_query must be ignore or honour")
	case c.Strict.ScopeError != "401" && c.Strict.ScopeError != "403-50026":
		return fmt.Errorf("strict.scope_error must be 401 or 403-50026")
	case c.RateLimit.Algorithm != "" && c.RateLimit.Algorithm != "fixed" && c.RateLimit.Algorithm != "sliding":
		return fmt.Errorf("ratelimit.algorithm must be fixed or sliding")
	}
	return nil
}

// GuildState returns the full state of a guild (roles bottom→top, members by user id).
func (e *Emulator) GuildState(guildID string) (*GuildState, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.w.Guilds[guildID]
	if g == nil {
		return nil, notFound("unknown guild %s", guildID)
	}
	st := &GuildState{Guild: guildWire(g, true), Roles: rolesWire(g), Members: []Member{}, Bans: []Ban{}, AuditLog: append([]AuditEntry{}, g.Audit...)}
	ids := make([]string, 0, len(g.Members))
	for id := range g.Members {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return snowLess(ids[i], ids[j]) })
	for _, id := range ids {
		st.Members = append(st.Members, memberWire(e.w, g.Members[id]))
	}
	ids = ids[:0]
	for id := range g.Bans {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return snowLess(ids[i], ids[j]) })
	for _, id := range ids {
		st.Bans = append(st.Bans, banWire(e.w, g.Bans[id]))
	}
	return st, nil
}

func (e *Emulator) adminGuildDirect(m, gid, kind, id string, body []byte) (int, any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.w.Guilds[gid]
	if g == nil {
		return 0, nil, notFound("unknown guild %s", gid)
	}
	defer e.afterCommitLocked()
	switch {
	case kind == "roles" && id == "" && m == "POST":
		var rs RoleSeed
		if err := decodeStrict(body, &rs); err != nil {
			return 0, nil, err
		}
		r, err := e.roleFromSeedLocked(g, rs)
		if err != nil {
			return 0, nil, badReq("%v", err)
		}
		order := g.nonEveryone()
		idx := len(order) // default: top
		if rs.Position != nil {
			idx = clamp(*rs.Position-1, 0, len(order))
		}
		order = append(order[:idx], append([]*roleState{r}, order[idx:]...)...)
		g.Roles[r.ID] = r
		g.renumber(order)
		return 200, roleWire(r), nil
	case kind == "roles" && id != "" && m == "PATCH":
		r := g.Roles[id]
		if r == nil {
			return 0, nil, notFound("unknown role %s", id)
		}
		var p RolePatch
		if err := decodeStrict(body, &p); err != nil {
			return 0, nil, err
		}
		if p.Name != nil {
			r.Name = *p.Name
		}
		if p.Permissions != nil {
			r.Permissions = uint64(*p.Permissions)
		}
		if p.Color != nil {
			r.Color = *p.Color
		}
		if p.Hoist != nil {
			r.Hoist = *p.Hoist
		}
		if p.Mentionable != nil {
			r.Mentionable = *p.Mentionable
		}
		if p.Managed != nil {
			r.Managed = *p.Managed
		}
		if p.Position != nil && id != g.ID {
			order := g.nonEveryone()
			for i, x := range order {
				if x == r {
					order = append(order[:i], order[i+1:]...)
					break
				}
			}
			idx := clamp(*p.Position-1, 0, len(order))
			order = append(order[:idx], append([]*roleState{r}, order[idx:]...)...)
			g.renumber(order)
		}
		return 200, roleWire(r), nil
	case kind == "roles" && id != "" && m == "DELETE":
		if g.Roles[id] == nil || id == g.ID {
			return 0, nil, notFound("unknown role %s", id)
		}
		delete(g.Roles, id)
		for _, mm := range g.Members {
			mm.Roles = removeStr(mm.Roles, id)
		}
		g.renumber(g.nonEveryone())
		return 204, nil, nil
	case kind == "members" && id == "" && m == "POST":
		var ms MemberSeed
		if err := decodeStrict(body, &ms); err != nil {
			return 0, nil, err
		}
		if err := e.addMemberLocked(g, ms, nil); err != nil {
			return 0, nil, badReq("%v", err)
		}
		return 200, memberWire(e.w, g.Members[ms.UserID]), nil
	case kind == "members" && id != "" && m == "PATCH":
		mm := g.Members[id]
		if mm == nil {
			return 0, nil, notFound("unknown member %s", id)
		}
		var p MemberPatch
		if err := decodeStrict(body, &p); err != nil {
			return 0, nil, err
		}
		if p.Roles != nil {
			roles := []string{}
			for _, rid := range *p.Roles {
				if g.Roles[rid] == nil || rid == g.ID {
					return 0, nil, badReq("unknown role %s", rid)
				}
				roles = append(roles, rid)
			}
			mm.Roles = roles
		}
		if p.Nick != nil {
			if *p.Nick == "" {
				mm.Nick = nil
			} else {
				nk := *p.Nick
				mm.Nick = &nk
			}
		}
		if p.Pending != nil {
			mm.Pending = *p.Pending
		}
		return 200, memberWire(e.w, mm), nil
	case kind == "members" && id != "" && m == "DELETE":
		if g.Members[id] == nil {
			return 0, nil, notFound("unknown member %s", id)
		}
		delete(g.Members, id)
		return 204, nil, nil
	case kind == "bans" && id != "" && m == "PUT":
		if e.w.Users[id] == nil {
			return 0, nil, badReq("unknown user %s", id)
		}
		var b BanSeed
		if err := decodeStrict(body, &b); err != nil {
			return 0, nil, err
		}
		g.Bans[id] = &banState{UserID: id, Reason: b.Reason}
		delete(g.Members, id)
		return 204, nil, nil
	case kind == "bans" && id != "" && m == "DELETE":
		delete(g.Bans, id)
		return 204, nil, nil
	}
	return 0, nil, notFound("unknown admin route %s %s", m, kind)
}

func clamp(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

func (e *Emulator) adminOAuth(m string, s []string, body []byte) (int, any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case m == "POST" && len(s) == 2 && s[1] == "authorize":
		var a AuthorizeRequest
		if err := decodeStrict(body, &a); err != nil {
			return 0, nil, err
		}
		app := e.w.Apps[a.ClientID]
		if app == nil {
			return 0, nil, badReq("unknown client_id %s", a.ClientID)
		}
		if e.w.Users[a.UserID] == nil {
			return 0, nil, badReq("unknown user %s", a.UserID)
		}
		ok := false
		for _, u := range app.RedirectURIs {
			ok = ok || u == a.RedirectURI
		}
		if !ok {
			return 0, nil, badReq("redirect_uri %q is not registered", a.RedirectURI)
		}
		if msg := checkScopes(a.Scopes); msg != "" {
			return 0, nil, badReq("invalid_scope: %s", msg)
		}
		cd := e.issueCodeLocked(app.ID, a.UserID, a.Scopes, a.RedirectURI, a.CodeChallenge, a.CodeChallengeMethod)
		e.afterCommitLocked()
		return 200, AuthorizeResult{Code: cd.Code, RedirectURL: withCode(a.RedirectURI, cd.Code, a.State)}, nil
	case m == "POST" && len(s) == 2 && s[1] == "tokens":
		var t TokenRequest
		if err := decodeStrict(body, &t); err != nil {
			return 0, nil, err
		}
		if e.w.Apps[t.ClientID] == nil {
			return 0, nil, badReq("unknown client_id %s", t.ClientID)
		}
		if e.w.Users[t.UserID] == nil {
			return 0, nil, badReq("unknown user %s", t.UserID)
		}
		ttl := time.Duration(e.config().AccessTokenTTLSeconds) * time.Second
		if t.ExpiresIn > 0 {
			ttl = time.Duration(t.ExpiresIn) * time.Second
		}
		tok := e.issueTokenLocked(t.ClientID, t.UserID, t.Scopes, ttl)
		e.afterCommitLocked()
		return 200, TokenResult{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken}, nil
	case m == "POST" && len(s) == 4 && s[1] == "tokens":
		t := e.w.Tokens[s[2]]
		if t == nil {
			return 0, nil, notFound("unknown token")
		}
		switch s[3] {
		case "expire":
			t.ExpiresAt = e.now().Add(-time.Second)
		case "revoke":
			t.Revoked = true
			delete(e.w.Refresh, t.RefreshToken)
		default:
			return 0, nil, notFound("unknown token action %s", s[3])
		}
		e.afterCommitLocked()
		return 200, map[string]bool{"ok": true}, nil
	}
	return 0, nil, notFound("unknown oauth2 admin route")
}

func (e *Emulator) adminRateLimits(m, sub string, body []byte) (int, any, error) {
	switch {
	case sub == "table" && m == "GET":
		e.lim.mu.Lock()
		defer e.lim.mu.Unlock()
		return 200, e.lim.table, nil
	case sub == "table" && m == "PUT":
		var t RateLimitTable
		if err := decodeStrict(body, &t); err != nil {
			return 0, nil, err
		}
		for _, b := range t.Buckets {
			if b.Name == "" || b.Limit < 0 || b.WindowSeconds <= 0 || (b.Algorithm != "fixed" && b.Algorithm != "sliding") || (b.Major != "" && b.Major != "guild") {
				return 0, nil, badReq("invalid bucket %+v", b)
			}
		}
		e.lim.mu.Lock()
		e.lim.setTable(t)
		e.lim.mu.Unlock()
		return 200, t, nil
	case sub == "state" && m == "GET":
		e.lim.mu.Lock()
		defer e.lim.mu.Unlock()
		out := map[string]bucketState{}
		for k, b := range e.lim.buckets {
			out[k] = *b
		}
		return 200, map[string]any{"buckets": out}, nil
	case sub == "reset" && m == "POST":
		e.lim.mu.Lock()
		e.lim.buckets = map[string]*bucketState{}
		e.lim.global = map[string]*globalWindow{}
		e.lim.mu.Unlock()
		return 200, map[string]bool{"ok": true}, nil
	}
	return 0, nil, notFound("unknown ratelimits admin route")
}

func (e *Emulator) adminFaults(m, id string, body []byte) (int, any, error) {
	switch {
	case m == "POST" && id == "":
		var r FaultRule
		if err := decodeStrict(body, &r); err != nil {
			return 0, nil, err
		}
		fid, err := e.faults.add(r, e.now())
		if err != nil {
			return 0, nil, badReq("%v", err)
		}
		return 200, map[string]string{"id": fid}, nil
	case m == "GET" && id == "":
		return 200, map[string]any{"faults": e.faults.list()}, nil
	case m == "GET":
		for _, r := range e.faults.list() {
			if r.ID == id {
				return 200, r, nil
			}
		}
		return 0, nil, notFound("unknown fault %s", id)
	case m == "DELETE" && id == "":
		e.faults.clear()
		return 204, nil, nil
	case m == "DELETE":
		if !e.faults.remove(id) {
			return 0, nil, notFound("unknown fault %s", id)
		}
		return 204, nil, nil
	}
	return 0, nil, notFound("unknown faults admin route")
}

// filterKeys are the query keys of GET /_emu/requests; wait also takes count and timeout_ms.
var filterKeys = map[string]bool{"route": true, "method": true, "guild_id": true, "user_id": true, "status": true,
	"since_seq": true, "limit": true}

// filterFromQuery parses the recorder filter. Unknown keys, repeated keys,
// unknown route ids and numbers that do not parse or are out of range are 400,
// so a misspelled filter never silently matches everything.
func filterFromQuery(r *http.Request, extra ...string) (RequestFilter, error) {
	q := r.URL.Query()
	for k, vs := range q {
		if !filterKeys[k] && !slices.Contains(extra, k) {
			return RequestFilter{}, badReq("unknown query parameter %q (known: route, method, guild_id, user_id, status, since_seq, limit%s)", k, strings.Join(append([]string{""}, extra...), ", "))
		}
		if len(vs) != 1 {
			return RequestFilter{}, badReq("query parameter %q given %d times", k, len(vs))
		}
	}
	f := RequestFilter{Route: q.Get("route"), Method: q.Get("method"), GuildID: q.Get("guild_id"), UserID: q.Get("user_id")}
	if f.Route != "" && !slices.Contains(RouteIDs(), f.Route) {
		return f, badReq("unknown route %q", f.Route)
	}
	var err error
	if f.Status, err = intParam(q, "status", 100, 599); err != nil {
		return f, err
	}
	seq, err := intParam(q, "since_seq", 0, math.MaxInt)
	if err != nil {
		return f, err
	}
	f.SinceSeq = int64(seq)
	if f.Limit, err = intParam(q, "limit", 1, math.MaxInt); err != nil {
		return f, err
	}
	return f, nil
}

// intParam parses an optional integer query parameter within [lo, hi]; absent is 0.
func intParam(q url.Values, key string, lo, hi int) (int, error) {
	if !q.Has(key) {
		return 0, nil
	}
	v, err := strconv.Atoi(q.Get(key))
	if err != nil || v < lo || v > hi {
		return 0, badReq("query parameter %s=%q must be an integer from %d to %d", key, q.Get(key), lo, hi)
	}
	return v, nil
}

// requestsPage is the answer of GET /_emu/requests.
type requestsPage struct {
	Requests []Record `json:"requests"`
	NextSeq  int64    `json:"next_seq"`
}

func (e *Emulator) adminRequests(r *http.Request, m, sub string) (int, any, error) {
	switch {
	case m == "DELETE" && sub == "":
		e.rec.Clear()
		return 204, nil, nil
	case m == "GET" && sub == "":
		f, err := filterFromQuery(r)
		if err != nil {
			return 0, nil, err
		}
		recs := e.rec.Requests(f)
		if recs == nil {
			recs = []Record{}
		}
		return 200, requestsPage{Requests: recs, NextSeq: e.rec.NextSeq()}, nil
	case m == "GET" && sub == "wait":
		f, err := filterFromQuery(r, "count", "timeout_ms")
		if err != nil {
			return 0, nil, err
		}
		q := r.URL.Query()
		count, err := intParam(q, "count", 1, math.MaxInt32)
		if err != nil {
			return 0, nil, err
		}
		if count == 0 {
			count = 1
		}
		ms, err := intParam(q, "timeout_ms", 1, 600000)
		if err != nil {
			return 0, nil, err
		}
		if ms == 0 {
			ms = 10000
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Duration(ms)*time.Millisecond)
		defer cancel()
		recs, err := e.rec.Wait(ctx, f, count)
		if recs == nil {
			recs = []Record{}
		}
		st := 200
		if err != nil {
			st = 408
		}
		return st, requestsPage{Requests: recs, NextSeq: e.rec.NextSeq()}, nil
	}
	return 0, nil, notFound("unknown requests admin route")
}
