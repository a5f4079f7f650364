package checks

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/install"
)

// NodeArch confirms every node is the architecture the provider built it as,
// two ways: the kubelet's report (status.nodeInfo.architecture) and `uname -m`
// in the node's probe pod, i.e. what a container there runs as. A cell that
// says arm64 is worth nothing if its pods ran on amd64, and the kubelet's
// word is not enough: a foreign-arch image run under binfmt emulation
// reports the emulated machine, which only the pod's own uname shows.
type NodeArch struct{}

func (NodeArch) Name() string { return NameNodeArch }

func (NodeArch) DependsOn() []string { return []string{NameWorkloads} }

func (c NodeArch) Run(ctx context.Context, env *Env) Result {
	env.init()
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	list, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fail(nil, "list nodes: %v", err)
	}
	probes, err := listProbes(ctx, env)
	if err != nil {
		return fail(nil, "%v", err)
	}
	api := map[string]*corev1.Node{}
	for i := range list.Items {
		api[list.Items[i].Name] = &list.Items[i]
	}
	var ev []Evidence
	var problems []string
	harness := 0 // problems that are only an exec that failed
	for _, n := range archTargets(env.Nodes, list.Items) {
		a := archReport{Node: n.Name, Want: n.Arch}
		e := Evidence{Check: c.Name(), Source: "api", Target: "node " + n.Name}
		if node := api[n.Name]; node != nil {
			a.NodeInfo, a.Kernel = node.Status.NodeInfo.Architecture, node.Status.NodeInfo.KernelVersion
		} else {
			a.Err = "node not registered with the API server"
		}
		if p := probeOn(probes, n.Name); a.Err == "" && p == nil {
			a.Err = "no probe pod on this node"
		} else if a.Err == "" {
			a.Pod = p.Name
			if install.PodReady(p) {
				out := env.uname(ctx, p)
				e.Latency, e.Attempts = out.took, out.attempts
				a.Uname, a.Err = out.machine, out.err
				e.Harness = out.harness
			} else {
				a.Err = "probe pod " + p.Name + " not ready: " + install.DescribePod(p, nil).String()
			}
		}
		var problem string
		e.OK, e.Detail, problem = a.verdict()
		if !e.OK {
			problems = append(problems, "node "+n.Name+": "+problem)
			if e.Harness && (a.Want == "" || a.NodeInfo == a.Want) {
				harness++
			}
		}
		ev = append(ev, e)
	}
	if len(ev) == 0 {
		return fail(nil, "no nodes")
	}
	if len(problems) > 0 && harness == len(problems) {
		// No pod was asked: the harness's failure, not a verdict on the
		// nodes' arch.
		r := fail(ev, "the harness could not exec into its probe pods: %s", strings.Join(problems, "; "))
		r.Infra = true
		return r
	}
	if len(problems) > 0 {
		return fail(ev, "%s", strings.Join(problems, "; "))
	}
	return Result{OK: true, Evidence: ev}
}

// archTargets are the provider's nodes, with the arch it built each as; a
// caller that names none (a cluster it did not create) gets the API's nodes
// with no expected arch, so only the kubelet and the pod must agree.
func archTargets(prov []cluster.Node, api []corev1.Node) []cluster.Node {
	if len(prov) > 0 {
		return prov
	}
	out := make([]cluster.Node, 0, len(api))
	for _, n := range api {
		out = append(out, cluster.Node{Name: n.Name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// archReport is what NodeArch learnt of one node.
type archReport struct {
	Node     string
	Want     string // the provider's arch; "" when not stated
	NodeInfo string // status.nodeInfo.architecture
	Kernel   string
	Pod      string // the probe pod uname ran in
	Uname    string // uname -m
	Err      string // why uname -m could not be read
}

// verdict is OK only when the kubelet and the pod both report the expected
// arch (the provider's, else the kubelet's), with the evidence detail and,
// when not OK, what is wrong.
func (a archReport) verdict() (ok bool, detail, problem string) {
	if a.Err == "" {
		detail = fmt.Sprintf("nodeInfo.architecture %s, uname -m %s in pod %s (kernel %s)", orNone(a.NodeInfo), orNone(a.Uname), a.Pod, orNone(a.Kernel))
	} else {
		detail = fmt.Sprintf("nodeInfo.architecture %s (kernel %s), uname -m unread: %s", orNone(a.NodeInfo), orNone(a.Kernel), a.Err)
	}
	want, from := a.Want, "the provider's"
	if want == "" {
		want, from = a.NodeInfo, "the kubelet's"
	}
	if want == "" {
		return false, detail, "no arch to expect: the provider stated none and the kubelet reported none"
	}
	var bad []string
	if a.Want != "" && a.NodeInfo != a.Want {
		bad = append(bad, "nodeInfo.architecture "+orNone(a.NodeInfo))
	}
	switch got := goArch(a.Uname); {
	case a.Err != "":
	case got == "":
		bad = append(bad, fmt.Sprintf("uname -m %q, no known architecture", a.Uname))
	case got != want:
		bad = append(bad, fmt.Sprintf("uname -m %s (%s) in pod %s", a.Uname, got, a.Pod))
	}
	var parts []string
	if len(bad) > 0 {
		parts = append(parts, fmt.Sprintf("expected %s (%s arch), got %s", want, from, strings.Join(bad, ", ")))
	}
	if a.Err != "" {
		parts = append(parts, "uname -m unread: "+a.Err)
	}
	if len(parts) == 0 {
		return true, detail, ""
	}
	return false, detail + "; expected " + want, strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// goArch maps `uname -m` to Go's (and Kubernetes') arch names; "" when
// unknown.
func goArch(machine string) string {
	switch machine {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64", "aarch64_be":
		return "arm64"
	case "armv6l", "armv7l", "armv8l":
		return "arm"
	case "i386", "i486", "i586", "i686":
		return "386"
	case "ppc64le", "s390x", "riscv64":
		return machine
	}
	return ""
}

type unameOutput struct {
	machine, err string
	took         time.Duration
	attempts     int
	// harness: the exec itself failed (API server, kubelet, RBAC), so
	// the pod never answered.
	harness bool
}

// uname runs `uname -m` in pod, retrying only when the exec itself failed.
func (e *Env) uname(ctx context.Context, pod *corev1.Pod) unameOutput {
	var u unameOutput
	u.attempts = retry(ctx, probeAttempts, func(ctx context.Context) bool {
		actx, cancel := context.WithTimeout(ctx, e.execSlack())
		defer cancel()
		out := e.exec(actx, pod, "uname", "-m")
		u = unameOutput{machine: strings.TrimSpace(out.Stdout), took: out.Took}
		switch {
		case out.Err != nil:
			u.err, u.harness = out.Err.Error(), true
			// An image without uname answers the same every time.
			return !strings.Contains(u.err, "executable file not found")
		case out.Code != 0:
			u.err = fmt.Sprintf("exit %d: %s", out.Code, excerpt(out.Stderr+" "+out.Stdout, 200))
			if out.Code == 126 || out.Code == 127 {
				u.err = "probe image cannot run uname (" + u.err + ")"
			}
		case u.machine == "":
			u.err = "uname -m printed nothing"
		}
		return false
	})
	return u
}
