package engine

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// operatorInstall reports whether s installs Calico with its operator.
func operatorInstall(cni *scenario.CNISpec) bool {
	return cni.Calico != nil && cni.Calico.Install == calico.InstallOperator
}

// waitOperator waits, after the operator's own Deployment is ready, for
// what the operator deploys (calico.WaitOperator).
func (e *Engine) waitOperator(ctx context.Context, cfg *rest.Config, client kubernetes.Interface, log *logx.Logger) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	return calico.WaitOperator(ctx, dyn, client, log)
}

// operatorEvidence is the TigeraStatus line and, when the operator got as
// far as deploying, the workloads' report.
func operatorEvidence(err error) []matrix.Evidence {
	var oe *calico.OperatorError
	if !errors.As(err, &oe) {
		return nil
	}
	ev := []matrix.Evidence{{Check: "cni-ready", Target: "tigerastatus calico", OK: oe.Workloads != nil, Detail: oe.Status}}
	if oe.Workloads != nil {
		ev = append(ev, evidenceFromNotReady(oe.Workloads, "cni-ready")...)
	}
	return ev
}

// operatorNamespaces are the namespaces an operator install's Calico lives
// in, made by the operator rather than by the applied manifest.
func operatorNamespaces(cni *scenario.CNISpec) []string {
	if !operatorInstall(cni) {
		return nil
	}
	return []string{calico.OperatorNamespace, "calico-apiserver"}
}
