package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
	"github.com/scimcord/scimcord/pkg/natsembed"
	"github.com/scimcord/scimcord/pkg/tenants"
)

const token = "admin-unit-token-0123456789"

func devTenants(t *testing.T, guilds ...string) *tenants.Set {
	t.Helper()
	var gs []tenants.Guild
	for _, g := range guilds {
		gs = append(gs, tenants.Guild{ID: g})
	}
	ts, err := tenants.New(&tenants.Tenant{ID: "dev", Name: "Dev", TokenSHA256: []string{tenants.HashToken("scim-token-xxxxxxxxxxxxxxxxxxxx")}, Guilds: gs})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// newServer runs the admin API on an embedded NATS with no applier.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	_, _, hs := newServerJS(t)
	return hs
}

// newServerJS is newServer that also returns the server and its JetStream.
func newServerJS(t *testing.T) (*Server, jetstream.JetStream, *httptest.Server) {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventbus.EnsureBuckets(context.Background(), js, eventbus.BucketConfig{}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Token = token
	s, err := New(cfg, Deps{JS: js, Tenants: devTenants(t, "1100000000000000000")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, js, hs
}

func TestNew_RefusesAShortToken(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{Token: "short"}, Deps{}); err == nil {
		t.Fatal("a 5-character admin token was accepted")
	}
}

// TestNew_RefusesATokenThatIsAlsoASCIMToken: the admin credential must
// not be one an IdP holds.
func TestNew_RefusesATokenThatIsAlsoASCIMToken(t *testing.T) {
	t.Parallel()
	_, js, _ := newServerJS(t)
	cfg := DefaultConfig()
	cfg.Token = "scim-token-xxxxxxxxxxxxxxxxxxxx" // devTenants' SCIM token
	if _, err := New(cfg, Deps{JS: js, Tenants: devTenants(t)}); !errors.Is(err, ErrTokenIsSCIMToken) || strings.Contains(err.Error(), cfg.Token) {
		t.Fatalf("New with the SCIM token as admin token: %v, want ErrTokenIsSCIMToken without the token", err)
	}
}

// TestAPI_BadInputGetsSpecific4xx: malformed or impossible requests get a
// clear 4xx, never a 5xx, and the answer never echoes the token.
func TestAPI_BadInputGetsSpecific4xx(t *testing.T) {
	t.Parallel()
	hs := newServer(t)
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
		detail                   string
	}{
		{"status without a user", "GET", "/admin/api/v1/status", "", 400, "user is required"},
		{"status of a subject wildcard", "GET", "/admin/api/v1/status?user=" + url.QueryEscape("dev.u.>"), "", 404, "no user"},
		{"status of a 5,000-char user", "GET", "/admin/api/v1/status?user=" + strings.Repeat("a", 5000), "", 400, "at most 256"},
		{"status of x@name-without-a-dot", "GET", "/admin/api/v1/status?user=" + url.QueryEscape("x@nodot"), "", 404, "no user"},
		{"status of an unknown user", "GET", "/admin/api/v1/status?user=nobody@example.com", "", 404, "no user"},
		{"unknown tenant", "GET", "/admin/api/v1/dlq?tenant=acme", "", 404, "no tenant"},
		{"explain without mapping", "GET", "/admin/api/v1/explain?user=x", "", 503, "mapping is not configured"},
		{"replay with neither id nor all", "POST", "/admin/api/v1/dlq/replay", `{}`, 400, "either id or all"},
		{"replay with both", "POST", "/admin/api/v1/dlq/replay", `{"id":"x","all":true}`, 400, "either id or all"},
		{"replay body not JSON", "POST", "/admin/api/v1/dlq/replay", `{"id":`, 400, "not the expected JSON"},
		{"reconcile of a foreign guild", "POST", "/admin/api/v1/reconcile", `{"guild":"42"}`, 400, "not driven by tenant"},
		{"rules without mapping", "POST", "/admin/api/v1/rules/apply", `{"yaml":"rules: []"}`, 503, "mapping is not configured"},
		{"unknown endpoint", "GET", "/admin/api/v1/frobnicate", "", 404, ""},
		{"wrong method", "DELETE", "/admin/api/v1/dlq", "", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(tc.method, hs.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want || !strings.Contains(string(raw), tc.detail) {
				t.Fatalf("%s %s → %d %s; want %d with %q", tc.method, tc.path, resp.StatusCode, raw, tc.want, tc.detail)
			}
			if strings.Contains(string(raw), token) {
				t.Fatal("the answer echoes the admin token")
			}
		})
	}
}

// TestAPI_NoApplierIs503: the applier's operations answer 503 when no
// replica listens (after a short wait for one starting).
func TestAPI_NoApplierIs503(t *testing.T) {
	t.Parallel()
	hs := newServer(t)
	req, _ := http.NewRequest("GET", hs.URL+"/admin/api/v1/dlq", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dlq list without an applier: %d, want 503", resp.StatusCode)
	}
}

// TestLogin_RedirectsOnlyWithinAdmin: next= never leaves /admin/.
func TestLogin_RedirectsOnlyWithinAdmin(t *testing.T) {
	t.Parallel()
	hs := newServer(t)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for next, want := range map[string]string{
		"/admin/?user=bob":       "/admin/?user=bob",
		"https://evil.example/":  "/admin/",
		"//evil.example/admin/":  "/admin/",
		"/admin/login?token=x":   "/admin/",
		"/scim/v2/Users":         "/admin/",
		"/admin/\\evil.example":  "/admin/",
		"/admin/../evil":         "/admin/",
		"/admin/./../scim/v2":    "/admin/",
		"/admin/%2e%2e/evil":     "/admin/",
		"/admin/x/../?user=bob":  "/admin/?user=bob",
		"/admin/./login?token=1": "/admin/",
	} {
		resp, err := c.Get(hs.URL + "/admin/login?token=" + token + "&next=" + url.QueryEscape(next))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || got != want {
			t.Errorf("next=%q → %d %q, want 303 %q", next, resp.StatusCode, got, want)
		}
	}
}

// TestAnswers_ForbidFraming: no page or API answer can be framed.
func TestAnswers_ForbidFraming(t *testing.T) {
	t.Parallel()
	hs := newServer(t)
	for _, p := range []string{"/admin/", "/admin/login", "/admin/api/v1/dlq", "/admin/?tenant=dev&user=nobody"} {
		req, _ := http.NewRequest("GET", hs.URL+p, nil)
		if strings.Contains(p, "user=") {
			req.Header.Set("Authorization", "Bearer "+token) // the page itself (its own CSP)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s: X-Frame-Options %q, CSP %q", p, resp.Header.Get("X-Frame-Options"), resp.Header.Get("Content-Security-Policy"))
		}
	}
}

// TestSplitRules covers the two shapes of a rules file.
func TestSplitRules(t *testing.T) {
	t.Parallel()
	one := devTenants(t, "1100000000000000001")
	two := devTenants(t, "1100000000000000001", "1100000000000000002")
	file := "tenants:\n  - id: dev\n    guilds:\n      - id: \"1100000000000000001\"\n        rules: [{name: a, all_active_users: true, roles: [{id: \"9\"}]}]\n      - id: \"1100000000000000002\"\n        rules: []\n  - id: other\n    guilds: [{id: \"1100000000000000003\", rules: []}]\n"
	for _, tc := range []struct {
		name  string
		t     *tenants.Tenant
		doc   string
		guild string
		want  []string
		err   string
	}{
		{"mapping file, every guild of the tenant", mustGet(two), file, "", []string{"1100000000000000001", "1100000000000000002"}, ""},
		{"mapping file, one guild", mustGet(two), file, "1100000000000000002", []string{"1100000000000000002"}, ""},
		{"mapping file, no rules for the tenant's guild", mustGet(two), file, "1100000000000000007", nil, "no rules for tenant"},
		{"rules of the only guild", mustGet(one), "rules: []\n", "", []string{"1100000000000000001"}, ""},
		{"rules without a guild when there are several", mustGet(two), "rules: []\n", "", nil, "needs a guild"},
		{"neither shape", mustGet(one), "foo: 1\n", "", nil, "want `tenants:`"},
		{"not YAML", mustGet(one), "rules: [", "", nil, "rules file"},
		{"not a mapping", mustGet(one), "- a\n- b\n", "", nil, "rules file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := splitRules(tc.t, tc.doc, tc.guild)
			if tc.err != "" {
				var he *httpError
				if err == nil || !errors.As(err, &he) || he.status != 400 || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want 400 with %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v; want guilds %v", got, err, tc.want)
			}
			for _, g := range tc.want {
				if !strings.Contains(got[g], "rules") {
					t.Errorf("guild %s: %q", g, got[g])
				}
			}
		})
	}
}

func mustGet(s *tenants.Set) *tenants.Tenant { t, _ := s.Get("dev"); return t }

// FuzzSplitRules: any rules file gives rule sets or a 400, never a panic.
func FuzzSplitRules(f *testing.F) {
	f.Add("tenants:\n  - id: dev\n    guilds:\n      - id: \"1\"\n        rules: []\n", "")
	f.Add("rules: [{name: x}]\n", "1100000000000000001")
	f.Add("tenants: 7", "")
	f.Add("{", "1100000000000000002")
	ts, err := tenants.New(&tenants.Tenant{ID: "dev", TokenSHA256: []string{tenants.HashToken("scim-token-xxxxxxxxxxxxxxxxxxxx")}, Guilds: []tenants.Guild{{ID: "1100000000000000001"}, {ID: "1100000000000000002"}}})
	if err != nil {
		f.Fatal(err)
	}
	tn, _ := ts.Get("dev")
	f.Fuzz(func(t *testing.T, doc, guild string) {
		out, err := splitRules(tn, doc, guild)
		var he *httpError
		if err != nil && (!errors.As(err, &he) || he.status != 400) {
			t.Fatalf("error %v is not a 400", err)
		}
		if err == nil && len(out) == 0 {
			t.Fatal("no error and no rule set")
		}
	})
}
