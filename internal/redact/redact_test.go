package redact

import (
	"strings"
	"testing"
)

func TestBytesRemovesSecrets(t *testing.T) {
	in := `kubeadm join 172.18.0.2:6443 --token q7w8e9.r1t2y3u4i5o6p7a8 --discovery-token-ca-cert-hash sha256:1234
Authorization: Bearer s3cr3tBearerValue42
Authorization: Basic dXNlcjpiYXNpY3Bhc3M=
password=hunter2hunter2
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIcutoffkey
pod kube-flannel-ds-abc Running`
	out := string(Bytes([]byte(in)))
	for _, secret := range []string{"q7w8e9.r1t2y3u4i5o6p7a8", "s3cr3tBearerValue42", "dXNlcjpiYXNpY3Bhc3M=", "hunter2hunter2", "MHcCAQEEIcutoffkey"} {
		if strings.Contains(out, secret) {
			t.Errorf("redacted output still holds %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "kubeadm join 172.18.0.2:6443 --token REDACTED") {
		t.Errorf("the join command's shape is gone:\n%s", out)
	}
	// Ordinary text of the harness stays.
	for _, keep := range []string{"kubeadm token create --print-join-command", "agent refused the pod's call: HTTP 401", "secretName: calico-typha-certs", "exec /usr/local/bin/flexvol: exec format error", "basic connectivity across nodes"} {
		if got := String(keep); got != keep {
			t.Errorf("String(%q) = %q", keep, got)
		}
	}
}

type inner struct {
	Detail string
	hidden string
}

type outer struct {
	Reason   string
	Phases   []inner
	ByName   map[string]string
	Nested   map[string]inner
	Ptr      *inner
	Count    int
	unexport string
}

func TestStringsWalksEveryExportedString(t *testing.T) {
	const tok = "token: leakedvalue123"
	v := outer{
		Reason: tok, Phases: []inner{{Detail: tok, hidden: tok}},
		ByName: map[string]string{"a": tok}, Nested: map[string]inner{"b": {Detail: tok}},
		Ptr: &inner{Detail: tok}, Count: 3, unexport: tok,
	}
	Strings(&v)
	for what, got := range map[string]string{"Reason": v.Reason, "Phases[0]": v.Phases[0].Detail, "ByName": v.ByName["a"], "Nested": v.Nested["b"].Detail, "Ptr": v.Ptr.Detail} {
		if got != "token: REDACTED" {
			t.Errorf("%s = %q", what, got)
		}
	}
	if v.Phases[0].hidden != tok || v.unexport != tok || v.Count != 3 {
		t.Error("unexported fields or non-strings changed")
	}
}
