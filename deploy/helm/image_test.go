package helm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// imageServices are the images `make image` builds (deploy/helm/helm.mk).
var imageServices = []string{"ingest", "mapping", "applier", "scimcord"}

// chartOnlyModules are needed by this package's tests only; they must never
// reach a service image.
var chartOnlyModules = regexp.MustCompile(`(?m)^(k8s\.io/|sigs\.k8s\.io/|github\.com/prometheus-operator/|helm\.sh/)`)

// TestImageBuildsEachServiceAlone checks deploy/docker/Dockerfile: each
// service is built as its own module (GOWORK=off, so deploy/helm's Kubernetes
// modules stay out of the image build), the Go module cache mount is where the
// golang image keeps it (GOPATH=/go), no -X flag names a variable that does not
// exist, and each service's module resolves and loads without the workspace.
func TestImageBuildsEachServiceAlone(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	if !regexp.MustCompile(`(?m)^ENV .*\bGOWORK=off\b`).MatchString(df) {
		t.Error("Dockerfile: the build does not set GOWORK=off: the workspace pulls deploy/helm's modules in")
	}
	if !strings.Contains(df, "WORKDIR /src/services/${SERVICE}") {
		t.Error("Dockerfile: the build does not run in the service's own module")
	}
	mounts := regexp.MustCompile(`--mount=type=cache,target=(\S+)`).FindAllStringSubmatch(df, -1)
	if len(mounts) == 0 {
		t.Error("Dockerfile: no cache mounts")
	}
	for _, m := range mounts {
		if m[1] != "/go/pkg/mod" && m[1] != "/root/.cache/go-build" {
			t.Errorf("Dockerfile: cache mount %s is not the golang image's module cache (/go/pkg/mod) or build cache (/root/.cache/go-build)", m[1])
		}
	}
	if strings.Contains(df, "-X main.") {
		t.Error("Dockerfile: -X main.… sets a variable the service mains do not declare (a silent no-op)")
	}
	ignore, err := os.ReadFile(filepath.Join("..", "docker", "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ignore), "!deploy/helm") || strings.Contains(string(ignore), "!go.work") {
		t.Error("Dockerfile.dockerignore: sends go.work or deploy/helm into the build context")
	}

	for _, s := range imageServices {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("..", "..", "services", s)
			goCmd := func(args ...string) string {
				t.Helper()
				cmd := exec.CommandContext(t.Context(), "go", args...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("GOWORK=off go %s in services/%s: %v\n%s", strings.Join(args, " "), s, err, stderr.String())
				}
				return string(out)
			}
			if bad := chartOnlyModules.FindAllString(goCmd("list", "-m", "all"), -1); len(bad) > 0 {
				t.Errorf("services/%s's module graph holds chart-only modules %v", s, bad)
			}
			goCmd("list", "-deps", "./cmd/"+s)
		})
	}
}

// TestReadmeNamesLocalImageTag: the chart's README tells how to install the
// images `make image` builds, with the tag it gives them (IMAGE_TAG in helm.mk).
func TestReadmeNamesLocalImageTag(t *testing.T) {
	t.Parallel()
	mk, err := os.ReadFile("helm.mk")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^IMAGE_TAG\s*\?=\s*(\S+)`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("helm.mk: no IMAGE_TAG default")
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\s+tag: ` + regexp.QuoteMeta(string(m[1])) + `\b`).Match(readme) {
		t.Errorf("README.md: no `image.tag: %s` example for the images `make image` builds (IMAGE_TAG default)", m[1])
	}
}
