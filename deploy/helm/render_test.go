package helm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test, relative to this package.
const chartDir = "scimcord"

// releaseName is the release every render uses.
const releaseName = "rel"

// helmPath finds the pinned helm binary: $SCIMCORD_HELM, else the
// repository's .tools/bin/helm that `make chart` builds from the Go module proxy.
func helmPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("SCIMCORD_HELM")
	if p == "" {
		abs, err := filepath.Abs(filepath.Join("..", "..", ".tools", "bin", "helm"))
		if err != nil {
			t.Fatalf("helm path: %v", err)
		}
		p = abs
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("helm not found at %s (%v): run `make chart`, which builds the pinned helm into .tools/bin", p, err)
	}
	return p
}

// helmTemplate runs `helm template` with the given extra arguments and
// returns its standard output, or the error with helm's standard error.
func helmTemplate(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	full := append([]string{"template", releaseName, chartDir, "--namespace", "scim"}, args...)
	cmd := exec.CommandContext(ctx, helmPath(t), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No repositories, no network: a private, empty helm home.
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", strings.Join(full, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// manifests is one render, decoded: every object by kind, in render order.
type manifests struct {
	Deployments     []*appsv1.Deployment
	Services        []*corev1.Service
	ServiceAccounts []*corev1.ServiceAccount
	Secrets         []*corev1.Secret
	ConfigMaps      []*corev1.ConfigMap
	Pods            []*corev1.Pod
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicies []*networkingv1.NetworkPolicy
	Ingresses       []*networkingv1.Ingress
	HTTPRoutes      []*gatewayv1.HTTPRoute
	ServiceMonitors []*monitoringv1.ServiceMonitor
	PrometheusRules []*monitoringv1.PrometheusRule
	Kinds           []string // "apiVersion/kind name" of every object, sorted
}

// decoder decodes one document strictly (unknown and duplicate fields fail)
// into its Go type and files it in m.
type decoder func(m *manifests, doc []byte) error

func strict[T any](add func(*manifests, *T)) decoder {
	return func(m *manifests, doc []byte) error {
		v := new(T)
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			return err
		}
		add(m, v)
		return nil
	}
}

// decoders lists every apiVersion/kind the chart may render. Anything else
// fails the test: a new kind needs its Go type here first.
var decoders = map[string]decoder{
	"v1/ServiceAccount":  strict(func(m *manifests, v *corev1.ServiceAccount) { m.ServiceAccounts = append(m.ServiceAccounts, v) }),
	"v1/Secret":          strict(func(m *manifests, v *corev1.Secret) { m.Secrets = append(m.Secrets, v) }),
	"v1/ConfigMap":       strict(func(m *manifests, v *corev1.ConfigMap) { m.ConfigMaps = append(m.ConfigMaps, v) }),
	"v1/Service":         strict(func(m *manifests, v *corev1.Service) { m.Services = append(m.Services, v) }),
	"v1/Pod":             strict(func(m *manifests, v *corev1.Pod) { m.Pods = append(m.Pods, v) }),
	"apps/v1/Deployment": strict(func(m *manifests, v *appsv1.Deployment) { m.Deployments = append(m.Deployments, v) }),
	"policy/v1/PodDisruptionBudget": strict(func(m *manifests, v *policyv1.PodDisruptionBudget) {
		m.PDBs = append(m.PDBs, v)
	}),
	"autoscaling/v2/HorizontalPodAutoscaler": strict(func(m *manifests, v *autoscalingv2.HorizontalPodAutoscaler) {
		m.HPAs = append(m.HPAs, v)
	}),
	"networking.k8s.io/v1/NetworkPolicy": strict(func(m *manifests, v *networkingv1.NetworkPolicy) {
		m.NetworkPolicies = append(m.NetworkPolicies, v)
	}),
	"networking.k8s.io/v1/Ingress": strict(func(m *manifests, v *networkingv1.Ingress) { m.Ingresses = append(m.Ingresses, v) }),
	"gateway.networking.k8s.io/v1/HTTPRoute": strict(func(m *manifests, v *gatewayv1.HTTPRoute) {
		m.HTTPRoutes = append(m.HTTPRoutes, v)
	}),
	"monitoring.coreos.com/v1/ServiceMonitor": strict(func(m *manifests, v *monitoringv1.ServiceMonitor) {
		m.ServiceMonitors = append(m.ServiceMonitors, v)
	}),
	"monitoring.coreos.com/v1/PrometheusRule": strict(func(m *manifests, v *monitoringv1.PrometheusRule) {
		m.PrometheusRules = append(m.PrometheusRules, v)
	}),
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decode splits a multi-document render and decodes every object strictly.
func decode(out []byte) (*manifests, error) {
	m := &manifests{}
	for i, doc := range docSep.Split(string(out), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var obj struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, fmt.Errorf("document %d: not YAML: %w\n%s", i, err, doc)
		}
		key := obj.APIVersion + "/" + obj.Kind
		dec, ok := decoders[key]
		if !ok {
			return nil, fmt.Errorf("document %d (%s %s): no Go type registered for %q", i, obj.Kind, obj.Metadata.Name, key)
		}
		if err := dec(m, []byte(doc)); err != nil {
			return nil, fmt.Errorf("%s %s: strict decode: %w", key, obj.Metadata.Name, err)
		}
		m.Kinds = append(m.Kinds, key+" "+obj.Metadata.Name)
	}
	sort.Strings(m.Kinds)
	return m, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// valueSet is one set of values the chart is tested with.
type valueSet struct {
	name string   // "default" or the ci/ file name
	args []string // extra helm arguments (-f ci/x.yaml)
}

// valueSets returns the default values and every file in scimcord/ci/.
func valueSets(t *testing.T) []valueSet {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil {
		t.Fatalf("glob ci: %v", err)
	}
	if len(files) == 0 {
		t.Fatalf("no value sets in %s/ci", chartDir)
	}
	sets := []valueSet{{name: "default"}}
	for _, f := range files {
		sets = append(sets, valueSet{name: filepath.Base(f), args: []string{"-f", f}})
	}
	return sets
}

// render renders and decodes, failing the test on any error.
func render(t *testing.T, args ...string) *manifests {
	t.Helper()
	out, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// writeValues writes a values file into a temporary directory and returns its path.
func writeValues(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// deployment returns the Deployment of one component, or nil.
func (m *manifests) deployment(component string) *appsv1.Deployment {
	for _, d := range m.Deployments {
		if d.Spec.Template.Labels["app.kubernetes.io/component"] == component {
			return d
		}
	}
	return nil
}
