package discordemu

import (
	"strings"
)

type bodyKind int

const (
	bodyNone         bodyKind = iota // bodyless: body ignored, no Content-Type needed
	bodyJSONOptional                 // JSON object, empty body = {}
	bodyJSONRequired                 // JSON, must be present
	bodyForm                         // application/x-www-form-urlencoded (OAuth)
)

// routeDef is one row of the route table (§2).
type routeDef struct {
	id       string
	method   string
	segs     []string
	bearerOK bool
	noAuth   bool // oauth token/revoke: client credentials instead
	body     bodyKind
	guild    bool
	mutating bool
	handler  func(c *call) *resp
}

var routeTable []*routeDef

func init() {
	add := func(id, method, path string, body bodyKind, h func(c *call) *resp) *routeDef {
		r := &routeDef{id: id, method: method, segs: strings.Split(strings.Trim(path, "/"), "/"), body: body, handler: h}
		r.guild = r.segs[0] == "guilds"
		r.mutating = method != "GET"
		routeTable = append(routeTable, r)
		return r
	}
	add("guild_get", "GET", "/guilds/{guild_id}", bodyNone, hGuildGet)
	add("roles_list", "GET", "/guilds/{guild_id}/roles", bodyNone, hRolesList)
	add("role_create", "POST", "/guilds/{guild_id}/roles", bodyJSONOptional, hRoleCreate)
	add("role_positions", "PATCH", "/guilds/{guild_id}/roles", bodyJSONRequired, hRolePositions)
	add("role_get", "GET", "/guilds/{guild_id}/roles/{role_id}", bodyNone, hRoleGet)
	add("role_edit", "PATCH", "/guilds/{guild_id}/roles/{role_id}", bodyJSONOptional, hRoleEdit)
	add("role_delete", "DELETE", "/guilds/{guild_id}/roles/{role_id}", bodyNone, hRoleDelete)
	add("members_list", "GET", "/guilds/{guild_id}/members", bodyNone, hMembersList)
	add("member_get", "GET", "/guilds/{guild_id}/members/{user_id}", bodyNone, hMemberGet)
	add("member_add", "PUT", "/guilds/{guild_id}/members/{user_id}", bodyJSONRequired, hMemberAdd)
	add("member_edit", "PATCH", "/guilds/{guild_id}/members/{user_id}", bodyJSONOptional, hMemberEdit)
	add("member_kick", "DELETE", "/guilds/{guild_id}/members/{user_id}", bodyNone, hMemberKick)
	add("member_role_add", "PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", bodyNone, hMemberRoleAdd)
	add("member_role_remove", "DELETE", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", bodyNone, hMemberRoleRemove)
	add("bans_list", "GET", "/guilds/{guild_id}/bans", bodyNone, hBansList)
	add("ban_get", "GET", "/guilds/{guild_id}/bans/{user_id}", bodyNone, hBanGet)
	add("ban_create", "PUT", "/guilds/{guild_id}/bans/{user_id}", bodyJSONOptional, hBanCreate)
	add("ban_delete", "DELETE", "/guilds/{guild_id}/bans/{user_id}", bodyNone, hBanDelete)
	add("audit_log", "GET", "/guilds/{guild_id}/audit-logs", bodyNone, hAuditLog)
	add("users_me", "GET", "/users/@me", bodyNone, hUsersMe).bearerOK = true
	add("user_get", "GET", "/users/{user_id}", bodyNone, hUserGet).bearerOK = true
	add("oauth_token", "POST", "/oauth2/token", bodyForm, hOAuthToken).noAuth = true
	add("oauth_revoke", "POST", "/oauth2/token/revoke", bodyForm, hOAuthRevoke).noAuth = true
	add("oauth_me", "GET", "/oauth2/@me", bodyNone, hOAuthMe).bearerOK = true
}

// RouteIDs lists every route id the emulator serves.
func RouteIDs() []string {
	out := make([]string, len(routeTable))
	for i, r := range routeTable {
		out[i] = r.id
	}
	return out
}

// matchRoute finds the route for a path (without the /api[/vN] prefix). It
// returns the route, its params, and whether the path matched some route with
// another method. Paths match exactly, like Discord: a trailing slash or an
// empty segment ("//") matches nothing.
func matchRoute(method, path string) (*routeDef, map[string]string, bool) {
	if !strings.HasPrefix(path, "/") {
		return nil, nil, false
	}
	segs := strings.Split(path[1:], "/")
	for _, s := range segs {
		if s == "" {
			return nil, nil, false
		}
	}
	pathMatched := false
	var best *routeDef
	var bestParams map[string]string
	bestLit := -1
	for _, r := range routeTable {
		if len(r.segs) != len(segs) {
			continue
		}
		params := map[string]string{}
		lit, ok := 0, true
		for i, s := range r.segs {
			if strings.HasPrefix(s, "{") {
				if segs[i] == "" {
					ok = false
					break
				}
				params[s[1:len(s)-1]] = segs[i]
				continue
			}
			if s != segs[i] {
				ok = false
				break
			}
			lit++
		}
		if !ok {
			continue
		}
		pathMatched = true
		if r.method != method {
			continue
		}
		if lit > bestLit { // literal segments (e.g. @me) win over params
			best, bestParams, bestLit = r, params, lit
		}
	}
	return best, bestParams, pathMatched
}
