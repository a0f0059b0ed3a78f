package discordemu

import "strings"

func hUsersMe(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	if c.id.kind == "bearer" && !c.id.token.hasScope("identify") {
		if c.cfg.Strict.ScopeError == "403-50026" {
			return apiErr(403, 50026, "Missing required OAuth2 scope")
		}
		return errUnauthorized()
	}
	u := c.e.w.Users[c.id.userID]
	if u == nil {
		return errUnknownUser()
	}
	out := userWire(u)
	f, z := false, 0
	out.MFAEnabled, out.Locale, out.PremiumType = &f, "en-US", &z
	if c.id.kind == "bearer" && c.id.token.hasScope("email") {
		out.Email = u.Email
		if out.Email == nil {
			e := ""
			out.Email = &e
		}
		v := u.Verified
		out.Verified = &v
	}
	return jsonResp(200, out)
}

func hUserGet(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	u := c.e.w.Users[c.params["user_id"]]
	if u == nil {
		return errUnknownUser()
	}
	return jsonResp(200, userWire(u))
}

func hOAuthMe(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	if c.id.kind != "bearer" {
		return errUnauthorized()
	}
	app := c.e.w.Apps[c.id.appID]
	out := map[string]any{
		"application": map[string]any{"id": c.id.appID, "name": app.Name, "bot_public": false, "bot_require_code_grant": false},
		"scopes":      c.id.token.Scopes,
		"expires":     fmtTS(c.id.token.ExpiresAt),
	}
	if c.id.token.hasScope("identify") {
		out["user"] = userWire(c.e.w.Users[c.id.userID])
	}
	return jsonResp(200, out)
}

func scopesString(s []string) string { return strings.Join(s, " ") }
