package images

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// UpstreamNodeImage is the node image kind publishes for a Kubernetes
// version, when it exists: docker.io/kindest/node:<version>.
func UpstreamNodeImage(k8sVersion string) string { return "docker.io/kindest/node:" + k8sVersion }

// LoadIntoDocker loads the linux/arch image of ref from this registry into
// the Docker engine under ref, through the pull-through when the registry
// does not hold it (only the arch's layers are fetched, and kept in the
// blob cache for later runs). Nothing is loaded when Docker already has
// that image. The error says when no upstream has it.
func (r *Registry) LoadIntoDocker(ctx context.Context, ref, arch string, lg *logx.Logger) error {
	cref, err := CanonicalRef(ref)
	if err != nil {
		return err
	}
	local, err := r.localRef(cref)
	if err != nil {
		return fmt.Errorf("%s: %w", cref, err)
	}
	img, err := remote.Image(local, remote.WithContext(ctx), remote.WithTransport(r.client),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
	if err != nil {
		return fmt.Errorf("%s for linux/%s: %w", cref, arch, err)
	}
	// A single image (no index) comes back whatever its platform.
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("%s: %w", cref, err)
	}
	if cf.Architecture != arch {
		return fmt.Errorf("%s is a linux/%s image, not linux/%s", cref, cf.Architecture, arch)
	}
	return DockerLoad(ctx, cref, img, lg)
}
