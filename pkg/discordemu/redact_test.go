package discordemu

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestRecorder_RedactsSecrets: no record (request body, JSON body, query or
// response body) ever holds a client secret, code, PKCE verifier or token.
func TestRecorder_RedactsSecrets(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	ctx := testCtx(t)
	const ct = "application/x-www-form-urlencoded"
	verifier := strings.Repeat("v", 50)
	challenge := pkceS256(verifier)
	az, err := e.Admin().Authorize(ctx, AuthorizeRequest{ClientID: tApp, UserID: tDave, Scopes: []string{"identify", "guilds.join"},
		RedirectURI: "http://app.example/cb", CodeChallenge: challenge, CodeChallengeMethod: "S256"})
	if err != nil {
		t.Fatal(err)
	}
	st, m := oauthPost(t, e, "/api/v9/oauth2/token?code="+url.QueryEscape(az.Code), ct, url.Values{"grant_type": {"authorization_code"}, "code": {az.Code},
		"code_verifier": {verifier}, "redirect_uri": {"http://app.example/cb"}, "client_id": {tApp}, "client_secret": {"s3cret"}})
	if st != 200 {
		t.Fatalf("exchange %d %v", st, m)
	}
	access, refresh := m["access_token"].(string), m["refresh_token"].(string)
	st, m = oauthPost(t, e, "/api/v9/oauth2/token", ct, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh},
		"client_id": {tApp}, "client_secret": {"s3cret"}})
	if st != 200 {
		t.Fatalf("refresh %d %v", st, m)
	}
	access2, refresh2 := m["access_token"].(string), m["refresh_token"].(string)
	res, body := raw(t, e, "PUT", "/api/v9/guilds/"+tGuild+"/members/"+tDave, "Bot "+tToken, "application/json",
		`{"access_token":"`+access2+`","nick":"d"}`, nil)
	if res.StatusCode != 201 {
		t.Fatalf("member_add %d %s", res.StatusCode, body)
	}
	if st, m := oauthPost(t, e, "/api/v9/oauth2/token/revoke", ct, url.Values{"token": {access2}, "client_id": {tApp}, "client_secret": {"s3cret"}}); st != 200 {
		t.Fatalf("revoke %d %v", st, m)
	}
	recs := e.Recorder().Requests(RequestFilter{})
	all, err := json.Marshal(recs)
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string]string{"client secret": "s3cret", "code": az.Code, "code verifier": verifier,
		"access token": access, "refresh token": refresh, "new access token": access2, "new refresh token": refresh2} {
		if strings.Contains(string(all), secret) {
			t.Errorf("records contain the %s", name)
		}
	}
	for _, r := range recs {
		if r.Route == "" {
			continue
		}
		if !strings.Contains(r.BodyRaw, Redacted) {
			t.Errorf("%s body_raw not redacted: %s", r.Route, r.BodyRaw)
		}
		if r.Route == "oauth_token" && !strings.Contains(r.ResponseBody, `"access_token":"`+Redacted+`"`) {
			t.Errorf("oauth_token response not redacted: %s", r.ResponseBody)
		}
		if r.Route == "member_add" {
			var b map[string]string
			if json.Unmarshal(r.BodyJSON, &b) != nil || b["access_token"] != Redacted || b["nick"] != "d" {
				t.Errorf("member_add body_json %s", r.BodyJSON)
			}
		}
	}
	// a Discord error's numeric code is not a secret
	res, body = raw(t, e, "GET", "/api/v9/guilds/1", "Bot "+tToken, "", "", nil)
	if res.StatusCode != 404 {
		t.Fatal(body)
	}
	if r := e.Recorder().Requests(RequestFilter{Route: "guild_get"}); r[0].ResponseBody != body {
		t.Errorf("error body changed: %s", r[0].ResponseBody)
	}
}

func pkceS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
