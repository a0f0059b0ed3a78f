package helm

import (
	"encoding/json"
	"fmt"
	"os"
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
)

// components are the three services the chart deploys.
var components = []string{"ingest", "mapping", "applier"}

// serviceEnv is the contract of the services' cmd mains: every environment
// variable the chart may set. A typo here would silently fall back to a default.
var serviceEnv = map[string][]string{
	"common":  {"NATS_URL", "NATS_CREDS", "SCIMCORD_NATS_REPLICAS", "SCIMCORD_LOG_LEVEL", "SCIMCORD_METRICS_ADDR", "POD_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"},
	"ingest":  {"SCIMCORD_HTTP_ADDR", "SCIMCORD_CONFIG", "SCIMCORD_ADMIN_TOKEN"},
	"mapping": {"SCIMCORD_GRPC_ADDR", "SCIMCORD_MAPPING"},
	"applier": {"SCIMCORD_HTTP_ADDR", "SCIMCORD_CONFIG", "SCIMCORD_MAPPING_ADDR", "DISCORD_BOT_TOKEN", "SCIMCORD_DISCORD_GLOBAL_RPS"},
}

// requiredEnv must be set on each component.
var requiredEnv = map[string][]string{
	"ingest":  {"NATS_URL", "SCIMCORD_NATS_REPLICAS", "SCIMCORD_CONFIG", "SCIMCORD_HTTP_ADDR", "SCIMCORD_METRICS_ADDR"},
	"mapping": {"NATS_URL", "SCIMCORD_NATS_REPLICAS", "SCIMCORD_MAPPING", "SCIMCORD_GRPC_ADDR", "SCIMCORD_METRICS_ADDR"},
	"applier": {"NATS_URL", "SCIMCORD_NATS_REPLICAS", "SCIMCORD_CONFIG", "SCIMCORD_MAPPING_ADDR", "DISCORD_BOT_TOKEN", "SCIMCORD_DISCORD_GLOBAL_RPS", "SCIMCORD_HTTP_ADDR"},
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
			t.Run("sets only the services' documented environment variables", func(t *testing.T) { checkEnv(t, m) })
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
		port        int
		live, ready string // HTTP paths; "" means gRPC health
	}{
		"ingest":  {8080, "/healthz", "/readyz"},
		"mapping": {9090, "", ""},
		"applier": {8081, "/healthz", "/readyz"},
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
				}
			default:
				if p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
					t.Errorf("%s: %s probe %+v, want GET %s on port http", d.Name, name, p.ProbeHandler, path)
				}
			}
		}
		_ = w.port
	}
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
		allowed := append(slices.Clone(serviceEnv["common"]), serviceEnv[c]...)
		set := map[string]bool{}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if set[e.Name] {
				t.Errorf("%s: %s set twice", d.Name, e.Name)
			}
			set[e.Name] = true
			if !slices.Contains(allowed, e.Name) {
				t.Errorf("%s: sets %s, which the %s main does not read", d.Name, e.Name, c)
			}
		}
		for _, name := range requiredEnv[c] {
			if !set[name] {
				t.Errorf("%s: %s is not set", d.Name, name)
			}
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
