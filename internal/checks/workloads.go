package checks

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/install"
)

// Names and labels of what Workloads creates in the test namespace.
const (
	nginxName = "nginx"
	probeName = "probe" // prefix: one probe pod per node, probe-<node>
	appLabel  = "app.kubernetes.io/name"
	nginxApp  = "cnimatrix-nginx"
	probeApp  = "cnimatrix-probe"
	// probeRoleLabel tells the primary probe (the source of the checks that
	// probe from one pod) from the others, so later checks need not
	// recompute pickProbeNode against a node list that may have changed.
	probeRoleLabel = "cnimatrix.io/probe-role"
	probePrimary   = "primary"
	probePeer      = "peer"
)

// Workloads deploys what the connectivity checks probe: an nginx Deployment
// with one pod on every node, a NodePort Service in front of it, and a probe
// client pod pinned to every node, one of them the primary. It passes when
// all of them are ready and the Service has an endpoint per nginx pod.
type Workloads struct{}

func (Workloads) Name() string { return NameWorkloads }

func (Workloads) DependsOn() []string { return []string{NameNodesReady, NameCNIPodsReady, nameSetup} }

func (c Workloads) Run(ctx context.Context, env *Env) Result {
	env.init()
	if env.NginxImage == "" || env.ProbeImage == "" {
		return fail(nil, "env.NginxImage and env.ProbeImage must be set")
	}
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	nodes, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fail(nil, "list nodes: %v", err)
	}
	replicas := int32(len(nodes.Items))
	if replicas == 0 {
		return fail(nil, "no nodes")
	}
	primary := pickProbeNode(env.Nodes, nodes.Items)
	probes := probePods(env, nodes.Items, primary)
	ns := env.Namespace
	t0 := time.Now()
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, nginxDeployment(env, replicas), metav1.CreateOptions{}); err != nil {
		return fail(nil, "create deployment %s/%s: %v", ns, nginxName, err)
	}
	if _, err := env.Client.CoreV1().Services(ns).Create(ctx, nginxService(env), metav1.CreateOptions{}); err != nil {
		return fail(nil, "create service %s/%s: %v", ns, nginxName, err)
	}
	probeNames := make([]string, 0, len(probes))
	for _, p := range probes {
		if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return fail(nil, "create pod %s/%s: %v", ns, p.Name, err)
		}
		probeNames = append(probeNames, p.Name)
	}
	env.Log.Debugf("nginx x%d, service, probe pods %s (primary on %s) in %s", replicas, strings.Join(probeNames, " "), primary, ns)

	// The probes are waited for alongside nginx, so that each one's ready
	// time is its own and not nginx's.
	type probesReady struct {
		at  map[string]time.Duration
		err error
	}
	probesDone := make(chan probesReady, 1)
	go func() {
		at, err := waitPods(ctx, env, probeNames, t0)
		probesDone <- probesReady{at, err}
	}()
	var errs []string
	if err := install.WaitWorkloads(ctx, env.Client, []install.Workload{{Kind: "Deployment", Namespace: ns, Name: nginxName}}, env.Log); err != nil {
		errs = append(errs, err.Error())
	}
	nginxReady := time.Since(t0)
	pr := <-probesDone
	readyAt := pr.at
	if pr.err != nil {
		errs = append(errs, pr.err.Error())
	}
	var endpoints int
	var epErr error
	if len(errs) == 0 {
		endpoints, epErr = waitEndpoints(ctx, env, int(replicas))
		if epErr != nil {
			errs = append(errs, epErr.Error())
		}
	}

	// Evidence is read after the waits, whose context may be over.
	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer ecancel()
	var ev []Evidence
	events, _ := install.WarningEvents(ectx, env.Client, ns)
	podEvidence := func(p *corev1.Pod, role string, latency time.Duration) Evidence {
		e := Evidence{Check: c.Name(), Source: "api", Target: podRef(p), OK: install.PodReady(p)}
		if e.OK {
			e.Detail, e.Latency = "Ready"+role, latency
		} else {
			e.Detail = install.DescribePod(p, events.For("Pod", p.Name, string(p.UID))).String()
		}
		return e
	}
	if pods, err := env.Client.CoreV1().Pods(ns).List(ectx, metav1.ListOptions{LabelSelector: appLabel + "=" + nginxApp}); err == nil {
		sortPods(pods.Items)
		for i := range pods.Items {
			ev = append(ev, podEvidence(&pods.Items[i], "", nginxReady))
		}
	}
	if pods, err := env.Client.CoreV1().Pods(ns).List(ectx, metav1.ListOptions{LabelSelector: appLabel + "=" + probeApp}); err == nil {
		sortPods(pods.Items)
		for i := range pods.Items {
			p := &pods.Items[i]
			role := ", probe client"
			if p.Labels[probeRoleLabel] == probePrimary {
				role = ", primary probe client"
			}
			ev = append(ev, podEvidence(p, role, readyAt[p.Name]))
		}
	}
	if svc, err := env.Client.CoreV1().Services(ns).Get(ectx, nginxName, metav1.GetOptions{}); err == nil && len(svc.Spec.Ports) > 0 {
		sp := svc.Spec.Ports[0]
		ev = append(ev, Evidence{Check: c.Name(), Source: "api", Target: "service " + ns + "/" + nginxName,
			OK:     epErr == nil && len(errs) == 0,
			Detail: fmt.Sprintf("ClusterIP %s, port %d -> targetPort %s, NodePort %d, %d ready endpoints", svc.Spec.ClusterIP, sp.Port, sp.TargetPort.String(), sp.NodePort, endpoints)})
	}
	if len(errs) > 0 {
		return fail(ev, "%s", strings.Join(errs, "\n"))
	}
	return Result{OK: true, Evidence: ev}
}

// pickProbeNode prefers a worker: the control-plane node is often the odd
// one out (taints, host-network components), and probing from a worker is the
// common path. nginx runs on every node, so any choice leaves pods on others.
func pickProbeNode(prov []cluster.Node, api []corev1.Node) string {
	for _, n := range prov {
		if n.Role == cluster.Worker {
			return n.Name
		}
	}
	names := make([]string, 0, len(api))
	for _, n := range api {
		if _, cp := n.Labels["node-role.kubernetes.io/control-plane"]; !cp {
			names = append(names, n.Name)
		}
	}
	if len(names) == 0 {
		for _, n := range api {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// controlPlaneTolerations let test pods onto control-plane nodes, so that
// every node's pod network is tested; "master" is the taint of clusters
// before 1.24.
func controlPlaneTolerations() []corev1.Toleration {
	return []corev1.Toleration{
		{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: "node-role.kubernetes.io/master", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	}
}

func ptr[T any](v T) *T { return &v }

func nginxDeployment(env *Env, replicas int32) *appsv1.Deployment {
	lbl := map[string]string{appLabel: nginxApp}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: nginxName, Namespace: env.Namespace, Labels: owned(lbl)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{
					// One per node, or the pod-to-pod check would not cross nodes.
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: &metav1.LabelSelector{MatchLabels: lbl},
							TopologyKey:   "kubernetes.io/hostname",
						}},
					}},
					Tolerations:                   controlPlaneTolerations(),
					AutomountServiceAccountToken:  ptr(false),
					TerminationGracePeriodSeconds: ptr(int64(1)),
					Containers: []corev1.Container{{
						Name:            "nginx",
						Image:           env.NginxImage,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}},
							PeriodSeconds: 2,
							// Emulated nodes answer slowly; a probe timeout there is not the CNI's fault.
							TimeoutSeconds: 5,
						},
					}},
				},
			},
		},
	}
}

func nginxService(env *Env) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: nginxName, Namespace: env.Namespace, Labels: owned(nil)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: map[string]string{appLabel: nginxApp},
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: 80,
				TargetPort: intstr.FromInt(env.TargetPort),
			}},
		},
	}
}

// probePods is one probe pod per API node, the one on primary labelled so.
// The pods are named after their nodes, which makes evidence and artifacts
// readable.
func probePods(env *Env, nodes []corev1.Node, primary string) []*corev1.Pod {
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	out := make([]*corev1.Pod, 0, len(names))
	for i, node := range names {
		role := probePeer
		if node == primary {
			role = probePrimary
		}
		out = append(out, probePod(env, probePodName(node, i), node, role))
	}
	return out
}

// probePodName is probe-<node>, or probe-<i> for a node name too long to
// make a pod name of (both are DNS subdomains of at most 253 characters).
func probePodName(node string, i int) string {
	if n := probeName + "-" + node; len(n) <= 253 {
		return n
	}
	return fmt.Sprintf("%s-%d", probeName, i)
}

func probePod(env *Env, name, node, role string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: env.Namespace, Labels: owned(map[string]string{appLabel: probeApp, probeRoleLabel: role})},
		Spec: corev1.PodSpec{
			// Pinned rather than scheduled: each probe stands for its node,
			// and the cross-node targets are chosen against it.
			NodeName:                      node,
			Tolerations:                   controlPlaneTolerations(),
			AutomountServiceAccountToken:  ptr(false),
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Containers: []corev1.Container{{
				Name:            "probe",
				Image:           env.ProbeImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"sleep", "infinity"},
			}},
		},
	}
}

// waitEndpoints waits until the Service's EndpointSlices list want ready
// addresses, so the Service probes do not race the endpoint controller.
func waitEndpoints(ctx context.Context, env *Env, want int) (int, error) {
	n := 0
	var state string
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		list, err := env.Client.DiscoveryV1().EndpointSlices(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + nginxName})
		if err != nil {
			state = err.Error()
			return false, nil
		}
		n = readyEndpoints(list.Items)
		state = fmt.Sprintf("%d/%d ready endpoints", n, want)
		return n >= want, nil
	})
	if err != nil {
		return n, fmt.Errorf("service %s/%s: %s: %w", env.Namespace, nginxName, state, err)
	}
	return n, nil
}

// readyEndpoints counts distinct ready addresses; an unset Ready means ready
// (the API's documented reading of "unknown").
func readyEndpoints(slices []discoveryv1.EndpointSlice) int {
	seen := map[string]bool{}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				seen[a] = true
			}
		}
	}
	return len(seen)
}

func podRef(p *corev1.Pod) string {
	return fmt.Sprintf("pod %s@%s (%s)", p.Name, p.Spec.NodeName, p.Status.PodIP)
}

func sortPods(pods []corev1.Pod) {
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Spec.NodeName != pods[j].Spec.NodeName {
			return pods[i].Spec.NodeName < pods[j].Spec.NodeName
		}
		return pods[i].Name < pods[j].Name
	})
}

// deployed is what Workloads left in the namespace, read back from the API
// so that each connectivity check stands alone.
type deployed struct {
	probe  *corev1.Pod  // the primary probe, ready
	probes []corev1.Pod // every probe pod, ready or not, by node
	nginx  []corev1.Pod // ready ones, by node
	svc    *corev1.Service
}

func loadDeployed(ctx context.Context, env *Env) (*deployed, error) {
	ns := env.Namespace
	probes, err := listProbes(ctx, env)
	if err != nil {
		return nil, err
	}
	d := &deployed{probes: probes}
	for i := range d.probes {
		if d.probes[i].Labels[probeRoleLabel] == probePrimary {
			d.probe = &d.probes[i]
			break
		}
	}
	if d.probe == nil {
		return nil, fmt.Errorf("no primary probe pod in %s (did %s run?)", ns, NameWorkloads)
	}
	if !install.PodReady(d.probe) {
		return nil, fmt.Errorf("primary probe pod %s/%s is not ready", ns, d.probe.Name)
	}
	list, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: appLabel + "=" + nginxApp})
	if err != nil {
		return nil, fmt.Errorf("list nginx pods in %s: %w", ns, err)
	}
	for _, p := range list.Items {
		if install.PodReady(&p) && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			d.nginx = append(d.nginx, p)
		}
	}
	if len(d.nginx) == 0 {
		return nil, fmt.Errorf("no ready nginx pods in %s", ns)
	}
	sortPods(d.nginx)
	d.svc, err = env.Client.CoreV1().Services(ns).Get(ctx, nginxName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("service %s/%s: %w", ns, nginxName, err)
	}
	if len(d.svc.Spec.Ports) == 0 {
		return nil, fmt.Errorf("service %s/%s has no ports", ns, nginxName)
	}
	return d, nil
}

// source names the primary probe pod in evidence.
func (d *deployed) source() string { return podRef(d.probe) }

// listProbes is every probe pod Workloads created, by node.
func listProbes(ctx context.Context, env *Env) ([]corev1.Pod, error) {
	list, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: appLabel + "=" + probeApp})
	if err != nil {
		return nil, fmt.Errorf("list probe pods in %s: %w", env.Namespace, err)
	}
	sortPods(list.Items)
	return list.Items, nil
}

// probeOn is the probe pod pinned to node, or nil.
func probeOn(probes []corev1.Pod, node string) *corev1.Pod {
	for i := range probes {
		if probes[i].Spec.NodeName == node && probes[i].DeletionTimestamp == nil {
			return &probes[i]
		}
	}
	return nil
}
