package engine

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
)

// stepAccess writes the cluster's kubeconfig and makes its clients, and
// scales the cell's waits for emulated nodes: they are slower at
// everything, by the measured slowdown rather than numbers tuned by hand.
var stepAccess = Step{Name: "cluster-access", Infra: true, Run: func(ctx context.Context, c *cellRun) StepResult {
	cl := c.cl
	c.result.Fidelity = fidelity(cl)
	if cl.Emulated {
		f := waitScale(cl.Slowdown)
		c.timeouts.CNIReady = time.Duration(float64(c.timeouts.CNIReady) * f)
		c.timeouts.Checks = time.Duration(float64(c.timeouts.Checks) * f)
		c.log.Infof("emulated nodes: CPU slowdown %.1fx, waits scaled by %.1f (cni-ready %s, checks %s, exec round trip %s)", cl.Slowdown, f, c.timeouts.CNIReady.Round(time.Second), c.timeouts.Checks.Round(time.Second), c.execSlack().Round(time.Second))
	}
	cfg, err := cl.RESTConfig()
	if err == nil {
		err = os.WriteFile(filepath.Join(c.workDir, "kubeconfig"), cl.Kubeconfig, 0o600)
	}
	if err != nil {
		return StepResult{Err: err}
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return StepResult{Err: err}
	}
	c.cfg, c.client = cfg, client
	return StepResult{}
}}
