package scimcord_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// conformanceDir is the third-party SCIM suites folder handed beside the repository.
const conformanceDir = "../../../shared/conformance"

// TestConformance_IdPSuites runs Microsoft's and Okta's own SCIM test suites
// (../shared/conformance/run.sh, newman installed from the npm registry on
// first use) against a fresh all-in-one instance: 0 failed.
func TestConformance_IdPSuites(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suites are not run with -short")
	}
	script, err := filepath.Abs(filepath.Join(conformanceDir, "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Skipf("conformance suites not present at %s", script)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the conformance suites need node and npm")
	}
	sys, _ := startSystem(t, t.TempDir())
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(),
		"SCIM_BASE_URL="+sys.BaseURL(),
		"SCIM_TOKEN="+sys.Token(),
		"SCIM_SUITES_WORK="+filepath.Join(work, "suites"),
		"SCIM_SUITES_OUT="+filepath.Join(work, "out"),
		"SCIM_SUITES_VERBOSE=1",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("run.sh output:\n%s", out.String())
	if m := regexp.MustCompile(`(?m)^(\d+) passed, (\d+) failed$`).FindStringSubmatch(out.String()); m == nil || m[2] != "0" {
		t.Fatalf("conformance suites did not pass (exit %v)", err)
	}
	if err != nil {
		t.Fatalf("run.sh: %v", err)
	}
}
