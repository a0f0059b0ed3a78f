package ingest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/services/ingest"
)

const conformanceRunner = "../../../shared/conformance/run.sh"

// devRoles stands in for the mapping rules' managed roles (the all-in-one
// wires the real ones).
func devRoles(context.Context, string) ([]ingest.Role, error) {
	return []ingest.Role{
		{ID: "1100000000000000101", Name: "Engineering", GuildID: "1100000000000000000"},
		{ID: "1100000000000000102", Name: "Design", GuildID: "1100000000000000000"},
		{ID: "1100000000000000103", Name: "Staff", GuildID: "1100000000000000000"},
	}, nil
}

// TestConformanceSuites runs Microsoft's and Okta's SCIM suites
// (shared/conformance/run.sh, newman) against a fresh ingest: 0 failed.
// Skipped when node is absent or with -short.
func TestConformanceSuites(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suites skipped in -short mode")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed")
	}
	if _, err := os.Stat(conformanceRunner); err != nil {
		t.Skipf("%s not found", conformanceRunner)
	}
	t.Parallel()
	e := newEnv(t, 1, func(_ *ingest.Config, d *ingest.Deps) { d.Roles = devRoles })
	runner, err := filepath.Abs(conformanceRunner)
	if err != nil {
		t.Fatal(err)
	}
	// A stable work folder keeps newman's node_modules between runs.
	work := filepath.Join(os.TempDir(), "scimcord-ingest-conformance")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", runner)
	cmd.Env = append(os.Environ(),
		"SCIM_BASE_URL="+e.urls[0],
		"SCIM_TOKEN="+tokenA,
		"SCIM_SUITES_WORK="+work,
		"SCIM_SUITES_OUT="+t.TempDir(),
		"SCIM_SUITES_VERBOSE=1",
	)
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	t.Logf("conformance: %s", last)
	if err != nil || !strings.HasSuffix(last, " 0 failed") {
		t.Fatalf("conformance suites failed (%v):\n%s", err, out)
	}
}
