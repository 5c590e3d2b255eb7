// Package check renders obol's Helm chart and checks every manifest
// against the Kubernetes API types, strictly: a field the API does not
// have is an error. It is a module of its own so that the gateway's
// dependencies stay lean (k8s.io/api is large).
package check

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// helmVersion is the helm the chart is checked with, run from its Go
// module (no binary to install).
const helmVersion = "helm.sh/helm/v3/cmd/helm@v3.21.4"

var chart = filepath.Join("..", "helm", "obol")

// PlainValues are what deploy/kubernetes is rendered with (make
// manifests): the default namespace, and store URLs to replace.
var PlainValues = []string{"--namespace", "default",
	"--set", "postgresURL=postgres://obol:CHANGE-ME@postgres:5432/obol,redisURL=redis://redis:6379/0"}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", append([]string{"run", helmVersion}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// typed are the kinds the chart renders and the API type each decodes to.
func typed(kind string) any {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}
	case "Service":
		return &corev1.Service{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "Secret":
		return &corev1.Secret{}
	case "PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "Job":
		return &batchv1.Job{}
	}
	return nil
}

// docs splits a rendered stream into its documents.
func docs(out []byte) [][]byte {
	var list [][]byte
	for _, d := range bytes.Split(out, []byte("\n---")) {
		if len(bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(d), []byte("---")))) > 0 {
			list = append(list, d)
		}
	}
	return list
}

// checkStrict decodes every document into its API type, refusing unknown
// fields, and returns the objects by kind.
func checkStrict(t *testing.T, out []byte) map[string][]any {
	t.Helper()
	byKind := map[string][]any{}
	for _, d := range docs(out) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(d, &head); err != nil || head.Kind == "" {
			t.Fatalf("a document without a kind: %v\n%s", err, d)
		}
		obj := typed(head.Kind)
		if obj == nil {
			if head.Kind != "ServiceMonitor" || head.APIVersion != "monitoring.coreos.com/v1" {
				t.Errorf("an unexpected kind %s %s", head.APIVersion, head.Kind)
			}
			continue // a CRD, not in k8s.io/api
		}
		if err := yaml.UnmarshalStrict(d, obj); err != nil {
			t.Errorf("%s does not decode strictly: %v\n%s", head.Kind, err, d)
		}
		byKind[head.Kind] = append(byKind[head.Kind], obj)
	}
	return byKind
}

// TestChart: helm lint passes, and the chart renders manifests the API
// types accept, strictly, with its defaults and with every option on;
// the probes, the grace and the drain agree with obol's configuration.
func TestChart(t *testing.T) {
	if testing.Short() {
		t.Skip("renders the chart with helm: skipped under -short")
	}
	helm(t, "lint", "--strict", chart)
	out := helm(t, "template", "obol", chart, "--set", "postgresURL=postgres://obol@pg:5432/obol,redisURL=redis://redis:6379/0")
	k := checkStrict(t, out)
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "Job"} {
		if len(k[kind]) == 0 {
			t.Errorf("no %s rendered", kind)
		}
	}
	d := k["Deployment"][0].(*appsv1.Deployment)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if *d.Spec.Replicas != 3 || *pod.TerminationGracePeriodSeconds != 5+30+10 ||
		c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
		*c.SecurityContext.ReadOnlyRootFilesystem != true || *pod.SecurityContext.RunAsNonRoot != true {
		t.Errorf("deployment: %+v", d.Spec)
	}
	var cm *corev1.ConfigMap
	for _, o := range k["ConfigMap"] {
		if m := o.(*corev1.ConfigMap); !strings.HasSuffix(m.Name, "-migrate") {
			cm = m
		}
	}
	conf := cm.Data["obol.yaml"]
	for _, want := range []string{"listen: 0.0.0.0:8080", "shutdown_drain: 5s", "shutdown_grace: 30s", "url: ${REDIS_URL:-}", "replicas: 3", "watch: true"} {
		if !strings.Contains(conf, want) {
			t.Errorf("the configuration lacks %q:\n%s", want, conf)
		}
	}
	job := k["Job"][0].(*batchv1.Job)
	if job.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" || job.Spec.Template.Spec.Containers[0].Args[0] != "migrate" {
		t.Errorf("migrate job: %+v", job.ObjectMeta)
	}

	all := helm(t, "template", "obol", chart, "--set", "autoscaling.enabled=true,serviceMonitor.enabled=true,existingSecret=obol-secrets,shutdownDrain=10s,shutdownGrace=1m")
	k = checkStrict(t, all)
	d = k["Deployment"][0].(*appsv1.Deployment)
	if len(k["HorizontalPodAutoscaler"]) != 1 || len(k["Secret"]) != 0 || d.Spec.Replicas != nil ||
		*d.Spec.Template.Spec.TerminationGracePeriodSeconds != 10+60+10 || !strings.Contains(string(all), "kind: ServiceMonitor") {
		t.Errorf("every option on:\n%s", all)
	}
}

// TestPlainManifests: deploy/kubernetes holds what the chart renders with
// its defaults, for kubectl users; make manifests writes it again.
func TestPlainManifests(t *testing.T) {
	if testing.Short() {
		t.Skip("renders the chart with helm: skipped under -short")
	}
	want := helm(t, append([]string{"template", "obol", chart}, PlainValues...)...)
	got, err := os.ReadFile(filepath.Join("..", "kubernetes", "obol.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/kubernetes/obol.yaml is not what the chart renders: run make manifests")
	}
	checkStrict(t, got)
}

// TestStrictRefusesUnknownField: the check itself fails a manifest with
// a field the API does not have.
func TestStrictRefusesUnknownField(t *testing.T) {
	bad := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicaz: 3\n")
	if err := yaml.UnmarshalStrict(bad, typed("Deployment")); err == nil || !strings.Contains(err.Error(), "replicaz") {
		t.Errorf("an unknown field passed: %v", err)
	}
}

// TestChartConfigServes: the configuration the chart's ConfigMap holds is
// one obol starts with (its own check, not only YAML).
func TestChartConfigServes(t *testing.T) {
	if testing.Short() {
		t.Skip("renders the chart with helm: skipped under -short")
	}
	k := checkStrict(t, helm(t, "template", "obol", chart))
	conf := k["ConfigMap"][0].(*corev1.ConfigMap).Data["obol.yaml"]
	dir := t.TempDir()
	conf = strings.Replace(conf, "data_dir: /data", "data_dir: "+filepath.Join(dir, "data"), 1)
	path := filepath.Join(dir, "obol.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "obol")
	if out, err := exec.Command("go", "-C", filepath.Join("..", ".."), "build", "-o", bin, "./cmd/obol").CombinedOutput(); err != nil {
		t.Fatalf("build obol: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve", "-config", path, "-addr", "127.0.0.1:0")
	logs := &lockedBuf{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"obol listening"`) {
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("obol did not start with the chart's configuration:\n%s\n%s", logs.String(), conf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuf is a buffer a process writes while the test reads it.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
