package scimcord_test

import (
	"bytes"
	"context"
	"flag"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "copy the status page screenshot to testdata/screenshots (for the README)")

// chromium returns Debian's chromium; without it the test skips locally and
// fails in CI (the Makefile's browser target installs it).
func chromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("chromium not installed (make browser installs it); CI fails instead of skipping")
		}
		t.Fatalf("chromium not installed: %v", err)
	}
	return p
}

// headless runs chromium headless on url with extra flags and returns stdout.
func headless(t *testing.T, bin, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	args = append(append(args, extra...), url)
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, errOut.String())
	}
	return out.String()
}

// TestStatusPage_BrowserShowsFailingMemberAndTrace opens the status page in
// headless chromium (signing in through /admin/login?token=, which sets the
// session cookie and redirects to the page) and finds the failing member,
// its Discord code and its trace id; it saves a screenshot.
func TestStatusPage_BrowserShowsFailingMemberAndTrace(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	sys, _ := startWith(t, nil)
	sc := newScenario(t, sys)
	login := sys.HTTPURL() + "/admin/login?token=" + testAdminToken

	dom := headless(t, bin, login, "--dump-dom")
	wantIn(t, "status page", dom, "scimcord status", "bob@example.com", "failed", "50013", sc.bobTrace, member2,
		"Dead letters", "Last drift report", "in_sync")
	if strings.Contains(dom, testAdminToken) || strings.Contains(dom, testToken) {
		t.Error("the page shows a token")
	}
	// The failures table row of bob carries his trace id.
	i := strings.Index(dom, `id="m-`+sc.bobID)
	if i < 0 || !strings.Contains(dom[i:min(len(dom), i+3000)], sc.bobTrace) {
		t.Errorf("no failures row for bob with trace %s", sc.bobTrace)
	}

	// Searching by user (the login's next= keeps the query): desired vs
	// actual roles, the code and the trace id of the member.
	search := login + "&next=" + url.QueryEscape("/admin/?user=bob@example.com")
	dom = headless(t, bin, search, "--dump-dom")
	i = strings.Index(dom, `id="search"`)
	if i < 0 {
		t.Fatalf("no search section:\n%s", dom)
	}
	wantIn(t, "search for bob", dom[i:], "bob@example.com", sc.bobID, "Design", "desired roles", "actual roles", roleDesign, "50013", sc.bobTrace)

	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	headless(t, bin, login, "--screenshot="+shot, "--window-size=1280,900", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10_000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %d bytes, %v", shot, len(png), err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if *updateScreenshot {
		dst := filepath.Join("testdata", "screenshots", "status-page.png")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
