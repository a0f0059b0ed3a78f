package discordemu

import (
	"crypto/sha256"
	"encoding/base64"
	"html"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

func oauthErr(status int, code, desc string) *resp {
	m := map[string]string{"error": code}
	if desc != "" {
		m["error_description"] = desc
	}
	return jsonResp(status, m)
}

func parseForm(b []byte) (map[string][]string, error) {
	v, err := url.ParseQuery(string(b))
	return v, err
}

// clientAuthLocked resolves the OAuth2 client from Basic auth or form fields.
func (c *call) clientAuthLocked() (*appState, *resp) {
	id, secret, ok := c.r.BasicAuth()
	if !ok {
		id, secret = first(c.form["client_id"]), first(c.form["client_secret"])
	}
	app := c.e.w.Apps[id]
	if id == "" || app == nil || secret == "" || app.ClientSecret != secret {
		return nil, oauthErr(c.cfg.Strict.InvalidClientStatus, "invalid_client", "")
	}
	return app, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// issueTokenLocked creates an access/refresh token pair.
func (e *Emulator) issueTokenLocked(appID, userID string, scopes []string, ttl time.Duration) *tokenState {
	t := &tokenState{
		AccessToken: e.randString(30), RefreshToken: e.randString(30), AppID: appID, UserID: userID,
		Scopes: append([]string{}, scopes...), ExpiresAt: e.now().Add(ttl),
	}
	e.w.Tokens[t.AccessToken] = t
	e.w.Refresh[t.RefreshToken] = t.AccessToken
	return t
}

func tokenResponse(t *tokenState, now time.Time) *resp {
	return jsonResp(200, map[string]any{
		"access_token": t.AccessToken, "token_type": "Bearer", "expires_in": int(t.ExpiresAt.Sub(now).Seconds() + 0.5),
		"refresh_token": t.RefreshToken, "scope": scopesString(t.Scopes),
	})
}

func hOAuthToken(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	app, er := c.clientAuthLocked()
	if er != nil {
		return er
	}
	ttl := time.Duration(c.cfg.AccessTokenTTLSeconds) * time.Second
	switch first(c.form["grant_type"]) {
	case "authorization_code":
		bad := oauthErr(400, "invalid_grant", "Invalid \"code\" in request.")
		code := c.e.w.Codes[first(c.form["code"])]
		if code == nil || code.Used {
			return bad
		}
		code.Used = true // a used code stays used even if the exchange fails later
		c.commitLocked()
		c.committed = false
		if c.now.Sub(code.IssuedAt) > time.Duration(c.cfg.OAuthCodeTTLSeconds)*time.Second ||
			code.AppID != app.ID || code.RedirectURI != first(c.form["redirect_uri"]) {
			return bad
		}
		if code.Challenge != "" {
			v := first(c.form["code_verifier"])
			sum := sha256.Sum256([]byte(v))
			if v == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != code.Challenge {
				return oauthErr(400, "invalid_grant", "Invalid \"code_verifier\" in request.")
			}
		}
		t := c.e.issueTokenLocked(app.ID, code.UserID, code.Scopes, ttl)
		c.commitLocked()
		return tokenResponse(t, c.now)
	case "refresh_token":
		at, ok := c.e.w.Refresh[first(c.form["refresh_token"])]
		old := c.e.w.Tokens[at]
		if !ok || old == nil || old.AppID != app.ID || old.Revoked {
			return oauthErr(400, "invalid_grant", "Invalid \"refresh_token\" in request.")
		}
		delete(c.e.w.Refresh, old.RefreshToken)
		old.Revoked = true
		t := c.e.issueTokenLocked(app.ID, old.UserID, old.Scopes, ttl)
		c.commitLocked()
		return tokenResponse(t, c.now)
	default:
		return oauthErr(400, "unsupported_grant_type", "Unsupported grant type")
	}
}

func hOAuthRevoke(c *call) *resp {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	app, er := c.clientAuthLocked()
	if er != nil {
		return er
	}
	tok := first(c.form["token"])
	t := c.e.w.Tokens[tok]
	if t == nil {
		if at, ok := c.e.w.Refresh[tok]; ok {
			t = c.e.w.Tokens[at]
		}
	}
	if t != nil && t.AppID == app.ID {
		t.Revoked = true
		delete(c.e.w.Refresh, t.RefreshToken)
		c.commitLocked()
	}
	return jsonResp(200, map[string]any{})
}

// issueCodeLocked creates an authorization code.
func (e *Emulator) issueCodeLocked(appID, userID string, scopes []string, redirect, challenge, method string) *codeState {
	cd := &codeState{Code: e.randString(30), AppID: appID, UserID: userID, Scopes: scopes, RedirectURI: redirect,
		IssuedAt: e.now(), Challenge: challenge, ChallengeMeth: method}
	e.w.Codes[cd.Code] = cd
	return cd
}

// serveAuthorize is GET /oauth2/authorize (§12.1): an auto-approving page.
func (e *Emulator) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bad := func(desc string) {
		writeJSON(w, 400, map[string]string{"error": "invalid_request", "error_description": desc})
	}
	if q.Get("response_type") != "code" {
		bad("response_type must be code")
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	app := e.w.Apps[q.Get("client_id")]
	if app == nil {
		bad("Unknown client_id")
		return
	}
	redirect := q.Get("redirect_uri")
	okURI := false
	for _, u := range app.RedirectURIs {
		if u == redirect {
			okURI = true
		}
	}
	if !okURI {
		bad("Invalid \"redirect_uri\" in request.")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge != "" && method != "S256" {
		bad("code_challenge_method must be S256")
		return
	}
	scopes := strings.Fields(q.Get("scope"))
	if err := checkScopes(scopes); err != "" {
		// RFC 6749 §4.1.2.1: with a valid client and redirect_uri, errors go back to the client.
		http.Redirect(w, r, withError(redirect, "invalid_scope", err, q.Get("state")), http.StatusFound)
		return
	}
	if uid := q.Get("emu_user"); uid != "" {
		if e.w.Users[uid] == nil {
			bad("unknown emu_user")
			return
		}
		cd := e.issueCodeLocked(app.ID, uid, scopes, redirect, challenge, method)
		e.afterCommitLocked()
		http.Redirect(w, r, withCode(redirect, cd.Code, q.Get("state")), http.StatusFound)
		return
	}
	ids := make([]string, 0, len(e.w.Users))
	for id, u := range e.w.Users {
		if !u.Bot {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return snowLess(ids[i], ids[j]) })
	var b strings.Builder
	b.WriteString("<!doctype html><html><head><title>discordemu: authorize " + html.EscapeString(app.Name) + "</title></head><body>")
	b.WriteString("<h1>Authorize " + html.EscapeString(app.Name) + "</h1><p>Scopes: " + html.EscapeString(strings.Join(scopes, ", ")) + "</p><ul>")
	for _, id := range ids {
		u := e.w.Users[id]
		qq := r.URL.Query()
		qq.Set("emu_user", id)
		b.WriteString(`<li><a href="/oauth2/authorize?` + html.EscapeString(qq.Encode()) + `">` + html.EscapeString(u.Username) + " (" + id + ")</a></li>")
	}
	b.WriteString("</ul></body></html>")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

// knownScopes are the OAuth2 scopes Discord documents; any other scope is
// invalid_scope.
var knownScopes = map[string]bool{
	"activities.read": true, "activities.write": true, "applications.builds.read": true,
	"applications.builds.upload": true, "applications.commands": true, "applications.commands.update": true,
	"applications.commands.permissions.update": true, "applications.entitlements": true,
	"applications.store.update": true, "bot": true, "connections": true, "dm_channels.read": true, "email": true,
	"gdm.join": true, "guilds": true, "guilds.join": true, "guilds.members.read": true, "identify": true,
	"messages.read": true, "openid": true, "relationships.read": true, "role_connections.write": true, "rpc": true,
	"rpc.activities.write": true, "rpc.notifications.read": true, "rpc.voice.read": true, "rpc.voice.write": true,
	"voice": true, "webhook.incoming": true,
}

// checkScopes returns "" when scopes is a non-empty list of known scopes, else
// the error_description of an invalid_scope error.
func checkScopes(scopes []string) string {
	if len(scopes) == 0 {
		return "Missing \"scope\" in request."
	}
	for _, sc := range scopes {
		if !knownScopes[sc] {
			return "Invalid scope: " + sc
		}
	}
	return ""
}

// withError adds an OAuth2 error (RFC 6749 §4.1.2.1) to a redirect URI.
func withError(redirect, code, desc, state string) string {
	u, err := url.Parse(redirect)
	if err != nil {
		return redirect
	}
	q := u.Query()
	q.Set("error", code)
	q.Set("error_description", desc)
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func withCode(redirect, code, state string) string {
	u, err := url.Parse(redirect)
	if err != nil {
		return redirect
	}
	q := u.Query()
	q.Set("code", code)
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
