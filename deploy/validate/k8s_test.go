package validate

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifests is a rendered kustomization, each object decoded into its typed struct.
type manifests struct {
	dir          string
	configMaps   []*corev1.ConfigMap
	services     []*corev1.Service
	deployments  []*appsv1.Deployment
	jobs         []*batchv1.Job
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	pdbs         []*policyv1.PodDisruptionBudget
	ingresses    []*networkingv1.Ingress
	svcMonitors  []*monitoringv1.ServiceMonitor
	promRules    []*monitoringv1.PrometheusRule
	secrets      []*corev1.Secret
	objectsCount int
}

// decodeStrict decodes one object, refusing unknown and duplicate fields: a misspelt key
// (readinesProbe) is an error here, where the API server would only drop it or warn.
func decodeStrict(m *manifests, y []byte) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(y, &meta); err != nil {
		return err
	}
	into := func(v any) error { return yaml.UnmarshalStrict(y, v) }
	switch gvk := meta.APIVersion + " " + meta.Kind; gvk {
	case "v1 ConfigMap":
		return appendDecoded(&m.configMaps, into)
	case "v1 Service":
		return appendDecoded(&m.services, into)
	case "v1 Secret":
		return appendDecoded(&m.secrets, into)
	case "apps/v1 Deployment":
		return appendDecoded(&m.deployments, into)
	case "batch/v1 Job":
		return appendDecoded(&m.jobs, into)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return appendDecoded(&m.hpas, into)
	case "policy/v1 PodDisruptionBudget":
		return appendDecoded(&m.pdbs, into)
	case "networking.k8s.io/v1 Ingress":
		return appendDecoded(&m.ingresses, into)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return appendDecoded(&m.svcMonitors, into)
	case "monitoring.coreos.com/v1 PrometheusRule":
		return appendDecoded(&m.promRules, into)
	default:
		return fmt.Errorf("%s: no typed check for this kind; add it to decodeStrict", gvk)
	}
}

func appendDecoded[T any](list *[]*T, into func(any) error) error {
	v := new(T)
	if err := into(v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// render runs Kustomize on dir as `kubectl apply -k dir` would, and decodes the result.
func render(t *testing.T, dir string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	m := &manifests{dir: dir}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeStrict(m, y); err != nil {
			t.Errorf("%s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
		}
		m.objectsCount++
	}
	return m
}

func TestKustomizeBase(t *testing.T) {
	m := render(t, k8sBase)
	if len(m.deployments) != 4 || len(m.jobs) != 1 {
		t.Errorf("%s: want a Deployment per role (intake, worker, scheduler, monitor) and the migrate Job, got %d and %d", m.dir, len(m.deployments), len(m.jobs))
	}
	checkManifests(t, m)
}

func TestKustomizeExample(t *testing.T) {
	m := render(t, k8sExample)
	if len(m.ingresses) != 2 || len(m.svcMonitors) != 1 || len(m.promRules) != 1 {
		t.Errorf("%s: want the ingress, monitor-ingress and prometheus components (2 Ingresses, a ServiceMonitor, a PrometheusRule), got %d, %d, %d",
			m.dir, len(m.ingresses), len(m.svcMonitors), len(m.promRules))
	}
	checkManifests(t, m)
	checkIngresses(t, m)
	checkServiceMonitors(t, m)
	for _, r := range m.promRules {
		checkRules(t, r)
	}
}

// The Secret template is not in the kustomization (nobody should apply it as it is), so it is
// decoded on its own: it must be a valid Secret whose JWT secret the production guard refuses.
func TestSecretTemplate(t *testing.T) {
	p := path.Join(k8sBase, "secret.example.yaml")
	y, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{}
	if err := decodeStrict(m, y); err != nil || len(m.secrets) != 1 {
		t.Fatalf("%s: want one Secret: %v", p, err)
	}
	s := m.secrets[0]
	for _, k := range []string{"PARKD_DATABASE_URL", "PARKD_REDIS_URL", "PARKD_JWT_SECRET"} {
		if s.StringData[k] == "" {
			t.Errorf("%s: stringData.%s missing", p, k)
		}
	}
	checkPlaceholderSecret(t, p, s.StringData["PARKD_JWT_SECRET"], string(y))
}

// checkPlaceholderSecret: an example secret is an obvious placeholder that parkd refuses in
// production (too short), and the file says how to make a real one.
func checkPlaceholderSecret(t *testing.T, where, secret, text string) {
	t.Helper()
	if !strings.Contains(secret, "CHANGE-ME") || len(secret) >= minSecretBytes {
		t.Errorf("%s: example PARKD_JWT_SECRET %q must say CHANGE-ME and be shorter than %d bytes, so that production refuses to start with it", where, secret, minSecretBytes)
	}
	if !strings.Contains(text, "openssl rand -hex 32") {
		t.Errorf("%s: does not say how to make a secret (openssl rand -hex 32)", where)
	}
}

// roleConfigs gives each Deployment's and Job's role, environment (ConfigMap, then the
// container's env, which takes precedence) and the most replicas it may run.
func (m *manifests) roleConfigs(t *testing.T) []roleConfig {
	t.Helper()
	var out []roleConfig
	add := func(kind, name string, spec corev1.PodSpec, replicas int) {
		for _, c := range spec.Containers {
			env := map[string]string{}
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef == nil {
					continue
				}
				cm := m.configMap(from.ConfigMapRef.Name)
				if cm == nil {
					t.Errorf("%s %s: envFrom ConfigMap %q is not in %s", kind, name, from.ConfigMapRef.Name, m.dir)
					continue
				}
				for k, v := range cm.Data {
					env[k] = v
				}
			}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			if len(c.Args) != 1 {
				t.Errorf("%s %s: want args [ROLE], got %v", kind, name, c.Args)
				continue
			}
			out = append(out, roleConfig{form: "k8s", role: c.Args[0], env: env, replicas: replicas})
		}
	}
	for _, d := range m.deployments {
		n := 1
		if d.Spec.Replicas != nil {
			n = int(*d.Spec.Replicas)
		}
		if h := m.hpaFor("Deployment", d.Name); h != nil {
			n = int(h.Spec.MaxReplicas)
		}
		add("Deployment", d.Name, d.Spec.Template.Spec, n)
	}
	for _, j := range m.jobs {
		add("Job", j.Name, j.Spec.Template.Spec, 1)
	}
	return out
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for _, cm := range m.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}

func (m *manifests) hpaFor(kind, name string) *autoscalingv2.HorizontalPodAutoscaler {
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Kind == kind && h.Spec.ScaleTargetRef.Name == name {
			return h
		}
	}
	return nil
}

// podsMatching are the pod templates a label selector picks.
func (m *manifests) podsMatching(sel labels.Selector) []corev1.PodTemplateSpec {
	var out []corev1.PodTemplateSpec
	for _, d := range m.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d.Spec.Template)
		}
	}
	return out
}

func checkManifests(t *testing.T, m *manifests) {
	if m.objectsCount == 0 {
		t.Fatalf("%s rendered nothing", m.dir)
	}
	cfgs := m.roleConfigs(t)
	for _, d := range m.deployments {
		checkProbes(t, m, d, cfgs)
	}
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" {
			t.Errorf("HPA %s scales a %s; only Deployments are expected", h.Name, ref.Kind)
			continue
		}
		found := false
		for _, d := range m.deployments {
			if d.Name == ref.Name {
				found = true
				if d.Spec.Replicas != nil {
					t.Errorf("Deployment %s sets replicas: %d while HPA %s owns its scale: every apply would reset it", d.Name, *d.Spec.Replicas, h.Name)
				}
			}
		}
		if !found {
			t.Errorf("HPA %s targets Deployment %s, which is not in %s", h.Name, ref.Name, m.dir)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HPA %s: minReplicas must be set and at most maxReplicas", h.Name)
		}
	}
	for _, s := range m.services {
		pods := m.podsMatching(labels.SelectorFromSet(s.Spec.Selector))
		if len(s.Spec.Selector) == 0 || len(pods) == 0 {
			t.Errorf("Service %s selects no pod of %s", s.Name, m.dir)
			continue
		}
		for _, p := range s.Spec.Ports {
			for _, pod := range pods {
				if !hasPort(pod.Spec, p.TargetPort.String()) {
					t.Errorf("Service %s: targetPort %s is not a port of the pods it selects (%s)", s.Name, p.TargetPort.String(), pod.Labels)
				}
			}
		}
	}
	for _, p := range m.pdbs {
		sel, err := metav1Selector(p.Spec.Selector)
		if err != nil || len(m.podsMatching(sel)) == 0 {
			t.Errorf("PodDisruptionBudget %s selects no pod of %s (%v)", p.Name, m.dir, err)
		}
	}
	checkPools(t, "k8s", cfgs, k8sMaxConnections)
}

// checkProbes: every container of a Deployment has startup, liveness and readiness probes on
// a port it declares, which is the address its role really serves; the startup probe waits
// at least as long as the process may wait for Postgres and Redis before it listens; and the
// roles that a Service sends traffic to stay in it while a dependency is down (the API
// answers 503 itself, and asynqmon and its metrics stay reachable).
func checkProbes(t *testing.T, m *manifests, d *appsv1.Deployment, cfgs []roleConfig) {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		where := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)
		role := ""
		if len(c.Args) == 1 {
			role = c.Args[0]
		}
		addrVar, ok := servedOn[role]
		if !ok {
			t.Errorf("%s: role %q is not one of %v", where, role, slices.Sorted(mapKeys(servedOn)))
			continue
		}
		var cfg roleConfig
		for _, rc := range cfgs {
			if rc.role == role {
				cfg = rc
			}
		}
		served := cfg.port(t, addrVar)
		if served == 0 {
			t.Errorf("%s: %s is not set, so role %s serves no /healthz for a probe", where, addrVar, role)
		}
		probes := map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe}
		for _, name := range slices.Sorted(mapKeys(probes)) {
			p := probes[name]
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s", where, name)
				continue
			}
			if p.HTTPGet.Path != "/healthz" && p.HTTPGet.Path != "/readyz" {
				t.Errorf("%s: %s GETs %s; parkd serves /healthz and /readyz", where, name, p.HTTPGet.Path)
			}
			if port := containerPort(c, p.HTTPGet.Port.String()); port != served {
				t.Errorf("%s: %s on port %s (%d), but role %s serves on %s=%q", where, name, p.HTTPGet.Port.String(), port, role, addrVar, cfg.env[addrVar])
			}
		}
		if p := c.StartupProbe; p != nil {
			wait := cfg.env["PARKD_STARTUP_WAIT"]
			if wait == "" {
				wait = defaultStartupWait
			}
			limit, err := time.ParseDuration(wait)
			// Kubernetes' defaults: every 10 s, 3 failures.
			window := time.Duration(orDefault(p.PeriodSeconds, 10)*orDefault(p.FailureThreshold, 3)) * time.Second
			if err != nil || window < limit {
				t.Errorf("%s: startupProbe allows %s, less than PARKD_STARTUP_WAIT=%s that the process may wait before it listens", where, window, wait)
			}
		}
		if rp := c.ReadinessProbe; rp != nil && rp.HTTPGet != nil && addrVar == "PARKD_HTTP_ADDR" && rp.HTTPGet.Path == "/readyz" {
			t.Errorf("%s: readiness on /readyz takes every %s pod out of its Service while Postgres or Redis is down; clients must get the API's own 503 (readiness on /healthz)", where, role)
		}
	}
}

func orDefault(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// containerPort resolves a probe's or Service's port (a name or a number) on a container.
func containerPort(c corev1.Container, port string) int {
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return int(p.ContainerPort)
		}
	}
	return 0
}

func hasPort(spec corev1.PodSpec, port string) bool {
	for _, c := range spec.Containers {
		if containerPort(c, port) != 0 {
			return true
		}
	}
	return false
}

// checkIngresses: every path routes to a Service port that exists, and none reaches the
// operational endpoints, which every parkd port also serves.
func checkIngresses(t *testing.T, m *manifests) {
	for _, ing := range m.ingresses {
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				where := fmt.Sprintf("Ingress %s path %s", ing.Name, p.Path)
				for _, ops := range []string{"/metrics", "/healthz", "/readyz"} {
					if p.PathType == nil || *p.PathType != networkingv1.PathTypeExact && *p.PathType != networkingv1.PathTypePrefix {
						t.Errorf("%s: pathType must be Exact or Prefix (ImplementationSpecific differs by controller)", where)
						break
					}
					if p.Path == ops || *p.PathType == networkingv1.PathTypePrefix && prefixOf(p.Path, ops) {
						t.Errorf("%s: reaches %s, which must stay inside the cluster", where, ops)
					}
				}
				b := p.Backend.Service
				if b == nil {
					t.Errorf("%s: backend is not a Service", where)
					continue
				}
				svc := m.service(b.Name)
				if svc == nil || !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return sp.Name == b.Port.Name && b.Port.Name != "" || sp.Port == b.Port.Number && b.Port.Number != 0
				}) {
					t.Errorf("%s: backend %s port %v is not a port of a Service in %s", where, b.Name, b.Port, m.dir)
				}
			}
		}
	}
}

// prefixOf reports whether an Ingress Prefix path matches the request path p (element-wise,
// as networking.k8s.io/v1 defines it).
func prefixOf(prefix, p string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

func (m *manifests) service(name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// checkServiceMonitors: every Service that carries a /metrics port is scraped, and every
// endpoint of the ServiceMonitor finds a port.
func checkServiceMonitors(t *testing.T, m *manifests) {
	scraped := map[string]bool{}
	for _, sm := range m.svcMonitors {
		sel, err := metav1Selector(&sm.Spec.Selector)
		if err != nil {
			t.Errorf("ServiceMonitor %s: %v", sm.Name, err)
			continue
		}
		for _, ep := range sm.Spec.Endpoints {
			found := false
			for _, s := range m.services {
				if !sel.Matches(labels.Set(s.Labels)) {
					continue
				}
				for _, sp := range s.Spec.Ports {
					if sp.Name == ep.Port {
						found, scraped[s.Name] = true, true
					}
				}
			}
			if !found {
				t.Errorf("ServiceMonitor %s: endpoint port %q is on no Service it selects", sm.Name, ep.Port)
			}
			if ep.Path != "/metrics" {
				t.Errorf("ServiceMonitor %s: endpoint port %q scrapes %q, not /metrics", sm.Name, ep.Port, ep.Path)
			}
		}
	}
	for _, s := range m.services {
		if !scraped[s.Name] {
			t.Errorf("Service %s (every parkd port serves /metrics) is scraped by no ServiceMonitor", s.Name)
		}
	}
}

func metav1Selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, fmt.Errorf("no selector")
	}
	return metav1.LabelSelectorAsSelector(s)
}
