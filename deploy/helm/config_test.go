package helm

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/scimcord/scimcord/pkg/tenants"
	"github.com/scimcord/scimcord/services/mapping"
)

// TestRenderedConfigLoadsInTheServices feeds the files the chart renders to
// the services' own parsers: the tenant file to pkg/tenants, the rules file to
// the mapping service's loader (CEL compiled), and the helm-test token to the
// tenant set it must authenticate against.
func TestRenderedConfigLoadsInTheServices(t *testing.T) {
	t.Parallel()
	for _, vs := range valueSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			t.Parallel()
			m := render(t, vs.args...)
			checkConfigLoads(t, m)
		})
	}
}

func checkConfigLoads(t *testing.T, m *manifests) {
	t.Helper()
	var set *tenants.Set
	var testToken string
	for _, s := range m.Secrets {
		if v, ok := s.Data["tenants.yaml"]; ok {
			var err error
			if set, err = tenants.Parse(v); err != nil {
				t.Errorf("Secret %s: the tenant file does not load: %v", s.Name, err)
			}
		}
		if v, ok := s.Data["scim-token"]; ok {
			testToken = string(v)
		}
	}
	if set != nil && testToken != "" {
		if _, err := set.Authenticate(testToken); err != nil {
			t.Errorf("the helm test's SCIM token does not authenticate against the rendered tenants: %v", err)
		}
	}
	for _, cm := range m.ConfigMaps {
		v, ok := cm.Data["mapping.yaml"]
		if !ok {
			continue
		}
		p := filepath.Join(t.TempDir(), "mapping.yaml")
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := mapping.LoadFile(p); err != nil {
			t.Errorf("ConfigMap %s: the rules file does not load in the mapping service: %v", cm.Name, err)
		}
	}
}

// TestReadmeExamplesRender renders every values example of the chart's README
// (the ```yaml blocks that start with "# values-…") and loads their files.
func TestReadmeExamplesRender(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(# (values-[a-z]+\\.yaml)\n.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) < 2 {
		t.Fatalf("found %d values examples in the README, want the Okta and the Entra one", len(blocks))
	}
	for _, b := range blocks {
		name, content := b[2], b[1]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := render(t, "-f", writeValues(t, content))
			checkConfigLoads(t, m)
			if !strings.Contains(content, "token_sha256") && !strings.Contains(content, "existingSecret") {
				t.Errorf("%s: neither tenants nor an existing Secret", name)
			}
		})
	}
}
