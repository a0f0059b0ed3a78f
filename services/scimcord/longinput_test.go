package scimcord_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestAdmin_LongUserStringKeepsTheSystemUp is the review's blocker: one
// admin lookup with a 5,000-character user made NATS close the connection
// the whole all-in-one shares (readyz not ready, SCIM 503, the applier and
// mapping disconnected for good). Now each such request is a 4xx and the
// system keeps working.
func TestAdmin_LongUserStringKeepsTheSystemUp(t *testing.T) {
	t.Parallel()
	sys, _ := startWith(t, nil)
	long := strings.Repeat("a", 5000)
	do := func(method, path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, sys.HTTPURL()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	for _, p := range []string{
		"/admin/api/v1/status?user=" + long,
		"/admin/api/v1/explain?user=" + long,
		"/admin/api/v1/status?user=" + url.QueryEscape(long+"@example.com"),
	} {
		if code, body := do("GET", p, testAdminToken); code != http.StatusBadRequest {
			t.Errorf("GET %.60s…: %d %.200s, want 400", p, code, body)
		}
	}
	if code, body := do("GET", "/admin/?user="+long, testAdminToken); code != http.StatusOK || !strings.Contains(body, "at most 256") {
		t.Errorf("status page search of 5,000 chars: %d, want the page with the reason", code)
	}
	if _, err := cliRun(t, sys, testAdminToken, "status", long); err == nil || !strings.Contains(err.Error(), "at most 256") {
		t.Errorf("scimcord status <5000 chars>: %v, want the 400's reason", err)
	}
	if code, _ := do("GET", "/scim/v2/Users/"+long, testToken); code >= 500 {
		t.Errorf("GET /Users/<5000 chars>: %d, want a 4xx", code)
	}
	// Still up: ready, SCIM writes, the applier applies.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := do("GET", "/readyz", "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d after the long lookups", code)
		}
		time.Sleep(20 * time.Millisecond) // poll
	}
	u, _ := scim(t, sys, "POST", "/Users", userBody("after@example.com", member1), 201)
	if u["id"] == nil {
		t.Fatal("no user created after the long lookups")
	}
	waitRoles(t, sys.Emulator(), member1, roleStaff)
}
