package artifacts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
