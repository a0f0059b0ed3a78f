package scimcord_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/services/scimcord"
)

const (
	devGuild    = "1100000000000000000"
	roleEng     = "1100000000000000101"
	roleDesign  = "1100000000000000102"
	roleStaff   = "1100000000000000103"
	roleMod     = "1100000000000000104" // unmanaged: no rule produces it
	memberWithM = "1100000000000001010" // has Moderator in the fixture
	member1     = "1100000000000001001"
	testToken   = "e2e-test-token-not-a-secret"
)

// startSystem runs the all-in-one on loopback ephemeral ports with its own data dir.
func startSystem(t *testing.T, dataDir string) (*scimcord.System, func()) {
	t.Helper()
	cfg := scimcord.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.EmulatorAddr = "127.0.0.1:0"
	cfg.DevToken = testToken
	cfg.MappingFile = "../../deploy/dev/mapping.yaml"
	cfg.FixtureFile = "../../deploy/dev/guild.yaml"
	return runSystem(t, cfg, scimcord.Deps{})
}

type scimClient struct {
	t     *testing.T
	base  string
	token string
}

func (c scimClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: status %d, body not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

func (c scimClient) mustDo(method, path string, body any, want ...int) map[string]any {
	c.t.Helper()
	st, out := c.do(method, path, body)
	if !slices.Contains(want, st) {
		c.t.Fatalf("%s %s: status %d, want %v; body %v", method, path, st, want, out)
	}
	return out
}

// memberRoles reads a member's roles from the emulator's admin state API.
func memberRoles(t *testing.T, emu *discordemu.Emulator, userID string) []string {
	t.Helper()
	resp, err := http.Get(emu.URL() + "/_emu/guilds/" + devGuild + "/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Members []struct {
			User  struct{ ID string } `json:"user"`
			Roles []string            `json:"roles"`
		} `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if m.User.ID == userID {
			r := append([]string(nil), m.Roles...)
			slices.Sort(r)
			return r
		}
	}
	t.Fatalf("member %s not in guild state", userID)
	return nil
}

// waitRoles polls the emulator until the member has exactly want.
func waitRoles(t *testing.T, emu *discordemu.Emulator, userID string, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := memberRoles(t, emu, userID)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %s roles = %v, want %v", userID, got, want)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

var mutatingRoutes = []string{"member_edit", "member_role_add", "member_role_remove", "member_kick", "ban_create"}

// mutations lists the Discord calls that changed member userID after seq.
// The emulator records a request after answering it, so a state that has
// already changed may not be in the recorder yet: when since > 0 (a change
// is expected) it polls until at least one call is there, or 5 s pass.
func mutations(emu *discordemu.Emulator, userID string, since int64) []discordemu.Record {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out []discordemu.Record
		for _, r := range emu.Recorder().Requests(discordemu.RequestFilter{UserID: userID, SinceSeq: since}) {
			if slices.Contains(mutatingRoutes, r.Route) {
				out = append(out, r)
			}
		}
		if len(out) > 0 || since == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func userBody(userName, discordID string) map[string]any {
	u := map[string]any{
		"schemas":  []string{"urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:discord:2.0:User"},
		"userName": userName,
		"active":   true,
		"name":     map[string]any{"givenName": "Test", "familyName": "User"},
		"emails":   []map[string]any{{"value": userName, "type": "work", "primary": true}},
	}
	if discordID != "" {
		u["urn:ietf:params:scim:schemas:extension:discord:2.0:User"] = map[string]any{"userId": discordID}
	}
	return u
}

func patchOp(op, path string, value any) map[string]any {
	o := map[string]any{"op": op}
	if path != "" {
		o["path"] = path
	}
	if value != nil {
		o["value"] = value
	}
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": []any{o}}
}

// TestEndToEnd_SCIMChangeReachesDiscordRole drives the whole path in one
// process: SCIM HTTP → JetStream → applier → mapping over gRPC → emulator.
func TestEndToEnd_SCIMChangeReachesDiscordRole(t *testing.T) {
	t.Parallel()
	sys, _ := startSystem(t, t.TempDir())
	emu := sys.Emulator()
	c := scimClient{t: t, base: sys.BaseURL(), token: sys.Token()}

	// A user with no Discord id yet: stored, nothing sent to Discord.
	eng := c.mustDo("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Engineering"}, 201)
	alice := c.mustDo("POST", "/Users", userBody("alice@example.com", ""), 201)
	c.mustDo("PATCH", "/Groups/"+eng["id"].(string), patchOp("add", "members", []map[string]any{{"value": alice["id"]}}), 200, 204)
	if m := mutations(emu, memberWithM, 0); len(m) != 0 {
		t.Fatalf("calls before the user was linked: %v", m)
	}

	// Linking the Discord id: Engineering + Staff at once, by exactly one call
	// (two roles → one PATCH member), and the unmanaged Moderator role kept.
	seq := emu.Recorder().NextSeq()
	c.mustDo("PATCH", "/Users/"+alice["id"].(string),
		patchOp("replace", "urn:ietf:params:scim:schemas:extension:discord:2.0:User:userId", memberWithM), 200, 204)
	waitRoles(t, emu, memberWithM, roleEng, roleStaff, roleMod)
	if m := mutations(emu, memberWithM, seq); len(m) != 1 || m[0].Route != "member_edit" {
		t.Fatalf("link: want exactly one PATCH member, got %d calls: %v", len(m), routes(m))
	}

	// One more group → one role → exactly one PUT member role.
	design := c.mustDo("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Design"}, 201)
	seq = emu.Recorder().NextSeq()
	c.mustDo("PATCH", "/Groups/"+design["id"].(string), patchOp("add", "members", []map[string]any{{"value": alice["id"]}}), 200, 204)
	waitRoles(t, emu, memberWithM, roleEng, roleDesign, roleStaff, roleMod)
	if m := mutations(emu, memberWithM, seq); len(m) != 1 || m[0].Route != "member_role_add" {
		t.Fatalf("group add: want exactly one PUT member role, got %v", routes(m))
	}

	// Deactivation strips every managed role in one call and keeps Moderator.
	seq = emu.Recorder().NextSeq()
	c.mustDo("PATCH", "/Users/"+alice["id"].(string), patchOp("replace", "active", false), 200, 204)
	waitRoles(t, emu, memberWithM, roleMod)
	if m := mutations(emu, memberWithM, seq); len(m) != 1 || m[0].Route != "member_edit" {
		t.Fatalf("deactivate: want exactly one PATCH member, got %v", routes(m))
	}

	// Nothing else changed: a settled state costs no further Discord calls.
	if m := mutations(emu, member1, 0); len(m) != 0 {
		t.Fatalf("an unrelated member was touched: %v", routes(m))
	}
}

func routes(rs []discordemu.Record) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %s → %d", r.Method, r.Route, r.Outcome.Status))
	}
	return out
}

// TestEndToEnd_BadInputGetsSCIMErrors checks malformed JSON, unknown tokens
// and unknown ids: 4xx with an RFC 7644 §3.12 body, never 5xx.
func TestEndToEnd_BadInputGetsSCIMErrors(t *testing.T) {
	t.Parallel()
	sys, _ := startSystem(t, t.TempDir())
	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"malformed JSON", "POST", "/Users", testToken, `{"userName": `, 400},
		{"unknown token", "GET", "/Users/whatever", "wrong-token", "", 401},
		{"no token", "POST", "/Users", "", `{}`, 401},
		{"unknown user id", "GET", "/Users/00000000-0000-4000-8000-000000000000", testToken, "", 404},
		{"unknown user id on PATCH", "PATCH", "/Users/00000000-0000-4000-8000-000000000000", testToken,
			`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}`, 404},
		{"unknown group id on PATCH", "PATCH", "/Groups/00000000-0000-4000-8000-000000000000", testToken,
			`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"x"}]}]}`, 404},
		{"Discord id as a JSON number", "POST", "/Users", testToken,
			`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"n@example.com","urn:ietf:params:scim:schemas:extension:discord:2.0:User":{"userId":1100000000000001001}}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rd io.Reader
			if tc.body != "" {
				rd = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, sys.BaseURL()+tc.path, rd)
			req.Header.Set("Content-Type", "application/scim+json")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.want, raw)
			}
			var e struct {
				Schemas []string `json:"schemas"`
				Status  string   `json:"status"`
				Detail  string   `json:"detail"`
			}
			if err := json.Unmarshal(raw, &e); err != nil || !slices.Contains(e.Schemas, "urn:ietf:params:scim:api:messages:2.0:Error") || e.Status != fmt.Sprint(tc.want) {
				t.Fatalf("not an RFC 7644 §3.12 error body: %s", raw)
			}
			if strings.Contains(string(raw), "wrong-token") {
				t.Fatalf("error echoes the token: %s", raw)
			}
		})
	}
}

// TestEndToEnd_DataSurvivesRestart stops and starts the all-in-one on the same
// data directory: stored users and the emulator's guild are kept.
func TestEndToEnd_DataSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sys, stop := startSystem(t, dir)
	c := scimClient{t: t, base: sys.BaseURL(), token: sys.Token()}
	bob := c.mustDo("POST", "/Users", userBody("bob@example.com", member1), 201)
	waitRoles(t, sys.Emulator(), member1, roleStaff)
	stop()

	sys2, _ := startSystem(t, dir)
	c2 := scimClient{t: t, base: sys2.BaseURL(), token: sys2.Token()}
	got := c2.mustDo("GET", "/Users/"+bob["id"].(string), nil, 200)
	if got["userName"] != "bob@example.com" {
		t.Fatalf("after restart: %v", got)
	}
	if r := memberRoles(t, sys2.Emulator(), member1); !slices.Equal(r, []string{roleStaff}) {
		t.Fatalf("emulator state after restart: %v", r)
	}
}

// TestRun_RefusesADataDirInUse keeps a second instance off a data directory
// (one JetStream store, one emulator state file) that another one is using.
func TestRun_RefusesADataDirInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	startSystem(t, dir)
	cfg := scimcord.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr, cfg.EmulatorAddr = dir, "127.0.0.1:0", "127.0.0.1:0"
	cfg.MappingFile, cfg.FixtureFile = "../../deploy/dev/mapping.yaml", "../../deploy/dev/guild.yaml"
	sys, err := scimcord.New(cfg, scimcord.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sys.Run(ctx); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second instance on the same data dir: got %v, want an 'in use' error", err)
	}
}

// TestRun_GeneratedTokenSurvivesRestart: an IdP configured with the generated
// dev token keeps working after a restart.
func TestRun_GeneratedTokenSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() (*scimcord.System, func()) {
		cfg := scimcord.DefaultConfig()
		cfg.DataDir, cfg.HTTPAddr, cfg.EmulatorAddr = dir, "127.0.0.1:0", "127.0.0.1:0"
		cfg.MappingFile, cfg.FixtureFile = "../../deploy/dev/mapping.yaml", "../../deploy/dev/guild.yaml"
		var out strings.Builder
		sys, err := scimcord.New(cfg, scimcord.Deps{Out: &out})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sys.Run(ctx) }()
		select {
		case <-sys.Ready():
		case err := <-done:
			t.Fatalf("not ready: %v", err)
		}
		return sys, func() { cancel(); <-done }
	}
	sys, stop := start()
	first := sys.Token()
	if !strings.HasPrefix(first, "scd_") || len(first) < 40 {
		t.Fatalf("generated token %q", first)
	}
	stop()
	sys2, stop2 := start()
	defer stop2()
	if sys2.Token() != first {
		t.Fatal("the generated token changed across a restart")
	}
	scimClient{t: t, base: sys2.BaseURL(), token: first}.mustDo("GET", "/Users", nil, 200)
}
