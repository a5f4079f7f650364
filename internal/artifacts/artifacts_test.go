package artifacts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestRedactRemovesSecrets(t *testing.T) {
	in := `kubeadm join 172.18.0.2:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234
client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=
token: eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlc2lnbmF0dXJl
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAx
-----END RSA PRIVATE KEY-----
-----BEGIN CERTIFICATE-----
MIIC5zCCAc+gAwIBAgIBADANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDEwprdWJl
-----END CERTIFICATE-----
pod kube-flannel-ds-abc Running`
	out := string(Redact([]byte(in)))
	for _, secret := range []string{"abcdef.0123456789abcdef", "LS0tLS1CRUdJTiBSU0Eg", "eyJhbGciOiJSUzI1NiIs", "MIIEowIBAAKCAQEAx", "MIIC5zCCAc", "PRIVATE KEY"} {
		if strings.Contains(out, secret) {
			t.Errorf("redacted output still holds %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "pod kube-flannel-ds-abc Running") {
		t.Errorf("redaction removed ordinary text:\n%s", out)
	}
	p := filepath.Join(t.TempDir(), "a", "b.txt")
	if err := WriteRedacted(p, []byte(in)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if strings.Contains(string(b), "abcdef.0123456789abcdef") {
		t.Error("WriteRedacted wrote a bootstrap token")
	}
}

func TestDirHonoursARTIFACTS(t *testing.T) {
	t.Setenv("ARTIFACTS", "/ci/artifacts")
	if got := Dir("_out/artifacts"); got != "/ci/artifacts" {
		t.Errorf("Dir = %q", got)
	}
	t.Setenv("ARTIFACTS", "")
	if got := Dir("_out/artifacts"); got != "_out/artifacts" {
		t.Errorf("Dir = %q", got)
	}
}

func TestPodDumpHidesSecretEnvValues(t *testing.T) {
	pods := &corev1.PodList{Items: []corev1.Pod{{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Env: []corev1.EnvVar{{Name: "DB_PASSWORD", Value: "pw-planted"}}}},
		Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{
			{Name: "API_TOKEN", Value: "tok-planted"}, {Name: "NODE_NAME", Value: "worker-1"},
			{Name: "TLS_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "tls.key"}}},
		}}},
	}}}}
	out := withoutSecretEnv(pods)
	got := map[string]string{}
	for _, c := range append(out.Items[0].Spec.InitContainers, out.Items[0].Spec.Containers...) {
		for _, e := range c.Env {
			got[e.Name] = e.Value
		}
	}
	if got["DB_PASSWORD"] != "REDACTED" || got["API_TOKEN"] != "REDACTED" || got["NODE_NAME"] != "worker-1" || got["TLS_KEY"] != "" {
		t.Errorf("env after redaction: %v", got)
	}
	if pods.Items[0].Spec.Containers[0].Env[0].Value != "tok-planted" {
		t.Error("the cluster's own list was changed")
	}
}
