package helm

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// tokenRef returns the Secret reference of SCIMCORD_MAPPING_TOKEN in d, or nil.
func tokenRef(d *appsv1.Deployment) *corev1.SecretKeySelector {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == "SCIMCORD_MAPPING_TOKEN" && e.ValueFrom != nil {
				return e.ValueFrom.SecretKeyRef
			}
			if e.Name == "SCIMCORD_MAPPING_TOKEN" {
				return &corev1.SecretKeySelector{} // a plain value: never
			}
		}
	}
	return nil
}

func (m *manifests) secret(name string) *corev1.Secret {
	for _, s := range m.Secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func TestMappingTokenIsSharedByTheServices(t *testing.T) {
	t.Parallel()
	const adminOn = "admin:\n  enabled: true\n  token: an-admin-token-of-32-characters!\n"
	tests := []struct {
		name       string
		values     string
		wantSecret string // the Secret every service reads
		chartMade  bool   // the chart renders that Secret
		wantToken  string // its value ("" = generated, 48 characters)
		callers    []string
	}{
		{name: "by default the chart makes a random token in its own Secret", values: "{}",
			wantSecret: "rel-scimcord-mapping-token", chartMade: true, callers: []string{"applier"}},
		{name: "with the admin API ingest sends it too", values: adminOn,
			wantSecret: "rel-scimcord-mapping-token", chartMade: true, callers: []string{"applier", "ingest"}},
		{name: "a given token goes into the chart's Secret", values: adminOn + "mapping:\n  auth:\n    token: a-mapping-token-given-in-values\n",
			wantSecret: "rel-scimcord-mapping-token", chartMade: true, wantToken: "a-mapping-token-given-in-values", callers: []string{"applier", "ingest"}},
		{name: "an existing Secret is referenced, not made", values: adminOn + "mapping:\n  auth:\n    existingSecret: my-mapping-token\n",
			wantSecret: "my-mapping-token", callers: []string{"applier", "ingest"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := render(t, "-f", writeValues(t, tc.values))
			for _, c := range append([]string{"mapping"}, tc.callers...) {
				ref := tokenRef(m.deployment(c))
				if ref == nil || ref.Name != tc.wantSecret || ref.Key != "mapping-token" {
					t.Errorf("%s: SCIMCORD_MAPPING_TOKEN from %+v, want Secret %s key mapping-token", c, ref, tc.wantSecret)
				}
			}
			s := m.secret(tc.wantSecret)
			if !tc.chartMade {
				if s != nil {
					t.Errorf("the chart renders Secret %s, which the values say exists", tc.wantSecret)
				}
				return
			}
			if s == nil {
				t.Fatalf("no Secret %s in the release", tc.wantSecret)
			}
			got := string(s.Data["mapping-token"])
			switch {
			case tc.wantToken != "" && got != tc.wantToken:
				t.Errorf("token in the Secret is not the one given (%d characters)", len(got))
			case tc.wantToken == "" && len(got) != 48:
				t.Errorf("generated token has %d characters, want 48", len(got))
			}
			if tc.wantToken != "" {
				for _, c := range append([]string{"mapping"}, tc.callers...) {
					if m.deployment(c).Spec.Template.Annotations["checksum/mapping-token"] == "" {
						t.Errorf("%s: no checksum/mapping-token annotation: a new token would not roll it", c)
					}
				}
			}
		})
	}

	t.Run("bad token values fail", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ values, want string }{
			{"mapping:\n  auth:\n    token: fifteen-chars-x\n", "/mapping/auth/token"},
			{"mapping:\n  auth:\n    token: a-mapping-token-given-in-values\n    existingSecret: my-mapping-token\n", "not both"},
		} {
			_, err := helmTemplate(t, "-f", writeValues(t, tc.values))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render error %v, want one naming %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "fifteen-chars-x") {
				t.Errorf("the error echoes the token: %v", err)
			}
		}
		_, err := helmTemplate(t, "--skip-schema-validation", "-f", writeValues(t, "mapping:\n  auth:\n    token: fifteen-chars-x\n"))
		if err == nil || !strings.Contains(err.Error(), "mapping.auth.token must be at least 16 characters") {
			t.Errorf("without the schema: %v, want the template guard", err)
		}
	})
}
