package kind

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// GC deletes every cluster cnimatrix created (name prefix) and every Docker
// network carrying cnimatrix's label that no container uses any more. It is
// what a person runs after --keep, or after a run that was killed.
func GC(ctx context.Context, log *logx.Logger) error {
	p := New(log)
	names, err := p.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		done := log.Phase("delete cluster " + n)
		err := p.Delete(ctx, n)
		done(err)
		errs = append(errs, err)
	}
	out, err := docker(ctx, "network", "ls", "--filter", "label="+cluster.Label, "--format", "{{.Name}}")
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list networks: %w", err))...)
	}
	for _, n := range strings.Fields(string(out)) {
		done := log.Phase("delete network " + n)
		err := DeleteNetwork(ctx, n)
		done(err)
		errs = append(errs, err)
	}
	if len(names) == 0 && len(strings.Fields(string(out))) == 0 {
		log.Infof("nothing to clean up")
	}
	return errors.Join(errs...)
}
