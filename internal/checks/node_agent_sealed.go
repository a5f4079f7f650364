package checks

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// NameNodeAgentSealed names NodeAgentSealed.
const NameNodeAgentSealed = "NodeAgentSealed"

// agentTokenFile is where a VM node's kernel shows the agent's token (the
// fw_cfg file the host gave QEMU); see qemu.AgentTokenFwCfg.
const agentTokenFile = "/sys/firmware/qemu_fw_cfg/by_name/opt/cnimatrix/agent-token/raw"

// notTheToken is what a pod that found no token tries.
const notTheToken = "0000000000000000"

// NodeAgentSealed proves that a pod cannot take over its node through the
// harness's own agent (cluster.Node.Agent: a QEMU VM's cnimatrix-agent,
// which runs any command as root and is reachable on the node's network).
// From the probe pod on each such node it reads the kernel command line
// (where the token once was, readable by every pod), tries the root-only
// file that holds the token now, and calls the agent with whatever token it
// found. Sealed: no token on the command line, the file unreadable, the
// agent refuses the call or cannot be reached.
//
// A failure is the harness's (Result.Infra): an exposed agent says nothing
// about the CNI, but a cell run on such a node is no verdict either. The
// engine runs this check only on clusters with agent nodes.
type NodeAgentSealed struct{}

func (NodeAgentSealed) Name() string { return NameNodeAgentSealed }

func (NodeAgentSealed) DependsOn() []string { return []string{NameWorkloads} }

func (c NodeAgentSealed) Run(ctx context.Context, env *Env) Result {
	env.init()
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	probes, err := listProbes(ctx, env)
	if err != nil {
		return fail(nil, "%v", err)
	}
	var ev []Evidence
	var problems []string
	for _, n := range env.Nodes {
		if n.Agent == "" {
			continue
		}
		e := Evidence{Check: c.Name(), Target: "agent " + n.Agent + " of node " + n.Name, Harness: true}
		p := probeOn(probes, n.Name)
		switch {
		case p == nil:
			e.Detail = "no probe pod on this node"
		case !install.PodReady(p):
			e.Detail = "probe pod " + p.Name + " not ready: " + install.DescribePod(p, nil).String()
		default:
			e.Source = "pod " + p.Name
			s := env.agentSeal(ctx, p, n.Agent)
			e.Latency, e.Attempts = s.agent.Latency, s.agent.Attempts
			e.OK, e.Detail = s.verdict()
			e.Harness = s.harness
		}
		if !e.OK {
			problems = append(problems, "node "+n.Name+": "+e.Detail)
		}
		ev = append(ev, e)
	}
	if len(ev) == 0 {
		return fail(nil, "no node has an agent")
	}
	if len(problems) > 0 {
		r := fail(ev, "%s", strings.Join(problems, "; "))
		r.Infra = true
		return r
	}
	return Result{OK: true, Evidence: ev}
}

// agentSeal is what a pod found out about its node's agent.
type agentSeal struct {
	// cmdlineToken: /proc/cmdline names the agent's token.
	cmdlineToken bool
	// fileRead: the token file could be read from the pod.
	fileRead bool
	agent    httpProbe // the pod's call of /healthz with the best token it had
	// harness: an exec into the pod failed (errs say how), so the pod's
	// view is unknown.
	harness bool
	errs    []string
}

func (e *Env) agentSeal(ctx context.Context, pod *corev1.Pod, agent string) agentSeal {
	var s agentSeal
	run := func(argv ...string) execOutput {
		var out execOutput
		retry(ctx, probeAttempts, func(ctx context.Context) bool {
			actx, cancel := context.WithTimeout(ctx, e.execSlack())
			defer cancel()
			out = e.exec(actx, pod, argv...)
			return out.Err != nil
		})
		if out.Err != nil {
			s.harness = true
			s.errs = append(s.errs, strings.Join(argv, " ")+": "+harnessError(out, e.execSlack(), "cat has no limit of its own"))
		}
		return out
	}
	tok := notTheToken
	if out := run("cat", "/proc/cmdline"); out.Err == nil {
		for _, w := range strings.Fields(out.Stdout) {
			if v, ok := strings.CutPrefix(w, "cnimatrix.token="); ok {
				s.cmdlineToken, tok = true, v
			}
		}
	}
	if out := run("cat", agentTokenFile); out.Err == nil && out.Code == 0 && strings.TrimSpace(out.Stdout) != "" {
		s.fileRead, tok = true, strings.TrimSpace(out.Stdout)
	}
	s.agent = e.curlFrom(ctx, pod, "http://"+agent+"/healthz", 1, "-H", "Authorization: Bearer "+tok)
	if s.agent.Harness {
		s.harness = true
		s.errs = append(s.errs, "curl: "+s.agent.Err)
	}
	return s
}

// verdict: sealed or not, and why, never quoting a token.
func (s agentSeal) verdict() (bool, string) {
	if s.harness {
		return false, "could not look from the pod: " + strings.Join(s.errs, "; ")
	}
	var leaks []string
	if s.cmdlineToken {
		leaks = append(leaks, "the kernel command line (/proc/cmdline, readable in every pod) holds the agent's token")
	}
	if s.fileRead {
		leaks = append(leaks, "the pod read the agent's token from "+agentTokenFile)
	}
	var call string
	switch a := s.agent; {
	case a.Code == 0:
		call = "agent not reachable from the pod (" + a.Err + ")"
	case a.Code >= 200 && a.Code < 300:
		leaks = append(leaks, fmt.Sprintf("the agent accepted the pod's call (HTTP %d): any pod on this node can run commands as root", a.Code))
		call = fmt.Sprintf("agent answered HTTP %d", a.Code)
	default:
		call = fmt.Sprintf("agent refused the pod's call: HTTP %d", a.Code)
	}
	if len(leaks) > 0 {
		return false, strings.Join(leaks, "; ")
	}
	return true, "token not on the kernel command line, token file unreadable, " + call
}
