package diagnose

import (
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

func TestRootCause(t *testing.T) {
	cases := []struct {
		phase matrix.Phase
		want  string
	}{
		{matrix.Phase{Name: "cni-ready", Outcome: matrix.Fail, Error: `container kube-flannel waiting ImagePullBackOff: Back-off pulling image "x"`}, ImagePull},
		{matrix.Phase{Name: "cni-ready", Outcome: matrix.Fail, Error: `terminated: exec /usr/bin/flanneld: exec format error`}, ExecFormat},
		{matrix.Phase{Name: "cni-ready", Outcome: matrix.Fail, Error: `waiting CrashLoopBackOff: back-off restarting`}, CrashLoop},
		{matrix.Phase{Name: "check:PodToClusterIP", Outcome: matrix.Fail, Error: `curl: (7) Failed to connect`}, Connectivity},
		{matrix.Phase{Name: "check:NodeArch", Outcome: matrix.Fail, Error: `node w: expected arm64 (the provider's arch), got nodeInfo.architecture amd64, uname -m x86_64`}, ArchMismatch},
		{matrix.Phase{Name: "check:HostToNodePort", Outcome: matrix.Fail, Error: `connection refused`}, Connectivity},
		{matrix.Phase{Name: "cluster", Outcome: matrix.InfraError, Infra: true, Error: `kubeadm init failed`}, Infra},
		{matrix.Phase{Name: "check:NodesReady", Outcome: matrix.Fail, Error: `context deadline exceeded`}, Timeout},
	}
	for _, c := range cases {
		r := matrix.Result{Phases: []matrix.Phase{{Name: "images", Outcome: matrix.Pass}, c.phase}}
		if got := RootCause(r); got != c.want {
			t.Errorf("%s %q: %q, want %q", c.phase.Name, c.phase.Error, got, c.want)
		}
	}
	if got := RootCause(matrix.Result{Phases: []matrix.Phase{{Name: "x", Outcome: matrix.Pass}}}); got != "" {
		t.Errorf("passing result has root cause %q", got)
	}
}

func preflight(outcome matrix.Outcome, errText string, ev ...matrix.Evidence) matrix.Phase {
	return matrix.Phase{Name: PreflightPhase, Outcome: outcome, Error: errText, Evidence: ev}
}

func finding(image, kind string) matrix.Evidence {
	return matrix.Evidence{Check: PreflightPhase, Source: "linux/arm64", Target: image, OK: kind == "ok",
		Detail: kind + ": DaemonSet kube-flannel/kube-flannel-ds init container flexvol-driver: ...", Finding: kind}
}

// The preflight's findings back (or decide) the root cause.
func TestRootCauseWithPreflight(t *testing.T) {
	const (
		amd64Only  = "docker.io/cnimatrix/flexvol:amd64-only"
		mislabeled = "docker.io/cnimatrix/flexvol:mislabeled"
		flannel    = "docker.io/cnimatrix/flannel:v0.28.10"
	)
	ready := func(err string) matrix.Phase {
		return matrix.Phase{Name: "cni-ready", Outcome: matrix.Fail, Error: err}
	}
	cases := []struct {
		name   string
		phases []matrix.Phase
		want   string
	}{
		{"strict preflight, no variant",
			[]matrix.Phase{preflight(matrix.Fail, "arch-mismatch: 1 of 2 images cannot run on linux/arm64", finding(flannel, "ok"), finding(amd64Only, "no-variant"))}, ArchMismatch},
		{"strict preflight, mislabeled",
			[]matrix.Phase{preflight(matrix.Fail, "arch-mismatch: ...", finding(mislabeled, "mislabeled"))}, ArchMismatch},
		{"strict preflight, unresolvable image",
			[]matrix.Phase{preflight(matrix.Fail, "1 of 1 images could not be audited", finding("docker.io/x/nope:v1", "error"))}, ImagePull},
		{"pull refused for the platform, backed by the audit",
			[]matrix.Phase{preflight(matrix.Pass, "", finding(amd64Only, "no-variant")), ready(`init container flexvol-driver (` + amd64Only + `) waiting ErrImagePull: no match for platform in manifest`)}, ArchMismatch},
		{"single-platform image of another arch: exec format error, but no variant",
			[]matrix.Phase{preflight(matrix.Pass, "", finding(amd64Only, "no-variant")), ready(`init container flexvol-driver (` + amd64Only + `) terminated Error (exit 1), logs: exec /usr/local/bin/flexvol: exec format error`)}, ArchMismatch},
		{"mislabeled: the kernel's words stand",
			[]matrix.Phase{preflight(matrix.Pass, "", finding(mislabeled, "mislabeled")), ready(`init container flexvol-driver (` + mislabeled + `) waiting CrashLoopBackOff, logs: exec /usr/local/bin/flexvol: exec format error`)}, ExecFormat},
		{"mislabeled image stuck otherwise",
			[]matrix.Phase{preflight(matrix.Pass, "", finding(mislabeled, "mislabeled")), ready(`init container flexvol-driver (` + mislabeled + `) waiting PodInitializing (gave up after 5m: context deadline exceeded)`)}, ArchMismatch},
		{"a finding about another image does not decide",
			[]matrix.Phase{preflight(matrix.Pass, "", finding(amd64Only, "no-variant")), ready(`container kube-flannel (` + flannel + `) waiting ImagePullBackOff: Back-off pulling image`)}, ImagePull},
		{"ok and error findings do not decide",
			[]matrix.Phase{preflight(matrix.Pass, "", finding(flannel, "ok"), finding("docker.io/x/nope:v1", "error")), ready(`container kube-flannel (docker.io/x/nope:v1) waiting ImagePullBackOff: Back-off pulling image`)}, ImagePull},
		{"infrastructure stays infrastructure",
			[]matrix.Phase{preflight(matrix.Pass, "", finding(amd64Only, "no-variant")), {Name: "cluster", Outcome: matrix.InfraError, Infra: true, Error: "create " + amd64Only}}, Infra},
	}
	for _, c := range cases {
		if got := RootCause(matrix.Result{Phases: c.phases}); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
