package helm

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/scimcord/scimcord/services/mapping"
)

// components are the three services the chart deploys.
var components = []string{"ingest", "mapping", "applier"}

// The environment contract is read from the services' own cmd mains (see
// mainEnv): every variable a main reads must be set by the chart, or be listed
// in optionalEnv with the reason it may stay unset; the chart sets nothing a
// main does not read. A new, renamed or misspelt variable fails the test.

// sdkEnv are read by the OpenTelemetry SDK itself, not by our code:
// OTEL_RESOURCE_ATTRIBUTES by resource.Default (pkg/telemetry), the sampler
// variables by sdktrace.NewTracerProvider.
var sdkEnv = []string{"OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"}

// chartEnv are the chart's own helpers: POD_NAME only feeds $(POD_NAME) in
// another variable's value.
var chartEnv = []string{"POD_NAME"}

// optionalEnv: variables a main reads that the chart may leave unset (the
// service default applies, or they depend on a value), each with the reason.
var optionalEnv = map[string]map[string]string{
	"common": {
		"NATS_CREDS":                         "only with nats.credentials.existingSecret",
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "only with observability.otlp.enabled",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "only with observability.otlp.enabled",
		"OTEL_EXPORTER_OTLP_INSECURE":        "only with observability.otlp.enabled",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "the chart sets the generic OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "the chart sets the generic OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_TRACES_SAMPLER":                "only with observability.otlp.enabled",
		"OTEL_TRACES_SAMPLER_ARG":            "only with observability.otlp.samplerArg",
	},
	"ingest": {
		"SCIMCORD_ADMIN_TOKEN":   "only with admin.enabled",
		"SCIMCORD_MAPPING_ADDR":  "read only with the admin API; required with SCIMCORD_ADMIN_TOKEN (checkEnv)",
		"SCIMCORD_MAPPING_TOKEN": "read only with the admin API (it calls mapping); set with SCIMCORD_MAPPING_ADDR",
	},
	"applier": {
		"SCIMCORD_DISCORD_GLOBAL_WINDOW": "service default; applier.extraEnv",
		"SCIMCORD_GRACE_PERIOD":          "service default (per guild: tenant grace_period); applier.extraEnv",
		"SCIMCORD_DRIFT_INTERVAL":        "service default; applier.extraEnv",
		"SCIMCORD_PENDING_JOIN_INTERVAL": "service default; applier.extraEnv",
		"SCIMCORD_AUTO_CREATE_ROLES":     "service default (off); applier.extraEnv",
		"SCIMCORD_DRIFT_DRY_RUN":         "service default (off); applier.extraEnv",
		"SCIMCORD_BRAKE_MAX_COUNT":       "service default (per guild: tenant brake_max_count); applier.extraEnv",
		"SCIMCORD_BRAKE_MAX_SHARE":       "service default (per guild: tenant brake_max_share); applier.extraEnv",
		"SCIMCORD_DISCORD_URL":           "development only: sends Discord calls to an emulator",
	},
}

// envRead matches the ways the cmd mains and pkg/telemetry read a variable:
// getenv("X"), os.Getenv("X"), env("X", def), lookup(getenv, "X"), intEnv(getenv, "X", def).
var envRead = regexp.MustCompile(`\b(?:os\.Getenv|os\.LookupEnv|getenv|env|lookup|intEnv)\((?:getenv,\s*)?"([A-Z][A-Z0-9_]*)"`)

// envReadIn returns the variables the non-test Go files of dir read.
func envReadIn(t *testing.T, dir string) (names []string, callsFromEnv bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s (%v)", dir, err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range envRead.FindAllStringSubmatch(string(src), -1) {
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
		}
		callsFromEnv = callsFromEnv || strings.Contains(string(src), "telemetry.FromEnv(")
	}
	return names, callsFromEnv
}

// mainEnv returns every variable the component's cmd main reads, with the
// OTEL_* variables of pkg/telemetry.FromEnv when the main calls it.
func mainEnv(t *testing.T, component string) []string {
	t.Helper()
	names, fromEnv := envReadIn(t, filepath.Join("..", "..", "services", component, "cmd", component))
	if fromEnv {
		tel, _ := envReadIn(t, filepath.Join("..", "..", "pkg", "telemetry"))
		for _, n := range tel {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if len(names) < 5 {
		t.Fatalf("%s: found only %v in its cmd main: the pattern envRead no longer matches how it reads its environment", component, names)
	}
	return names
}

// TestEnvContractIsCurrent: every optionalEnv entry is still read by its
// main (a stale or misspelt exception fails).
func TestEnvContractIsCurrent(t *testing.T) {
	t.Parallel()
	for _, c := range components {
		read := append(mainEnv(t, c), sdkEnv...)
		for name := range optionalEnv[c] {
			if !slices.Contains(read, name) {
				t.Errorf("optionalEnv[%s] lists %s, which the %s main does not read", c, name, c)
			}
		}
		for name := range optionalEnv["common"] {
			if !slices.Contains(read, name) {
				t.Errorf("optionalEnv[common] lists %s, which the %s main does not read", name, c)
			}
		}
	}
}

// TestChart renders every value set once and checks every property on it.
func TestChart(t *testing.T) {
	t.Parallel()
	for _, vs := range valueSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			t.Parallel()
			m := render(t, vs.args...)
			t.Run("renders the three services", func(t *testing.T) { checkComponents(t, m) })
			t.Run("keeps secret data out of ConfigMaps, env literals and annotations", func(t *testing.T) { checkSecretsStayInSecrets(t, m) })
			t.Run("runs every container non-root, hardened, with resource requests", func(t *testing.T) { checkHardened(t, m) })
			t.Run("probes every service container", func(t *testing.T) { checkProbes(t, m) })
			t.Run("keeps serving traffic until its endpoint is gone", func(t *testing.T) { checkDrain(t, m) })
			t.Run("sets every variable the services' mains read, and only those", func(t *testing.T) { checkEnv(t, m) })
			t.Run("listens, exposes and probes on the same port", func(t *testing.T) { checkListenPorts(t, m) })
			t.Run("points ingest and applier at the mapping Service's gRPC port", func(t *testing.T) { checkMappingAddr(t, m) })
			t.Run("mounts every file an environment variable points at, secrets from Secrets", func(t *testing.T) { checkFilesMounted(t, m) })
			t.Run("has a PodDisruptionBudget exactly for services with more than one replica", func(t *testing.T) { checkPDBs(t, m) })
			t.Run("selects the right pods with its NetworkPolicies", func(t *testing.T) { checkNetworkPolicies(t, m) })
			t.Run("splits Discord's global limit between the applier replicas", func(t *testing.T) { checkGlobalRPS(t, m, vs) })
			t.Run("points Services, routes and monitors at existing ports", func(t *testing.T) { checkServices(t, m) })
			t.Run("ships a dashboard that is valid JSON", func(t *testing.T) { checkDashboard(t, m) })
		})
	}
}

func checkComponents(t *testing.T, m *manifests) {
	for _, c := range components {
		d := m.deployment(c)
		if d == nil {
			t.Fatalf("no Deployment for %s; rendered: %v", c, m.Kinds)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			t.Fatalf("%s: selector: %v", d.Name, err)
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not match its pod labels %v", d.Name, sel, d.Spec.Template.Labels)
		}
		for _, other := range components {
			if o := m.deployment(other); other != c && o != nil && sel.Matches(labels.Set(o.Spec.Template.Labels)) {
				t.Errorf("%s: selector %v also matches %s's pods", d.Name, sel, o.Name)
			}
		}
	}
}

// secretValues returns every secret string the render holds: each Secret
// value, and each token hash inside a tenant file.
func secretValues(t *testing.T, m *manifests) []string {
	t.Helper()
	var out []string
	for _, s := range m.Secrets {
		for k, v := range s.Data {
			val := string(v)
			var f struct {
				Tenants []struct {
					TokenSHA256 []string `json:"token_sha256"`
				} `json:"tenants"`
			}
			if strings.Contains(val, "token_sha256") {
				if err := yaml.Unmarshal(v, &f); err != nil {
					t.Fatalf("secret %s key %s: tenant file: %v", s.Name, k, err)
				}
				for _, tn := range f.Tenants {
					out = append(out, tn.TokenSHA256...)
				}
				continue
			}
			out = append(out, val)
		}
		for _, v := range s.StringData {
			out = append(out, v)
		}
	}
	return out
}

func checkSecretsStayInSecrets(t *testing.T, m *manifests) {
	secrets := secretValues(t, m)
	leaks := func(where, text string) {
		t.Helper()
		for _, s := range secrets {
			if len(s) >= 8 && strings.Contains(text, s) {
				t.Errorf("%s contains secret data (%d chars starting %q…)", where, len(s), s[:4])
			}
		}
	}
	for _, cm := range m.ConfigMaps {
		for k, v := range cm.Data {
			if strings.Contains(v, "token_sha256") {
				t.Errorf("ConfigMap %s key %s holds a tenant file (token hashes): it belongs in a Secret", cm.Name, k)
			}
			leaks("ConfigMap "+cm.Name+" key "+k, v)
		}
		for k, v := range cm.BinaryData {
			leaks("ConfigMap "+cm.Name+" binary key "+k, string(v))
		}
	}
	for _, ps := range podSpecs(m) {
		for k, v := range ps.annotations {
			leaks(ps.name+" annotation "+k, v)
		}
		for _, c := range allContainers(ps.spec) {
			for _, e := range c.Env {
				leaks(fmt.Sprintf("%s container %s env %s", ps.name, c.Name, e.Name), e.Value)
				if strings.Contains(e.Name, "TOKEN") || strings.Contains(e.Name, "CREDS") && e.Value == "" {
					if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						if e.Name != "NATS_CREDS" { // NATS_CREDS is a file path; the file comes from a Secret volume
							t.Errorf("%s container %s: %s must come from a Secret (secretKeyRef)", ps.name, c.Name, e.Name)
						}
					}
				}
			}
			for _, a := range append(slices.Clone(c.Args), c.Command...) {
				leaks(fmt.Sprintf("%s container %s command line", ps.name, c.Name), a)
			}
		}
	}
}

// podSpec is a pod template (of a Deployment) or a bare Pod (helm test).
type podSpec struct {
	name        string
	component   string
	annotations map[string]string
	labels      map[string]string
	spec        *corev1.PodSpec
	deployment  *appsv1.Deployment
}

func podSpecs(m *manifests) []podSpec {
	var out []podSpec
	for _, d := range m.Deployments {
		out = append(out, podSpec{"Deployment " + d.Name, d.Spec.Template.Labels["app.kubernetes.io/component"], d.Spec.Template.Annotations, d.Spec.Template.Labels, &d.Spec.Template.Spec, d})
	}
	for _, p := range m.Pods {
		out = append(out, podSpec{"Pod " + p.Name, p.Labels["app.kubernetes.io/component"], p.Annotations, p.Labels, &p.Spec, nil})
	}
	return out
}

func allContainers(s *corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(s.InitContainers), s.Containers...)
}

func checkHardened(t *testing.T, m *manifests) {
	for _, ps := range podSpecs(m) {
		psc := ps.spec.SecurityContext
		if psc == nil {
			t.Errorf("%s: no pod securityContext", ps.name)
			continue
		}
		if ps.spec.AutomountServiceAccountToken == nil || *ps.spec.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token it does not need", ps.name)
		}
		for _, c := range allContainers(ps.spec) {
			where := ps.name + " container " + c.Name
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
				t.Errorf("%s: runAsNonRoot is not set", where)
			}
			if uid := firstInt64(sc.RunAsUser, psc.RunAsUser); uid == nil || *uid == 0 {
				t.Errorf("%s: runs as uid %s, want a non-zero uid", where, fmtInt64(uid))
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if !isTrue(sc.ReadOnlyRootFilesystem) {
				t.Errorf("%s: root filesystem is writable", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities %v, want drop [ALL] and no add", where, sc.Capabilities)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccomp profile %v, want RuntimeDefault", where, seccomp)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s: resource requests %v, want cpu and memory", where, c.Resources.Requests)
			}
			if c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s: no memory limit", where)
			}
		}
	}
}

func checkProbes(t *testing.T, m *manifests) {
	want := map[string]struct {
		live, ready string // HTTP paths; "" means gRPC health
	}{
		"ingest":  {"/healthz", "/readyz"},
		"mapping": {"", ""},
		"applier": {"/healthz", "/readyz"},
	}
	for _, c := range components {
		d := m.deployment(c)
		if d == nil {
			continue
		}
		ctr := d.Spec.Template.Spec.Containers[0]
		w := want[c]
		for name, p := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe, "startup": ctr.StartupProbe} {
			if p == nil {
				t.Errorf("%s: no %s probe", d.Name, name)
				continue
			}
			path := w.live
			if name == "readiness" {
				path = w.ready
			}
			switch {
			case path == "":
				if p.GRPC == nil || int(p.GRPC.Port) != containerPort(ctr, "grpc") {
					t.Errorf("%s: %s probe %+v, want gRPC health on the grpc port", d.Name, name, p.ProbeHandler)
					continue
				}
				// Liveness and startup must not depend on NATS or the rules
				// (NOT_SERVING until loaded): they ask for the always-SERVING
				// name; readiness asks for the server ("").
				svc := ""
				if p.GRPC.Service != nil {
					svc = *p.GRPC.Service
				}
				wantSvc := mapping.LivenessService
				if name == "readiness" {
					wantSvc = ""
				}
				if svc != wantSvc {
					t.Errorf("%s: %s probe asks gRPC health for %q, want %q", d.Name, name, svc, wantSvc)
				}
			default:
				if p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
					t.Errorf("%s: %s probe %+v, want GET %s on port http", d.Name, name, p.ProbeHandler, path)
				}
			}
		}
	}
}

// defaultListen is where each service listens when its variable is unset.
var defaultListen = map[string]string{"SCIMCORD_METRICS_ADDR": ":9464", "ingest SCIMCORD_HTTP_ADDR": ":8080", "applier SCIMCORD_HTTP_ADDR": ":8081", "mapping SCIMCORD_GRPC_ADDR": ":9090"}

// checkListenPorts: the port each service listens on (its *_ADDR variable)
// is the containerPort of that name, and the probes and Services reach it.
func checkListenPorts(t *testing.T, m *manifests) {
	listen := map[string]map[string]string{ // component → port name → variable
		"ingest":  {"http": "SCIMCORD_HTTP_ADDR", "metrics": "SCIMCORD_METRICS_ADDR"},
		"mapping": {"grpc": "SCIMCORD_GRPC_ADDR", "metrics": "SCIMCORD_METRICS_ADDR"},
		"applier": {"http": "SCIMCORD_HTTP_ADDR", "metrics": "SCIMCORD_METRICS_ADDR"},
	}
	for _, c := range components {
		d := m.deployment(c)
		if d == nil {
			continue
		}
		ctr := d.Spec.Template.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range ctr.Env {
			env[e.Name] = e.Value
		}
		ports := map[string]int{} // port name → the port the service listens on
		for portName, v := range listen[c] {
			addr, ok := env[v]
			if !ok {
				addr = defaultListen[v]
				if addr == "" {
					addr = defaultListen[c+" "+v]
				}
			}
			_, ps, err := net.SplitHostPort(addr)
			n, perr := strconv.Atoi(ps)
			if err != nil || perr != nil {
				t.Errorf("%s: %s=%q is not host:port", d.Name, v, addr)
				continue
			}
			ports[portName] = n
			if cp := containerPort(ctr, portName); cp != n {
				t.Errorf("%s: listens on %d (%s=%q), but containerPort %q is %d", d.Name, n, v, addr, portName, cp)
			}
		}
		if len(ctr.Ports) != len(listen[c]) {
			t.Errorf("%s: container ports %v, want exactly %v", d.Name, ctr.Ports, listen[c])
		}
		for name, p := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe, "startup": ctr.StartupProbe} {
			switch {
			case p == nil:
			case p.GRPC != nil:
				if int(p.GRPC.Port) != ports["grpc"] {
					t.Errorf("%s: %s probe on port %d, the service listens on %d", d.Name, name, p.GRPC.Port, ports["grpc"])
				}
			case p.HTTPGet != nil:
				got := p.HTTPGet.Port.IntValue()
				if got == 0 {
					got = containerPort(ctr, p.HTTPGet.Port.String())
				}
				if got != ports["http"] {
					t.Errorf("%s: %s probe on port %s (%d), the service listens on %d", d.Name, name, p.HTTPGet.Port.String(), got, ports["http"])
				}
			}
		}
		for _, s := range m.Services {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			for _, sp := range s.Spec.Ports {
				got := sp.TargetPort.IntValue()
				if got == 0 {
					got = containerPort(ctr, sp.TargetPort.String())
				}
				if want, ok := ports[sp.Name]; !ok || got != want {
					t.Errorf("Service %s port %s reaches %s port %d, the service listens on %v (%s)", s.Name, sp.Name, d.Name, got, want, sp.Name)
				}
			}
		}
	}
}

// checkMappingAddr: ingest (with the admin API) and the applier get the same
// SCIMCORD_MAPPING_ADDR, and it is this release's mapping Service on a port
// that reaches mapping's gRPC port.
func checkMappingAddr(t *testing.T, m *manifests) {
	md := m.deployment("mapping")
	grpcPort := containerPort(md.Spec.Template.Spec.Containers[0], "grpc")
	addrs := map[string]string{}
	for _, c := range []string{"ingest", "applier"} {
		for _, e := range m.deployment(c).Spec.Template.Spec.Containers[0].Env {
			if e.Name == "SCIMCORD_MAPPING_ADDR" {
				addrs[c] = e.Value
			}
		}
	}
	if a, ok := addrs["ingest"]; ok && a != addrs["applier"] {
		t.Errorf("ingest's SCIMCORD_MAPPING_ADDR %q differs from the applier's %q", a, addrs["applier"])
	}
	host, ps, err := net.SplitHostPort(addrs["applier"])
	if err != nil {
		t.Fatalf("applier SCIMCORD_MAPPING_ADDR %q: %v", addrs["applier"], err)
	}
	for _, s := range m.Services {
		if s.Name != host {
			continue
		}
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(md.Spec.Template.Labels)) {
			t.Errorf("SCIMCORD_MAPPING_ADDR names Service %s, which does not select the mapping pods", s.Name)
		}
		for _, sp := range s.Spec.Ports {
			if strconv.Itoa(int(sp.Port)) != ps {
				continue
			}
			got := sp.TargetPort.IntValue()
			if got == 0 {
				got = containerPort(md.Spec.Template.Spec.Containers[0], sp.TargetPort.String())
			}
			if got != grpcPort {
				t.Errorf("SCIMCORD_MAPPING_ADDR %s reaches mapping port %d, its gRPC port is %d", addrs["applier"], got, grpcPort)
			}
			return
		}
		t.Errorf("SCIMCORD_MAPPING_ADDR %s: Service %s has no port %s", addrs["applier"], s.Name, ps)
		return
	}
	t.Errorf("SCIMCORD_MAPPING_ADDR %s: no Service %s in the release", addrs["applier"], host)
}

func containerPort(c corev1.Container, name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return int(p.ContainerPort)
		}
	}
	return -1
}

func checkEnv(t *testing.T, m *manifests) {
	for _, c := range components {
		d := m.deployment(c)
		if d == nil {
			continue
		}
		read := mainEnv(t, c)
		allowed := slices.Concat(read, sdkEnv, chartEnv)
		set := map[string]bool{}
		values := ""
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if set[e.Name] {
				t.Errorf("%s: %s set twice", d.Name, e.Name)
			}
			set[e.Name] = true
			values += e.Value + "\n"
			if !slices.Contains(allowed, e.Name) {
				t.Errorf("%s: sets %s, which the %s main (services/%s/cmd/%s) does not read", d.Name, e.Name, c, c, c)
			}
		}
		for _, name := range read {
			_, optional := optionalEnv[c][name]
			_, common := optionalEnv["common"][name]
			if !set[name] && !optional && !common {
				t.Errorf("%s: the %s main reads %s, but the chart does not set it", d.Name, c, name)
			}
		}
		for _, name := range chartEnv {
			if set[name] && !strings.Contains(values, "$("+name+")") {
				t.Errorf("%s: sets %s, but no other variable uses $(%s)", d.Name, name, name)
			}
		}
		// ingest's admin API needs mapping for explain and rules apply.
		if c == "ingest" && set["SCIMCORD_ADMIN_TOKEN"] && !set["SCIMCORD_MAPPING_ADDR"] {
			t.Errorf("%s: the admin API is on (SCIMCORD_ADMIN_TOKEN) without SCIMCORD_MAPPING_ADDR: explain and rules apply answer 503", d.Name)
		}
	}
}

// replicas is a Deployment's floor of running pods: its HPA's minReplicas
// when autoscaled, else spec.replicas.
func replicas(m *manifests, d *appsv1.Deployment) int {
	for _, h := range m.HPAs {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name {
			if d.Spec.Replicas != nil {
				return -1 // both: the HPA and the Deployment would fight
			}
			return int(*h.Spec.MinReplicas)
		}
	}
	if d.Spec.Replicas == nil {
		return 1
	}
	return int(*d.Spec.Replicas)
}

func checkPDBs(t *testing.T, m *manifests) {
	for _, d := range m.Deployments {
		n := replicas(m, d)
		if n < 0 {
			t.Errorf("%s: has spec.replicas and an HPA", d.Name)
			continue
		}
		var matching []string
		for _, p := range m.PDBs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err != nil {
				t.Fatalf("PDB %s: %v", p.Name, err)
			}
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				matching = append(matching, p.Name)
				if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
					t.Errorf("PDB %s: neither maxUnavailable nor minAvailable", p.Name)
				}
				if p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.IntValue() >= n {
					t.Errorf("PDB %s: maxUnavailable %s allows all %d replicas of %s down", p.Name, p.Spec.MaxUnavailable, n, d.Name)
				}
			}
		}
		switch {
		case n > 1 && len(matching) != 1:
			t.Errorf("%s: %d replicas, want exactly one PDB selecting it, got %v", d.Name, n, matching)
		case n <= 1 && len(matching) != 0:
			t.Errorf("%s: %d replica, a PDB %v would block every drain", d.Name, n, matching)
		}
	}
}

// policiesFor returns the NetworkPolicies that select a pod with these labels.
func policiesFor(t *testing.T, m *manifests, podLabels map[string]string) []*networkingv1.NetworkPolicy {
	t.Helper()
	var out []*networkingv1.NetworkPolicy
	for _, np := range m.NetworkPolicies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", np.Name, err)
		}
		if sel.Matches(labels.Set(podLabels)) {
			out = append(out, np)
		}
	}
	return out
}

// peerAdmits reports whether an ingress rule's peers admit a pod with these
// labels in the release namespace (an empty peer list admits everyone).
func peerAdmits(t *testing.T, peers []networkingv1.NetworkPolicyPeer, podLabels map[string]string) bool {
	t.Helper()
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil || p.NamespaceSelector != nil {
			continue // other namespaces / addresses: not a pod of this release
		}
		sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		if err != nil {
			t.Fatalf("peer selector: %v", err)
		}
		if sel.Matches(labels.Set(podLabels)) {
			return true
		}
	}
	return false
}

// admittedOn reports whether any ingress rule of np admits podLabels on the named port.
func admittedOn(t *testing.T, np *networkingv1.NetworkPolicy, port string, podLabels map[string]string) bool {
	t.Helper()
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			if p.Port != nil && p.Port.String() == port && peerAdmits(t, r.From, podLabels) {
				return true
			}
		}
	}
	return false
}

func egressPorts(np *networkingv1.NetworkPolicy) []string {
	var out []string
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			out = append(out, p.Port.String())
		}
	}
	return out
}

func checkNetworkPolicies(t *testing.T, m *manifests) {
	if len(m.NetworkPolicies) == 0 {
		return // networkPolicy.enabled=false
	}
	podLabels := map[string]map[string]string{}
	for _, c := range components {
		podLabels[c] = m.deployment(c).Spec.Template.Labels
	}
	testPod := map[string]string{"app.kubernetes.io/name": "scimcord", "app.kubernetes.io/instance": releaseName, "app.kubernetes.io/component": "test"}
	stranger := map[string]string{"app": "something-else"}
	otherRelease := maps(podLabels["applier"], "app.kubernetes.io/instance", "another-release")
	for _, c := range components {
		nps := policiesFor(t, m, podLabels[c])
		if len(nps) != 1 {
			t.Errorf("%s pods: selected by %d NetworkPolicies, want 1", c, len(nps))
			continue
		}
		np := nps[0]
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			t.Errorf("%s: policyTypes %v, want Ingress and Egress (default deny both ways)", np.Name, np.Spec.PolicyTypes)
		}
		eg := egressPorts(np)
		for _, p := range []string{"53", "4222"} {
			if !slices.Contains(eg, p) {
				t.Errorf("%s: egress ports %v lack %s", np.Name, eg, p)
			}
		}
		if c == "ingest" || c == "applier" {
			mctr := m.deployment("mapping").Spec.Template.Spec.Containers[0]
			if !egressAdmits(t, np, containerPort(mctr, "grpc"), "grpc", podLabels["mapping"]) {
				t.Errorf("%s: no egress to the mapping pods on their gRPC port %d", np.Name, containerPort(mctr, "grpc"))
			}
		}
		if got := slices.Contains(eg, "443"); got != (c == "applier") {
			t.Errorf("%s: egress to 443 (Discord) is %v, want it only for the applier", np.Name, got)
		}
		switch c {
		case "ingest":
			if !externalOn(np, "http") {
				t.Errorf("%s: the SCIM port admits only pods of this namespace; the IdP (through the ingress controller) must reach it", np.Name)
			}
			if !admittedOn(t, np, "http", testPod) {
				t.Errorf("%s: the helm test pods may not reach the SCIM port", np.Name)
			}
		case "mapping":
			for who, l := range map[string]map[string]string{"ingest": podLabels["ingest"], "applier": podLabels["applier"], "helm test": testPod} {
				if !admittedOn(t, np, "grpc", l) {
					t.Errorf("%s: %s may not reach the gRPC port", np.Name, who)
				}
			}
			for who, l := range map[string]map[string]string{"a foreign pod": stranger, "another release's applier": otherRelease, "mapping itself": podLabels["mapping"]} {
				if admittedOn(t, np, "grpc", l) {
					t.Errorf("%s: %s may reach the gRPC port", np.Name, who)
				}
			}
			if externalOn(np, "grpc") {
				t.Errorf("%s: the gRPC port is reachable from outside the release", np.Name)
			}
		case "applier":
			for _, r := range np.Spec.Ingress {
				for _, p := range r.Ports {
					if p.Port.String() != "metrics" {
						t.Errorf("%s: ingress on port %s, the applier serves nothing but metrics", np.Name, p.Port)
					}
				}
			}
		}
		for _, r := range np.Spec.Ingress {
			if len(r.Ports) == 0 {
				t.Errorf("%s: an ingress rule without ports opens every port", np.Name)
			}
		}
	}
}

// egressAdmits reports whether an egress rule of np lets a pod of this release
// reach a pod with podLabels on the given port (by number or by name).
func egressAdmits(t *testing.T, np *networkingv1.NetworkPolicy, port int, portName string, podLabels map[string]string) bool {
	t.Helper()
	for _, r := range np.Spec.Egress {
		onPort := len(r.Ports) == 0
		for _, p := range r.Ports {
			onPort = onPort || p.Port == nil || p.Port.IntValue() == port || p.Port.String() == portName
		}
		if onPort && peerAdmits(t, r.To, podLabels) {
			return true
		}
	}
	return false
}

// externalOn reports whether np admits traffic from outside the namespace on
// the named port: a rule with no peers, or with a namespace or IP block peer.
func externalOn(np *networkingv1.NetworkPolicy, port string) bool {
	for _, r := range np.Spec.Ingress {
		onPort := false
		for _, p := range r.Ports {
			onPort = onPort || (p.Port != nil && p.Port.String() == port)
		}
		if !onPort {
			continue
		}
		if len(r.From) == 0 {
			return true
		}
		for _, peer := range r.From {
			if peer.NamespaceSelector != nil || peer.IPBlock != nil {
				return true
			}
		}
	}
	return false
}

func maps(in map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for a, b := range in {
		out[a] = b
	}
	out[k] = v
	return out
}

func checkGlobalRPS(t *testing.T, m *manifests, vs valueSet) {
	d := m.deployment("applier")
	perReplica := 0.0
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "SCIMCORD_DISCORD_GLOBAL_RPS" {
			f, err := strconv.ParseFloat(e.Value, 64)
			if err != nil {
				t.Fatalf("SCIMCORD_DISCORD_GLOBAL_RPS %q: %v", e.Value, err)
			}
			perReplica = f
		}
	}
	n := float64(*d.Spec.Replicas)
	if perReplica <= 0 || perReplica*n > 50 {
		t.Errorf("%s: %v replicas × %v req/s exceeds Discord's 50 req/s per bot", vs.name, n, perReplica)
	}
	if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxSurge == nil || s.MaxSurge.IntValue() != 0 {
		t.Errorf("applier rollout may surge above %v replicas and exceed the split limit", n)
	} else if s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() < 1 {
		t.Errorf("applier rollout has maxSurge 0 and maxUnavailable %v: it can never replace a pod", s.MaxUnavailable)
	}
}

func checkServices(t *testing.T, m *manifests) {
	svcPorts := map[string][]string{} // Service name → port names
	for _, s := range m.Services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		var target *appsv1.Deployment
		for _, d := range m.Deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				if target != nil {
					t.Errorf("Service %s selects two Deployments", s.Name)
				}
				target = d
			}
		}
		if target == nil {
			t.Errorf("Service %s selects no Deployment", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			svcPorts[s.Name] = append(svcPorts[s.Name], p.Name, strconv.Itoa(int(p.Port)))
			if containerPort(target.Spec.Template.Spec.Containers[0], p.TargetPort.String()) < 0 && p.TargetPort.IntValue() == 0 {
				t.Errorf("Service %s port %s: targetPort %s is not a port of %s", s.Name, p.Name, p.TargetPort.String(), target.Name)
			}
		}
	}
	for _, in := range m.Ingresses {
		if len(in.Spec.TLS) == 0 {
			t.Errorf("Ingress %s: no TLS", in.Name)
		}
		for _, r := range in.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				if !slices.Contains(svcPorts[p.Backend.Service.Name], p.Backend.Service.Port.Name) {
					t.Errorf("Ingress %s: backend %s:%s does not exist", in.Name, p.Backend.Service.Name, p.Backend.Service.Port.Name)
				}
			}
		}
	}
	for _, r := range m.HTTPRoutes {
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				if b.Port == nil || !slices.Contains(svcPorts[string(b.Name)], strconv.Itoa(int(*b.Port))) {
					t.Errorf("HTTPRoute %s: backend %s:%v does not exist", r.Name, b.Name, b.Port)
				}
			}
		}
	}
	for _, sm := range m.ServiceMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range m.Services {
			if sel.Matches(labels.Set(s.Labels)) {
				n++
				if !slices.Contains(svcPorts[s.Name], "metrics") {
					t.Errorf("ServiceMonitor %s selects Service %s, which has no metrics port", sm.Name, s.Name)
				}
			}
		}
		if n != len(components) {
			t.Errorf("ServiceMonitor %s selects %d Services, want one per service (%d)", sm.Name, n, len(components))
		}
	}
}

func checkDashboard(t *testing.T, m *manifests) {
	for _, cm := range m.ConfigMaps {
		for k, v := range cm.Data {
			if !strings.HasSuffix(k, ".json") {
				continue
			}
			var d struct {
				UID    string            `json:"uid"`
				Panels []json.RawMessage `json:"panels"`
			}
			if err := json.Unmarshal([]byte(v), &d); err != nil {
				t.Errorf("ConfigMap %s key %s: %v", cm.Name, k, err)
			}
			if d.UID == "" || len(d.Panels) == 0 {
				t.Errorf("ConfigMap %s key %s: dashboard without uid or panels", cm.Name, k)
			}
		}
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

func firstInt64(vs ...*int64) *int64 {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

// TestChecksumRollsPods changes one input at a time and checks that exactly
// the pods that read it get a new checksum annotation (and so roll).
func TestChecksumRollsPods(t *testing.T) {
	t.Parallel()
	base := []string{"-f", chartDir + "/ci/okta-full.yaml"}
	tests := []struct {
		name      string
		override  string
		key       string
		rolls     []string
		unchanged []string
	}{
		{
			name: "a rules change rolls mapping only",
			override: `rules:
  content:
    tenants:
      - id: acme-okta
        guilds:
          - id: "1100000000000000000"
            rules:
              - name: design
                groups: [{display_name: Design}]
                roles: [{id: "1100000000000000102"}]
`,
			key: "checksum/rules", rolls: []string{"mapping"}, unchanged: []string{"ingest", "applier"},
		},
		{
			name: "a new token hash rolls ingest and applier",
			override: `tenants:
  items:
    - id: acme-okta
      token_sha256: [de869670fe7ef80fe092eff4680e3319127b515eace11abadc8918d5f3c0833e]
      guilds: [{id: "1100000000000000000"}]
`,
			key: "checksum/tenants", rolls: []string{"ingest", "applier"}, unchanged: []string{"mapping"},
		},
		{
			name:     "a new bot token rolls the applier only",
			override: "discord:\n  botToken: another-test-bot-token\n",
			key:      "checksum/discord", rolls: []string{"applier"}, unchanged: []string{"ingest", "mapping"},
		},
	}
	before := render(t, base...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			after := render(t, append(slices.Clone(base), "-f", writeValues(t, tc.override))...)
			for _, c := range tc.rolls {
				a, b := before.deployment(c).Spec.Template.Annotations[tc.key], after.deployment(c).Spec.Template.Annotations[tc.key]
				if a == "" || b == "" || a == b {
					t.Errorf("%s: %s %q → %q, want two different checksums", c, tc.key, a, b)
				}
			}
			for _, c := range tc.unchanged {
				if a, b := before.deployment(c).Spec.Template.Annotations, after.deployment(c).Spec.Template.Annotations; !equalMaps(a, b) {
					t.Errorf("%s: pod annotations changed %v → %v; it does not read this input", c, a, b)
				}
			}
		})
	}
	t.Run("the same values give the same checksums", func(t *testing.T) {
		t.Parallel()
		again := render(t, base...)
		for _, c := range components {
			if a, b := before.deployment(c).Spec.Template.Annotations, again.deployment(c).Spec.Template.Annotations; !equalMaps(a, b) {
				t.Errorf("%s: annotations differ between two renders: %v vs %v", c, a, b)
			}
		}
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBadValuesFail checks the fail guards and the schema: a mistake in
// values stops the render with a message that names it.
func TestBadValuesFail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, values, want string
	}{
		{"a plain token where a hash belongs", "tenants:\n  items:\n    - id: acme\n      token_sha256: [my-plain-scim-token]\n", "never the token itself"},
		{"a tenant without token hashes", "tenants:\n  items:\n    - id: acme\n      token_sha256: []\n", "token_sha256 needs at least one"},
		{"two tenants with one id", "tenants:\n  items:\n    - {id: a, token_sha256: [9fdfbca983f3d202a5d27e75248c26231278a399ee2dbfc329dbe0e15551dcbd]}\n    - {id: a, token_sha256: [de869670fe7ef80fe092eff4680e3319127b515eace11abadc8918d5f3c0833e]}\n", "used twice"},
		{"a bot token both inline and from a Secret", "discord:\n  botToken: some-token\n  existingSecret: my-discord\n", "not both"},
		{"an ingress without host", "ingress:\n  enabled: true\n", "needs ingress.host"},
		{"an HTTPRoute without a Gateway", "httpRoute:\n  enabled: true\n", "needs httpRoute.parentRefs"},
		{"ingress and HTTPRoute together", "ingress:\n  enabled: true\n  host: a.example\nhttpRoute:\n  enabled: true\n  parentRefs: [{name: gw}]\n", "not both"},
		{"an HPA whose max is below its min", "ingest:\n  autoscaling:\n    enabled: true\n    minReplicas: 5\n    maxReplicas: 2\n", "below minReplicas"},
		{"OTLP without an endpoint", "observability:\n  otlp:\n    enabled: true\n", "needs observability.otlp.endpoint"},
		{"an admin API without a token", "admin:\n  enabled: true\n", "admin.enabled needs"},
		{"more applier replicas than Discord requests per second", "applier:\n  replicas: 3\ndiscord:\n  globalRps: 2\n", "at least applier.replicas"},
		{"an empty NATS URL", "nats:\n  url: \"\"\n", "nats.url"},
		{"a misspelt key (schema)", "ingest:\n  replica: 3\n", "replica"},
		{"a string where a number belongs (schema)", "mapping:\n  replicas: two\n", "replicas"},
		{"an unknown deprovisioning action (schema)", "tenants:\n  items:\n    - id: a\n      token_sha256: [9fdfbca983f3d202a5d27e75248c26231278a399ee2dbfc329dbe0e15551dcbd]\n      guilds: [{id: \"1100000000000000000\", on_delete: explode}]\n", "on_delete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := helmTemplate(t, "-f", writeValues(t, tc.values))
			if err == nil {
				t.Fatalf("render succeeded, want an error naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %q:\n%v", tc.want, err)
			}
			if strings.Contains(tc.values, "my-plain-scim-token") && regexp.MustCompile(`my-plain-scim-token`).MatchString(err.Error()) {
				t.Errorf("the error echoes the plain token: %v", err)
			}
		})
	}
}

// TestAlertsFileMatchesChart keeps deploy/prometheus/scimcord-alerts.yaml (for
// Prometheus without the operator) equal to the chart's PrometheusRule.
func TestAlertsFileMatchesChart(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../prometheus/scimcord-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		t.Fatalf("scimcord-alerts.yaml: strict decode: %v", err)
	}
	m := render(t, "--set", "metrics.prometheusRule.enabled=true")
	if len(m.PrometheusRules) != 1 {
		t.Fatalf("%d PrometheusRules rendered, want 1", len(m.PrometheusRules))
	}
	chart := m.PrometheusRules[0].Spec
	nsMatcher := regexp.MustCompile(`namespace="scim",? ?`)
	norm := func(expr string) string {
		return strings.ReplaceAll(nsMatcher.ReplaceAllString(expr, ""), "{}", "")
	}
	alerts := func(s monitoringv1.PrometheusRuleSpec) map[string]monitoringv1.Rule {
		out := map[string]monitoringv1.Rule{}
		for _, g := range s.Groups {
			for _, r := range g.Rules {
				out[r.Alert] = r
			}
		}
		return out
	}
	fa, ca := alerts(file), alerts(chart)
	for _, name := range []string{"ScimcordDeadLetters", "ScimcordMembersFailed", "ScimcordDiscordRateLimited", "ScimcordConsumerLag", "ScimcordDiscordInvalidRequests", "ScimcordDeprovisioningBrakeHeld", "ScimcordSCIMUnauthorized", "ScimcordSCIMInvalidRequests"} {
		if _, ok := ca[name]; !ok {
			t.Errorf("chart lacks alert %s", name)
		}
	}
	if len(fa) != len(ca) {
		t.Errorf("file has %d alerts, chart %d", len(fa), len(ca))
	}
	for name, c := range ca {
		f, ok := fa[name]
		if !ok {
			t.Errorf("alert %s is in the chart, not in the file", name)
			continue
		}
		if got, want := norm(c.Expr.String()), f.Expr.String(); got != want {
			t.Errorf("alert %s expr differs:\nchart: %s\nfile:  %s", name, got, want)
		}
		if durationOf(c.For) != durationOf(f.For) || c.Labels["severity"] != f.Labels["severity"] || c.Annotations["summary"] != f.Annotations["summary"] {
			t.Errorf("alert %s: for/severity/summary differ between chart and file", name)
		}
	}
}

func durationOf(d *monitoringv1.Duration) string {
	if d == nil {
		return ""
	}
	return string(*d)
}

func fmtInt64(v *int64) string {
	if v == nil {
		return "<unset>"
	}
	return strconv.FormatInt(*v, 10)
}

// TestValuesAreDocumented: values.yaml is the chart's documentation, so every
// key of the chart's own (three outer) levels has a comment right above it.
func TestValuesAreDocumented(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`^( {0,4})[A-Za-z_][\w.-]*:`)
	prev := ""
	for n, line := range strings.Split(string(data), "\n") {
		if key.MatchString(line) && !strings.HasPrefix(strings.TrimSpace(prev), "#") {
			t.Errorf("values.yaml:%d: %q has no comment above it", n+1, strings.TrimSpace(line))
		}
		if strings.TrimSpace(line) != "" {
			prev = line
		}
	}
}

// fileEnv names the environment variables that hold file paths, and whether
// the file must come from a Secret (true) or a ConfigMap (false).
var fileEnv = map[string]bool{"NATS_CREDS": true, "SCIMCORD_CONFIG": true, "SCIMCORD_MAPPING": false}

func checkFilesMounted(t *testing.T, m *manifests) {
	for _, d := range m.Deployments {
		spec := d.Spec.Template.Spec
		ctr := spec.Containers[0]
		for _, e := range ctr.Env {
			secret, ok := fileEnv[e.Name]
			if !ok {
				continue
			}
			var mount *corev1.VolumeMount
			for i, vm := range ctr.VolumeMounts {
				if strings.HasPrefix(e.Value, strings.TrimSuffix(vm.MountPath, "/")+"/") {
					mount = &ctr.VolumeMounts[i]
				}
			}
			if mount == nil {
				t.Errorf("%s: %s=%s is on no mounted volume", d.Name, e.Name, e.Value)
				continue
			}
			if !mount.ReadOnly {
				t.Errorf("%s: the volume of %s is mounted writable", d.Name, e.Name)
			}
			rel := strings.TrimPrefix(e.Value, strings.TrimSuffix(mount.MountPath, "/")+"/")
			var vol *corev1.Volume
			for i := range spec.Volumes {
				if spec.Volumes[i].Name == mount.Name {
					vol = &spec.Volumes[i]
				}
			}
			var items []corev1.KeyToPath
			switch {
			case vol == nil:
				t.Errorf("%s: volume %s of %s does not exist", d.Name, mount.Name, e.Name)
				continue
			case secret && vol.Secret == nil:
				t.Errorf("%s: %s comes from a %v volume, want a Secret", d.Name, e.Name, vol.VolumeSource)
				continue
			case !secret && vol.ConfigMap == nil:
				t.Errorf("%s: %s comes from a non-ConfigMap volume", d.Name, e.Name)
				continue
			case secret:
				items = vol.Secret.Items
			default:
				items = vol.ConfigMap.Items
			}
			found := len(items) == 0
			for _, it := range items {
				found = found || it.Path == rel
			}
			if !found {
				t.Errorf("%s: %s=%s, but volume %s projects %v", d.Name, e.Name, e.Value, vol.Name, items)
			}
		}
	}
}

// checkDrain: the services that take traffic sleep in preStop (while their
// endpoint removal propagates) within the grace period, and roll without
// dropping below the wanted replicas.
func checkDrain(t *testing.T, m *manifests) {
	for _, c := range []string{"ingest", "mapping"} {
		d := m.deployment(c)
		ctr := d.Spec.Template.Spec.Containers[0]
		grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
		switch {
		case ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Sleep == nil:
			t.Errorf("%s: no preStop sleep: a rollout drops requests still routed to a stopping pod", d.Name)
		case grace == nil || ctr.Lifecycle.PreStop.Sleep.Seconds >= *grace:
			t.Errorf("%s: preStop sleeps %ds, not within the grace period %v", d.Name, ctr.Lifecycle.PreStop.Sleep.Seconds, grace)
		}
		if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
			t.Errorf("%s: a rollout may take pods away before their replacements are ready", d.Name)
		}
	}
}

// TestShortAdminTokenFails: ingest refuses an admin token under 16
// characters and would crash-loop, so the chart refuses it first — in the
// schema, and in the template guard for renders that skip the schema.
func TestShortAdminTokenFails(t *testing.T) {
	t.Parallel()
	values := "admin:\n  enabled: true\n  token: fifteen-chars-x\n"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"the schema refuses it", nil, "/admin/token"},
		{"the template guard refuses it without the schema", []string{"--skip-schema-validation"}, "admin.token must be at least 16 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := helmTemplate(t, append([]string{"-f", writeValues(t, values)}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render error %v, want one naming %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "fifteen-chars-x") {
				t.Errorf("the error echoes the token: %v", err)
			}
		})
	}
	t.Run("16 characters are enough", func(t *testing.T) {
		t.Parallel()
		render(t, "-f", writeValues(t, "admin:\n  enabled: true\n  token: sixteen-chars-xx\n"))
	})
}

// TestNodeLocalDNS: with networkPolicy.dns.nodeLocalDNS on, every pod may
// also send DNS to the node-local cache's address (a hostNetwork pod that no
// podSelector matches); off (the default), only to the kube-dns pods.
func TestNodeLocalDNS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"off by default", nil, false},
		{"on", []string{"--set", "networkPolicy.dns.nodeLocalDNS.enabled=true"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := render(t, tc.args...)
			if len(m.NetworkPolicies) != len(components) {
				t.Fatalf("%d NetworkPolicies, want %d", len(m.NetworkPolicies), len(components))
			}
			for _, np := range m.NetworkPolicies {
				var cache, kubeDNS bool
				for _, r := range np.Spec.Egress {
					udp, tcp := false, false
					for _, p := range r.Ports {
						if p.Port.IntValue() == 53 {
							udp = udp || p.Protocol == nil || *p.Protocol == corev1.ProtocolUDP
							tcp = tcp || (p.Protocol != nil && *p.Protocol == corev1.ProtocolTCP)
						}
					}
					if !udp || !tcp {
						continue
					}
					for _, peer := range r.To {
						cache = cache || (peer.IPBlock != nil && peer.IPBlock.CIDR == "169.254.20.10/32")
						kubeDNS = kubeDNS || (peer.PodSelector != nil && peer.PodSelector.MatchLabels["k8s-app"] == "kube-dns")
					}
				}
				if cache != tc.want || !kubeDNS {
					t.Errorf("%s: DNS (UDP+TCP 53) to 169.254.20.10 %v (want %v), to kube-dns %v (want true)", np.Name, cache, tc.want, kubeDNS)
				}
			}
		})
	}
}
