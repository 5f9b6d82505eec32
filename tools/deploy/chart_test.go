package deploy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
)

const chartDir = "../../deploy/helm/courier"

// bin holds the static binaries scripts/build-static.sh builds, the ones
// the image and the packages ship: worker's check command judges each
// rendered ConfigMap, and the packages are made of them.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "courier-deploy-")
	if err != nil {
		panic(err)
	}
	bin = dir
	build := exec.Command("scripts/build-static.sh", dir, "0.1.0-test")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// objects is one rendering, by kind.
type objects struct {
	sts        *appsv1.StatefulSet
	services   []*corev1.Service
	configMaps []*corev1.ConfigMap
	secrets    []*corev1.Secret
	pdb        *policyv1.PodDisruptionBudget
	accounts   []*corev1.ServiceAccount
}

func decode(t *testing.T, manifests string) objects {
	t.Helper()
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := d.DecodeAll([]byte(manifests))
	if err != nil {
		t.Fatalf("strict decoding into the Kubernetes API types: %v", err)
	}
	var o objects
	for _, obj := range objs {
		switch v := obj.(type) {
		case *appsv1.StatefulSet:
			if o.sts != nil {
				t.Fatal("two StatefulSets")
			}
			o.sts = v
		case *corev1.Service:
			o.services = append(o.services, v)
		case *corev1.ConfigMap:
			o.configMaps = append(o.configMaps, v)
		case *corev1.Secret:
			o.secrets = append(o.secrets, v)
		case *policyv1.PodDisruptionBudget:
			o.pdb = v
		case *corev1.ServiceAccount:
			o.accounts = append(o.accounts, v)
		default:
			t.Fatalf("unexpected object %T", obj)
		}
	}
	if o.sts == nil || o.pdb == nil || len(o.configMaps) != 1 || len(o.services) != 2 || len(o.accounts) != 1 {
		t.Fatalf("want a StatefulSet, a PodDisruptionBudget, a ConfigMap, two Services and a ServiceAccount; got %d objects", len(objs))
	}
	return o
}

func render(t *testing.T, values map[string]any) objects {
	t.Helper()
	out, err := RenderChart(t.Context(), chartDir, Release{Name: "courier", Namespace: "events"}, values)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

// tlsAndAuth turns on everything that takes a credential or a certificate.
var tlsAndAuth = map[string]any{
	"secrets": map[string]any{
		"create": true, "adminToken": "admin-s3cret", "outboxPassword": "outbox-s3cret",
		"producerPassword": "producer-s3cret", "routePassword": "route-s3cret", "ingestToken": "ingest-s3cret",
	},
	"tls":          map[string]any{"enabled": true, "secretName": "courier-tls"},
	"webhookAllow": []any{"10.0.0.0/8"},
	"eventLog":     map[string]any{"url": "postgres://courier:${COURIER_EVENT_LOG_PASSWORD}@postgres.events.svc/courier"},
	"extraEnv": []any{map[string]any{"name": "COURIER_EVENT_LOG_PASSWORD", "valueFrom": map[string]any{
		"secretKeyRef": map[string]any{"name": "courier-db", "key": "password"}}}},
	"sinks": []any{
		map[string]any{"name": "audit", "type": "webhook", "url": "https://receiver.events.svc/listen", "format": "gluster"},
		map[string]any{"name": "bus", "type": "amqp", "url": "amqps://courier@rabbitmq.events.svc/", "exchange": "cloudstack-events"},
	},
}

func TestChartRendersValidObjects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		values   map[string]any
		replicas int32
		tls      bool
	}{
		{"defaults", nil, 3, false},
		{"tls and auth", tlsAndAuth, 3, true},
		{"five nodes", map[string]any{"replicas": 5}, 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := render(t, tc.values)
			checkStatefulSet(t, o, tc.replicas, tc.tls)
			checkConfig(t, o, tc.replicas, tc.tls)
		})
	}
}

func checkStatefulSet(t *testing.T, o objects, replicas int32, tls bool) {
	t.Helper()
	sts := o.sts
	if *sts.Spec.Replicas != replicas {
		t.Errorf("replicas = %d, want %d", *sts.Spec.Replicas, replicas)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy = %s: nodes started one at a time never reach a quorum", sts.Spec.PodManagementPolicy)
	}
	pod := labels.Set(sts.Spec.Template.Labels)
	sel := labels.SelectorFromSet(sts.Spec.Selector.MatchLabels)
	if !sel.Matches(pod) {
		t.Errorf("the StatefulSet's selector %v does not match its pods' labels %v", sel, pod)
	}
	if !labels.SelectorFromSet(o.pdb.Spec.Selector.MatchLabels).Matches(pod) {
		t.Error("the PodDisruptionBudget does not select the pods")
	}
	if o.pdb.Spec.MaxUnavailable == nil || o.pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable = %v, want 1 (a majority stays up)", o.pdb.Spec.MaxUnavailable)
	}
	headless := false
	for _, s := range o.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(pod) {
			t.Errorf("Service %s does not select the pods", s.Name)
		}
		if s.Name == sts.Spec.ServiceName {
			headless = s.Spec.ClusterIP == corev1.ClusterIPNone && s.Spec.PublishNotReadyAddresses
		}
	}
	if !headless {
		t.Errorf("no headless Service %s publishing not-ready pods (the nodes' routes resolve through it)", sts.Spec.ServiceName)
	}
	spec := sts.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	for _, s := range o.services {
		for _, p := range s.Spec.Ports {
			if !ports[p.TargetPort.StrVal] {
				t.Errorf("Service %s port %s targets %q, which the container does not name", s.Name, p.Name, p.TargetPort.StrVal)
			}
		}
	}
	scheme := corev1.URISchemeHTTP
	if tls {
		scheme = corev1.URISchemeHTTPS
	}
	for name, want := range map[string]struct {
		p    *corev1.Probe
		path string
	}{"startup": {c.StartupProbe, "/healthz"}, "liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
		if want.p == nil || want.p.HTTPGet == nil {
			t.Errorf("no %s probe", name)
			continue
		}
		g := want.p.HTTPGet
		if g.Path != want.path || g.Port.StrVal != "admin" || g.Scheme != scheme {
			t.Errorf("%s probe = %s %s on %s, want %s %s on admin", name, g.Scheme, g.Path, g.Port.String(), scheme, want.path)
		}
	}
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("the pod may run as root")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v: want a read-only root, no privilege escalation, every capability dropped", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("no resource requests")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token it never uses")
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, claim := range sts.Spec.VolumeClaimTemplates {
		volumes[claim.Name] = true
	}
	dataOnClaim := false
	for _, m := range c.VolumeMounts {
		if !volumes[m.Name] {
			t.Errorf("volume mount %s names no volume", m.Name)
		}
		if m.MountPath == "/var/lib/courier" {
			dataOnClaim = slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name })
		}
	}
	if !dataOnClaim {
		t.Error("data_dir (/var/lib/courier) is not on a PersistentVolumeClaim of its own")
	}
	for _, s := range o.secrets {
		for _, e := range c.Env {
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && r.SecretKeyRef.Name == s.Name {
				if _, ok := s.StringData[r.SecretKeyRef.Key]; !ok {
					t.Errorf("env %s reads key %s, which Secret %s does not have", e.Name, r.SecretKeyRef.Key, s.Name)
				}
			}
		}
	}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// checkConfig runs `worker check` on the ConfigMap's courier.yaml with the
// environment the pod gives it: POD_NAME, and the Secret's values.
func checkConfig(t *testing.T, o objects, replicas int32, tls bool) {
	t.Helper()
	text := o.configMaps[0].Data["courier.yaml"]
	c := o.sts.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"run", "--config", "/etc/courier/courier.yaml"}) {
		t.Errorf("args %v do not run the ConfigMap's courier.yaml", c.Args)
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	given := map[string]bool{}
	for _, e := range c.Env {
		given[e.Name] = true
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v = o.sts.Name + "-0" // metadata.name
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			v = "value-of-" + e.ValueFrom.SecretKeyRef.Key
		}
		env = append(env, e.Name+"="+v)
	}
	for _, m := range envRef.FindAllStringSubmatch(string(stripComments([]byte(text))), -1) {
		if !given[m[1]] {
			t.Errorf("courier.yaml references ${%s}, which the container's environment does not set", m[1])
		}
	}
	if n := strings.Count(text, ".svc.cluster.local:6222"); n != int(replicas) {
		t.Errorf("cluster.routes lists %d nodes, want %d", n, replicas)
	}
	if got := strings.Contains(text, "/etc/courier-tls/ca.crt"); got != tls {
		t.Errorf("mutual TLS in courier.yaml = %v, want %v", got, tls)
	}
	dir := t.TempDir()
	if tls {
		// The tls Secret's files, where the pod mounts them.
		writeCertificate(t, dir)
		text = strings.ReplaceAll(text, "/etc/courier-tls/", dir+"/")
	}
	path := filepath.Join(dir, "courier.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "courier-worker"), "check", "--config", path)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("worker check on the ConfigMap's courier.yaml: %v\n%s\n%s", err, out, text)
	}
}

// TestDefaultVolumeHoldsTheOutbox: a worker whose data_dir cannot hold
// outbox.max_bytes refuses to start, so the defaults must leave the volume
// room for it and for what shares it (dead letters, attempt log, event log).
func TestDefaultVolumeHoldsTheOutbox(t *testing.T) {
	o := render(t, nil)
	m := regexp.MustCompile(`(?m)^\s*max_bytes: (\d+)GiB$`).FindStringSubmatch(o.configMaps[0].Data["courier.yaml"])
	if m == nil {
		t.Fatalf("no max_bytes in GiB in the default courier.yaml")
	}
	maxBytes := resource.MustParse(m[1] + "Gi")
	claim := o.sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]
	if need := maxBytes.Value() * 5 / 4; claim.Value() < need {
		t.Errorf("the default volume (%s) leaves no room beside outbox.max_bytes (%s): want at least %d bytes", claim.String(), maxBytes.String(), need)
	}
}

func TestChartRefusesIncompleteValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"tls without its secret", map[string]any{"tls": map[string]any{"enabled": true}}, "tls.secretName"},
		{"created secret without values", map[string]any{"secrets": map[string]any{"create": true}}, "secrets.adminToken is required"},
		{"a misspelled value", map[string]any{"replica": 5}, "replica"},
		{"a value of the wrong type", map[string]any{"replicas": "three"}, "replicas"},
		{"an unknown sink kind", map[string]any{"sinks": []any{map[string]any{"name": "x", "type": "smtp"}}}, "sinks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RenderChart(t.Context(), chartDir, Release{Name: "courier", Namespace: "events"}, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one that says %q", err, tc.want)
			}
		})
	}
}

// TestPlainManifestsAreTheChartsRendering keeps deploy/kubernetes what
// the chart makes: run make manifests after changing the chart.
func TestPlainManifestsAreTheChartsRendering(t *testing.T) {
	want, err := PlainManifests(t.Context(), chartDir, Release{Name: "courier", Namespace: "courier"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../deploy/kubernetes/courier.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Fatal("deploy/kubernetes/courier.yaml is not the chart's rendering: run make manifests")
	}
	decode(t, string(got))
}

// TestDecoderRefusesMisspelledFields shows the check can fail.
func TestDecoderRefusesMisspelledFields(t *testing.T) {
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {replica: 3}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: None}\nspec: {}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: web}]}\n",
		"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n",
	} {
		if _, err := d.DecodeAll([]byte(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}

// writeCertificate writes a self-signed ca.crt, tls.crt and tls.key into
// dir, as a kubernetes.io/tls Secret with its CA holds them.
func writeCertificate(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "courier"},
		DNSNames:  []string{"*.courier-headless.events.svc.cluster.local", "courier.events.svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, b := range map[string][]byte{
		"ca.crt": cert, "tls.crt": cert,
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
