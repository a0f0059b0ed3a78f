package discordemu

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

// Test fixture ids.
const (
	tApp      = "500000000000000001"
	tBot      = "500000000000000002"
	tToken    = "test-bot-token"
	tGuild    = "500000000000000100"
	tGuild2   = "500000000000000200"
	tOwner    = "500000000000000900"
	tLow      = "500000000000000101"
	tBooster  = "500000000000000102"
	tMid      = "500000000000000103"
	tBotRole  = "500000000000000104"
	tHigh     = "500000000000000105"
	tAlice    = "500000000000001001"
	tBob      = "500000000000001002"
	tCarol    = "500000000000001003"
	tDave     = "500000000000001004"
	tStranger = "500000000000001099"
)

// Roles bottom→top: Low(1), Booster(2, managed), Mid(3), bot(4), High(5).
// owner: member, no roles; alice: none; bob: Booster+Low; carol: High (outranks
// the bot); dave and stranger: not members.
const testFixture = `
applications:
  - id: "500000000000000001"
    name: testapp
    client_secret: s3cret
    redirect_uris: ["http://app.example/cb"]
    members_intent: true
    bot: {id: "500000000000000002", username: testbot, token: test-bot-token}
users:
  - {id: "500000000000000900", username: owner}
  - {id: "500000000000001001", username: alice, email: alice@example.com, verified: true}
  - {id: "500000000000001002", username: bob}
  - {id: "500000000000001003", username: carol}
  - {id: "500000000000001004", username: dave}
  - {id: "500000000000001099", username: stranger}
guilds:
  - id: "500000000000000100"
    name: test guild
    owner_id: "500000000000000900"
    everyone_permissions: "0"
    roles:
      - {key: low, id: "500000000000000101", name: Low, permissions: "0"}
      - {key: booster, id: "500000000000000102", name: Booster, tags: {premium_subscriber: null}}
      - {key: mid, id: "500000000000000103", name: Mid, permissions: [KICK_MEMBERS]}
      - {key: high, id: "500000000000000105", name: High, permissions: "0"}
    bots:
      - application_id: "500000000000000001"
        role_id: "500000000000000104"
        permissions: [MANAGE_ROLES, KICK_MEMBERS, BAN_MEMBERS, CREATE_INSTANT_INVITE, MANAGE_NICKNAMES]
        position: 3
    members:
      - {user_id: "500000000000000900"}
      - {user_id: "500000000000001001"}
      - {user_id: "500000000000001002", roles: [booster, low]}
      - {user_id: "500000000000001003", roles: [high]}
  - id: "500000000000000200"
    name: second guild
    owner_id: "500000000000000900"
    roles:
      - {key: low, id: "500000000000000201", name: Low}
    bots:
      - {application_id: "500000000000000001", permissions: [MANAGE_ROLES], position: top}
    members:
      - {user_id: "500000000000001001"}
`

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newTestEmu starts an emulator loaded with testFixture. mod may edit the config.
func newTestEmu(t *testing.T, mod func(*Config)) *Emulator {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if err := e.Admin().LoadFixture(testCtx(t), []byte(testFixture)); err != nil {
		t.Fatalf("LoadFixture: %v", err)
	}
	return e
}

// session returns an unmodified discordgo session pointed at the emulator.
func session(t *testing.T, e *Emulator, token string) *discordgo.Session {
	t.Helper()
	s, err := discordgo.New("Bot " + token)
	if err != nil {
		t.Fatalf("discordgo.New: %v", err)
	}
	s.Client = e.HTTPClient()
	s.StateEnabled = false
	return s
}

// restCode returns the HTTP status and Discord code of a discordgo error.
func restCode(err error) (int, int) {
	var re *discordgo.RESTError
	if errors.As(err, &re) {
		code := -1
		if re.Message != nil {
			code = re.Message.Code
		}
		return re.Response.StatusCode, code
	}
	return 0, -1
}

// raw sends a raw request to the emulator through the rewriting client.
func raw(t *testing.T, e *Emulator, method, path, auth, ctype, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, "https://discord.com"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("User-Agent", "DiscordBot (test, 1)")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := e.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func mustState(t *testing.T, e *Emulator, gid string) *GuildState {
	t.Helper()
	st, err := e.Admin().State(testCtx(t), gid)
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	return st
}

func hasStr(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
