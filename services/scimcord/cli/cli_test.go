package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeAPI records the requests and answers like the admin API.
func fakeAPI(t *testing.T) (*httptest.Server, *[]*http.Request, *[]string) {
	t.Helper()
	var reqs []*http.Request
	var bodies []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs, bodies = append(reqs, r), append(bodies, string(b))
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"authentication required"}`))
			return
		}
		switch r.URL.Path {
		case "/admin/api/v1/dlq":
			_, _ = w.Write([]byte(`[{"guild":"g","user":"u","state":"failed","code":50013,"trace_id":"abc","op":"add role r","http_status":403}]`))
		case "/admin/api/v1/dlq/replay":
			_, _ = w.Write([]byte(`{"replayed":1}`))
		case "/admin/api/v1/status":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"no user \"x\" in tenant \"acme\""}`))
		default:
			_, _ = w.Write([]byte(`{}`))
		}
	}))
	t.Cleanup(hs.Close)
	return hs, &reqs, &bodies
}

func TestRun_FlagsAnywhereTenantAndJSON(t *testing.T) {
	t.Parallel()
	hs, reqs, _ := fakeAPI(t)
	var out bytes.Buffer
	err := Run(context.Background(), []string{"dlq", "--tenant", "acme", "list", "--server", hs.URL, "-o", "json"}, Env{Token: "tok", Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	r := (*reqs)[0]
	if r.Method != "GET" || r.URL.Path != "/admin/api/v1/dlq" || r.URL.Query().Get("tenant") != "acme" {
		t.Fatalf("request %s %s", r.Method, r.URL)
	}
	var dls []map[string]any
	if err := json.Unmarshal(out.Bytes(), &dls); err != nil || len(dls) != 1 || dls[0]["code"] != float64(50013) {
		t.Fatalf("-o json output %q: %v", out.String(), err)
	}
}

func TestRun_TableAndBodies(t *testing.T) {
	t.Parallel()
	hs, reqs, bodies := fakeAPI(t)
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--server", hs.URL, "dlq", "list"}, Env{Token: "tok", Out: &out}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ID", "g/u", "50013", "abc", "add role r"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if err := Run(context.Background(), []string{"--server", hs.URL, "dlq", "replay", "g/u"}, Env{Token: "tok", Out: &out}); err != nil {
		t.Fatal(err)
	}
	if r := (*reqs)[1]; r.Method != "POST" || r.URL.Path != "/admin/api/v1/dlq/replay" || (*bodies)[1] != `{"all":false,"id":"g/u"}` {
		t.Fatalf("replay request %s %s %s", r.Method, r.URL, (*bodies)[1])
	}
	if err := Run(context.Background(), []string{"--server", hs.URL, "reconcile", "g", "--dry-run"}, Env{Token: "tok", Out: &out}); err != nil {
		t.Fatal(err)
	}
	if b := (*bodies)[2]; b != `{"dry_run":true,"guild":"g"}` {
		t.Fatalf("reconcile body %s", b)
	}
	err := Run(context.Background(), []string{"--server", hs.URL, "rules", "apply", "-f", "r.yaml"}, Env{Token: "tok", Out: &out,
		ReadFile: func(string) ([]byte, error) { return []byte("rules: []\n"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if b := (*bodies)[3]; b != `{"dry_run":false,"guild":"","yaml":"rules: []\n"}` {
		t.Fatalf("rules body %s", b)
	}
}

func TestRun_ErrorsAreClear(t *testing.T) {
	t.Parallel()
	hs, _, _ := fakeAPI(t)
	for _, tc := range []struct {
		name  string
		args  []string
		token string
		want  string
		usage bool
	}{
		{"server error text", []string{"status", "x"}, "tok", `no user "x" in tenant "acme" (HTTP 404)`, false},
		{"wrong token", []string{"dlq", "list"}, "nope", "authentication required (HTTP 401)", false},
		{"no token", []string{"dlq", "list"}, "", "SCIMCORD_ADMIN_TOKEN", false},
		{"no command", nil, "tok", "no command", true},
		{"unknown command", []string{"frobnicate"}, "tok", "unknown command: frobnicate", true},
		{"unknown dlq word", []string{"dlq", "purge"}, "tok", "dlq takes list, or replay", true},
		{"status without a user", []string{"status"}, "tok", "status needs one user; usage: scimcord status <userName | SCIM id | Discord id>", true},
		{"status without a user or token", []string{"status"}, "", "usage: scimcord status <", true},
		{"status with two words", []string{"status", "a", "b"}, "tok", "usage: scimcord status <", true},
		{"explain without a user", []string{"explain"}, "tok", "usage: scimcord explain <user>", true},
		{"reconcile without a guild", []string{"reconcile", "--dry-run"}, "tok", "usage: scimcord reconcile <guild>", true},
		{"replay needs an id", []string{"dlq", "replay"}, "tok", "one id or --all", true},
		{"replay id and all", []string{"dlq", "replay", "x", "--all"}, "tok", "one id or --all", true},
		{"rules without -f", []string{"rules", "apply"}, "tok", "needs -f", true},
		{"unknown flag", []string{"dlq", "list", "--frob"}, "tok", "frob", true},
		{"bad output", []string{"dlq", "list", "-o", "xml"}, "tok", "-o must be", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var errOut bytes.Buffer
			err := Run(context.Background(), append([]string{"--server", hs.URL}, tc.args...), Env{Token: tc.token, Err: &errOut})
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrUsage) != tc.usage {
				t.Fatalf("err = %v; want %q (usage %v)", err, tc.want, tc.usage)
			}
			if tc.usage && !strings.Contains(errOut.String(), "usage:") {
				t.Errorf("no usage printed")
			}
		})
	}
}

// FuzzRun: any command line gives a result or an error, never a panic.
func FuzzRun(f *testing.F) {
	for _, s := range []string{"status alice", "dlq list -o json", "dlq replay --all", "reconcile 1 --dry-run", "rules apply -f x", "--tenant a status", "-o", "--server ::: dlq list"} {
		f.Add(s)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{}`)) }))
	defer hs.Close()
	f.Fuzz(func(t *testing.T, line string) {
		// Our --server last: it wins, so no input reaches another host.
		args := append(strings.Fields(line), "--server", hs.URL)
		_ = Run(context.Background(), args, Env{Token: "tok", HTTPClient: &http.Client{Timeout: 5 * time.Second},
			ReadFile: func(string) ([]byte, error) { return []byte("rules: []"), nil }})
	})
}

func TestDefaultServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, server, addr, want string
	}{
		{"nothing set: the make run default", "", "", "http://127.0.0.1:8080"},
		{"SCIMCORD_SERVER wins", "https://scim.example.com", "127.0.0.1:18080", "https://scim.example.com"},
		{"SCIMCORD_HTTP_ADDR with a host", "", "127.0.0.1:18080", "http://127.0.0.1:18080"},
		{"SCIMCORD_HTTP_ADDR with only a port is reached on loopback", "", ":9000", "http://127.0.0.1:9000"},
		{"the IPv4 wildcard is reached on loopback", "", "0.0.0.0:9000", "http://127.0.0.1:9000"},
		{"the IPv6 wildcard is reached on IPv6 loopback", "", "[::]:9000", "http://[::1]:9000"},
		{"a malformed address falls back", "", "nonsense", "http://127.0.0.1:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := DefaultServer(tc.server, tc.addr); got != tc.want {
				t.Fatalf("DefaultServer(%q, %q) = %q, want %q", tc.server, tc.addr, got, tc.want)
			}
		})
	}
}

func TestRun_ServerDefaultsToEnvServer(t *testing.T) {
	t.Parallel()
	hs, reqs, _ := fakeAPI(t)
	if err := Run(context.Background(), []string{"dlq", "list"}, Env{Token: "tok", Server: hs.URL}); err != nil {
		t.Fatalf("Run without --server: %v", err)
	}
	if len(*reqs) != 1 {
		t.Fatalf("%d requests reached Env.Server, want 1", len(*reqs))
	}
}
