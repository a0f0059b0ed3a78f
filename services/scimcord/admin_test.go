package scimcord_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/services/applier"
	"github.com/scimcord/scimcord/services/scimcord"
	"github.com/scimcord/scimcord/services/scimcord/cli"
)

const member2 = "1100000000000001002"

// scenario is a running system with one member in sync (alice: Engineering
// and Staff) and one failing with Discord 50013 (bob: Design sits above the
// bot's role).
type scenario struct {
	sys                *scimcord.System
	aliceID, bobID     string
	bobTrace           string
	bobCreateTrace     string // traceresponse of bob's POST /Users
	bobJoinTrace       string // traceresponse of the PATCH that put bob in Design
	engID, designID    string
	designPositionBack int
}

func newScenario(t *testing.T, sys *scimcord.System) *scenario {
	t.Helper()
	ctx := context.Background()
	emu := sys.Emulator()
	sc := &scenario{sys: sys}
	eng, _ := scim(t, sys, "POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Engineering"}, 201)
	design, _ := scim(t, sys, "POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Design"}, 201)
	sc.engID, sc.designID = eng["id"].(string), design["id"].(string)
	alice, _ := scim(t, sys, "POST", "/Users", userBody("alice@example.com", member1), 201)
	sc.aliceID = alice["id"].(string)
	scim(t, sys, "PATCH", "/Groups/"+sc.engID, patchOp("add", "members", []map[string]any{{"value": sc.aliceID}}), 200, 204)
	waitRoles(t, emu, member1, roleEng, roleStaff)

	st, err := emu.Admin().State(ctx, devGuild)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Roles {
		if r.ID == roleDesign {
			sc.designPositionBack = r.Position
		}
	}
	if _, err := emu.Admin().EditRole(ctx, devGuild, roleDesign, discordemu.RolePatch{Position: intp(10)}); err != nil {
		t.Fatal(err)
	}
	bob, tr := scim(t, sys, "POST", "/Users", userBody("bob@example.com", member2), 201)
	sc.bobCreateTrace = tr
	sc.bobID = bob["id"].(string)
	waitStatus(t, sys, sc.bobID, "in_sync")
	_, sc.bobJoinTrace = scim(t, sys, "PATCH", "/Groups/"+sc.designID, patchOp("add", "members", []map[string]any{{"value": sc.bobID}}), 200, 204)
	sc.bobTrace = waitStatus(t, sys, sc.bobID, "failed").TraceID
	return sc
}

// waitStatus polls the applier until the member's sync status is state.
func waitStatus(t *testing.T, sys *scimcord.System, userID string, state applier.State) applier.Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := sys.Applier().Status(context.Background(), scimcord.DevTenantID, devGuild, userID)
		if err == nil && st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("user %s: status %+v (%v), want %s", userID, st, err, state)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// cliRun runs one CLI invocation against sys and returns its output.
func cliRun(t *testing.T, sys *scimcord.System, token string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"--server", sys.HTTPURL()}, args...)
	err := cli.Run(context.Background(), args, cli.Env{Token: token, Out: &out, Err: &errOut})
	return out.String(), err
}

func mustCLI(t *testing.T, sys *scimcord.System, args ...string) string {
	t.Helper()
	out, err := cliRun(t, sys, testAdminToken, args...)
	if err != nil {
		t.Fatalf("scimcord %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func wantIn(t *testing.T, what, text string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(text, s) {
			t.Errorf("%s: %q missing in:\n%s", what, s, text)
		}
	}
}

// TestCLI_OperatorCommandsAgainstRunningSystem drives every operator
// subcommand against a running all-in-one.
func TestCLI_OperatorCommandsAgainstRunningSystem(t *testing.T) {
	t.Parallel()
	sys, _ := startWith(t, nil)
	sc := newScenario(t, sys)

	// status, by userName, SCIM id and Discord id.
	for _, q := range []string{"alice@example.com", sc.aliceID, member1} {
		out := mustCLI(t, sys, "status", q)
		wantIn(t, "status "+q, out, "alice@example.com", "Engineering", "in_sync", roleEng, roleStaff, devGuild)
	}
	out := mustCLI(t, sys, "status", "bob@example.com")
	wantIn(t, "status bob", out, "failed", "50013", sc.bobTrace, roleDesign, sc.bobCreateTrace, sc.bobJoinTrace)

	// -o json: the fields the README documents.
	out = mustCLI(t, sys, "status", "bob@example.com", "-o", "json")
	var st struct {
		Tenant string `json:"tenant"`
		User   struct {
			ID            string `json:"id"`
			UserName      string `json:"userName"`
			DiscordUserID string `json:"discordUserId"`
		} `json:"user"`
		Groups []struct {
			DisplayName string `json:"displayName"`
		} `json:"groups"`
		Guilds []struct {
			Guild  string `json:"guild"`
			Status struct {
				State   string `json:"state"`
				Code    int    `json:"code"`
				TraceID string `json:"trace_id"`
			} `json:"status"`
			Desired []string `json:"desired_roles"`
			Actual  []string `json:"actual_roles"`
		} `json:"guilds"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json is not JSON: %v\n%s", err, out)
	}
	if st.Tenant != "dev" || st.User.ID != sc.bobID || st.User.DiscordUserID != member2 || len(st.Groups) != 1 ||
		len(st.Guilds) != 1 || st.Guilds[0].Status.State != "failed" || st.Guilds[0].Status.Code != 50013 ||
		st.Guilds[0].Status.TraceID != sc.bobTrace || !strings.Contains(strings.Join(st.Guilds[0].Desired, ","), roleDesign) {
		t.Errorf("status -o json = %+v", st)
	}

	// explain: mapping's reasons.
	out = mustCLI(t, sys, "explain", "alice@example.com")
	wantIn(t, "explain", out, "engineering", "Engineering", "true", "staff")

	// dlq list: bob with 50013 and the trace.
	out = mustCLI(t, sys, "dlq", "list")
	wantIn(t, "dlq list", out, devGuild+"/"+sc.bobID, "50013", sc.bobTrace)

	// reconcile --dry-run prints the plan and changes nothing.
	if err := sys.Emulator().Admin().SetMemberRoles(context.Background(), devGuild, member1, []string{roleStaff}); err != nil {
		t.Fatal(err)
	}
	out = mustCLI(t, sys, "reconcile", devGuild, "--dry-run")
	wantIn(t, "reconcile --dry-run", out, "dry run", member1, roleEng)
	if r := memberRoles(t, sys.Emulator(), member1); len(r) != 1 {
		t.Errorf("dry run changed Discord: %v", r)
	}
	out = mustCLI(t, sys, "reconcile", devGuild)
	wantIn(t, "reconcile", out, "applied", member1)
	waitRoles(t, sys.Emulator(), member1, roleEng, roleStaff)
	// The status page's overview shows that drift report (kept in KV for every replica).
	req, _ := http.NewRequest("GET", sys.HTTPURL()+"/admin/api/v1/overview", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantIn(t, "overview after reconcile", string(raw), `"last_repair"`, `"dry_run": false`, member1)

	// dlq replay: still failing, then fixed.
	if _, err := cliRun(t, sys, testAdminToken, "dlq", "replay", sc.bobID); err == nil {
		t.Error("replay of a still failing member succeeded")
	}
	if _, err := sys.Emulator().Admin().EditRole(context.Background(), devGuild, roleDesign, discordemu.RolePatch{Position: intp(sc.designPositionBack)}); err != nil {
		t.Fatal(err)
	}
	out = mustCLI(t, sys, "dlq", "replay", "--all")
	wantIn(t, "dlq replay --all", out, "replayed: 1")
	waitRoles(t, sys.Emulator(), member2, roleDesign, roleStaff)
	wantIn(t, "dlq list after replay", mustCLI(t, sys, "dlq", "list"), "no dead letters")

	// rules apply: preview first; --dry-run stores nothing.
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	doc, err := os.ReadFile("../../deploy/dev/mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Design users also get Engineering.
	edited := strings.Replace(string(doc), "      - display_name: Design\n", "      - display_name: Design\n", 1)
	edited = strings.Replace(edited, "            roles:\n              - id: \"1100000000000000102\"", "            roles:\n              - id: \"1100000000000000101\"\n              - id: \"1100000000000000102\"", 1)
	if edited == string(doc) {
		t.Fatal("could not edit the rules")
	}
	if err := os.WriteFile(rules, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	out = mustCLI(t, sys, "rules", "apply", "-f", rules, "--dry-run")
	wantIn(t, "rules apply --dry-run", out, "preview", "bob@example.com", roleEng, "dry run")
	out = mustCLI(t, sys, "rules", "apply", "-f", rules)
	wantIn(t, "rules apply", out, "bob@example.com", "applied: rules version")

	// Bad invocations: clear errors, no panic.
	for _, args := range [][]string{{"status", "nobody@example.com"}, {"status"}, {"dlq", "replay"}, {"reconcile", "42"}, {"frobnicate"}, {"status", "x", "-o", "yaml"}} {
		if _, err := cliRun(t, sys, testAdminToken, args...); err == nil {
			t.Errorf("scimcord %v: no error", args)
		}
	}
	if _, err := cliRun(t, sys, testToken, "dlq", "list"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("the SCIM token is accepted by the admin API: %v", err)
	}
	if _, err := cliRun(t, sys, "", "dlq", "list"); err == nil || !strings.Contains(err.Error(), "SCIMCORD_ADMIN_TOKEN") {
		t.Errorf("no token: %v", err)
	}
}

// TestAdmin_OwnCredentialOnly: the admin API and page take only the admin
// token (or the session cookie made from it), never a SCIM token.
func TestAdmin_OwnCredentialOnly(t *testing.T) {
	t.Parallel()
	sys, _ := startWith(t, nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, auth string, cookie *http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", sys.HTTPURL()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"no credential", "/admin/api/v1/overview", "", 401},
		{"the SCIM token", "/admin/api/v1/overview", testToken, 401},
		{"a wrong token", "/admin/api/v1/overview", testAdminToken + "x", 401},
		{"the admin token", "/admin/api/v1/overview", testAdminToken, 200},
		{"page without a session", "/admin/", "", 401},
		{"page with the admin token", "/admin/", testAdminToken, 200},
		{"login with a wrong token", "/admin/login?token=nope", "", 401},
		{"SCIM with the admin token", "/scim/v2/Users", testAdminToken, 401},
	} {
		if got := get(tc.path, tc.auth, nil).StatusCode; got != tc.want {
			t.Errorf("%s: GET %s → %d, want %d", tc.name, tc.path, got, tc.want)
		}
	}
	resp := get("/admin/login?token="+testAdminToken, "", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/" {
		t.Fatalf("login: %d → %q, want 303 → /admin/", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		session = c
	}
	if session == nil || !session.HttpOnly || strings.Contains(session.Value, testAdminToken) {
		t.Fatalf("session cookie %+v: want HttpOnly, not the token", session)
	}
	if got := get("/admin/", "", session).StatusCode; got != 200 {
		t.Errorf("page with the session cookie: %d", got)
	}
	if got := get("/admin/api/v1/overview", "", session).StatusCode; got != 401 {
		t.Errorf("API with the session cookie: %d, want 401 (bearer only)", got)
	}
}
