package checks

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// NameCNIWorkloadArch is the arch-coverage check's name.
const NameCNIWorkloadArch = "CNIWorkloadArch"

// ArchNotExercised starts the error of a CNI workload that had no Ready pod
// on a node of the cell's arch: the cell proved nothing about that
// workload's image for the arch (diagnose names it as the root cause).
const ArchNotExercised = "arch-not-exercised"

// CNIWorkloadArch proves every CNI workload ran on the arch under test: each
// DaemonSet, Deployment and StatefulSet the CNI's install created
// (env.CNIWorkloads) must have at least one Ready pod on a node whose
// kubernetes.io/arch is env.Arch. In a mixed cluster (an amd64 control plane
// beside arm64 workers) a Deployment that tolerates control planes can run
// only there, pull the amd64 image and turn Ready: without this check such
// a cell would pass for arm64 while the workload's arm64 image never ran.
// The evidence names, per pod, its node and that node's arch, each
// container's image and the digest the node resolved (imageID), restarts
// and the last termination reason.
type CNIWorkloadArch struct{}

func (CNIWorkloadArch) Name() string { return NameCNIWorkloadArch }

func (CNIWorkloadArch) DependsOn() []string { return []string{NameCNIPodsReady} }

func (c CNIWorkloadArch) Run(ctx context.Context, env *Env) Result {
	env.init()
	if env.Arch == "" {
		return fail(nil, "env.Arch is not set")
	}
	if len(env.CNIWorkloads) == 0 {
		return fail(nil, "no CNI workloads to check (the install created no DaemonSet, Deployment or StatefulSet)")
	}
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	nodes, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fail(nil, "list nodes: %v", err)
	}
	archOf := map[string]string{}
	for _, n := range nodes.Items {
		archOf[n.Name] = n.Labels[corev1.LabelArchStable]
	}
	var ev []Evidence
	var problems []string
	for _, w := range env.CNIWorkloads {
		pods, err := workloadPods(ctx, env, w)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", w, err))
			ev = append(ev, Evidence{Check: c.Name(), Target: w.String(), OK: false, Detail: err.Error()})
			continue
		}
		exercised := false
		var seen []string
		for i := range pods {
			p := &pods[i]
			arch := archOf[p.Spec.NodeName]
			ready := install.PodReady(p)
			ok := ready && arch == env.Arch
			detail := fmt.Sprintf("pod %s on node %s (arch %s), ready %v: %s", p.Name, orNone(p.Spec.NodeName), orNone(arch), ready, containerImages(p))
			if ok && !exercised && env.Config != nil {
				// The workload's own container says what it runs as, once
				// per workload (exec is slow on emulated nodes).
				u := env.uname(ctx, p)
				switch got := goArch(u.machine); {
				case u.err != "":
					detail += "; uname -m not read in the container (" + u.err + ")"
				case got != env.Arch:
					ok = false
					detail += fmt.Sprintf("; uname -m %s in container %s: not %s", u.machine, p.Spec.Containers[0].Name, env.Arch)
					problems = append(problems, fmt.Sprintf("%s pod %s runs as %s (uname -m %s) on a %s node", w, p.Name, orNone(got), u.machine, env.Arch))
				default:
					detail += fmt.Sprintf("; uname -m %s in container %s", u.machine, p.Spec.Containers[0].Name)
				}
			}
			exercised = exercised || ok
			seen = append(seen, fmt.Sprintf("%s on %s (%s)", p.Name, orNone(p.Spec.NodeName), orNone(arch)))
			ev = append(ev, Evidence{Check: c.Name(), Source: p.Spec.NodeName, Target: w.String(), OK: ok, Detail: detail})
		}
		if !exercised {
			if len(seen) == 0 {
				seen = []string{"no pods"}
			}
			problems = append(problems, fmt.Sprintf("%s has no Ready pod on a %s node: %s", w, env.Arch, strings.Join(seen, ", ")))
		}
	}
	if len(problems) > 0 {
		r := fail(ev, "%s: %s", ArchNotExercised, strings.Join(problems, "; "))
		r.Cause = ArchNotExercised
		return r
	}
	return Result{OK: true, Evidence: ev}
}

// workloadPods are the pods of a workload, found by its selector in its
// namespace, sorted by node and name.
func workloadPods(ctx context.Context, env *Env, w install.Workload) ([]corev1.Pod, error) {
	var sel *metav1.LabelSelector
	apps := env.Client.AppsV1()
	switch w.Kind {
	case "DaemonSet":
		d, err := apps.DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		sel = d.Spec.Selector
	case "Deployment":
		d, err := apps.Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		sel = d.Spec.Selector
	case "StatefulSet":
		d, err := apps.StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		sel = d.Spec.Selector
	default:
		return nil, fmt.Errorf("kind %s: not a workload this check reads", w.Kind)
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	list, err := env.Client.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return nil, err
	}
	pods := list.Items
	sort.Slice(pods, func(i, j int) bool { return pods[i].Spec.NodeName+pods[i].Name < pods[j].Spec.NodeName+pods[j].Name })
	return pods, nil
}

// containerImages names each container's image, the digest the node
// resolved it to, restarts and the last termination reason.
func containerImages(p *corev1.Pod) string {
	var parts []string
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, s := range statuses {
		d := s.Name + " " + s.Image
		if id := s.ImageID; id != "" {
			if i := strings.LastIndex(id, "@"); i >= 0 {
				id = id[i+1:]
			}
			d += " (" + id + ")"
		}
		if s.RestartCount > 0 {
			d += fmt.Sprintf(", %d restarts", s.RestartCount)
		}
		if t := s.LastTerminationState.Terminated; t != nil && t.Reason != "" {
			d += ", last terminated " + t.Reason
		}
		parts = append(parts, d)
	}
	if len(parts) == 0 {
		return "no container status yet"
	}
	return strings.Join(parts, "; ")
}
