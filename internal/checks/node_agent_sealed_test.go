package checks

import (
	"strings"
	"testing"
)

// The verdict of NodeAgentSealed for what a pod may find: the layout
// before the token moved off the kernel command line must fail, and the
// token must never be quoted.
func TestAgentSealVerdict(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    agentSeal
		ok   bool
		want string
	}{
		{"sealed, agent refuses", agentSeal{agent: httpProbe{Code: 401}}, true, "refused the pod's call: HTTP 401"},
		{"sealed, agent unreachable", agentSeal{agent: httpProbe{Err: "curl exited 7 (failed to connect)"}}, true, "not reachable"},
		{"token on the command line, agent obeys", agentSeal{cmdlineToken: true, agent: httpProbe{Code: 200}}, false, "kernel command line"},
		{"token file readable", agentSeal{fileRead: true, agent: httpProbe{Code: 401}}, false, "read the agent's token"},
		{"agent takes any token", agentSeal{agent: httpProbe{Code: 200}}, false, "accepted the pod's call (HTTP 200)"},
		{"exec failed", agentSeal{harness: true, errs: []string{"cat /proc/cmdline: harness: EOF"}, agent: httpProbe{Code: 401}}, false, "could not look from the pod"},
	} {
		ok, detail := tc.s.verdict()
		if ok != tc.ok || !strings.Contains(detail, tc.want) {
			t.Errorf("%s: verdict %v %q, want %v containing %q", tc.name, ok, detail, tc.ok, tc.want)
		}
	}
}
