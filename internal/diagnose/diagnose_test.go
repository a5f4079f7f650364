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
