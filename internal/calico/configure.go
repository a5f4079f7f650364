package calico

import "fmt"

// Options are a scenario's settings for a calico.yaml install.
type Options struct {
	// PodCIDR is the cluster's podSubnet: the pool must equal it.
	PodCIDR string
	// Encapsulation of the default pool; "" keeps the manifest's.
	Encapsulation Encapsulation
	// MTU of the pod interfaces; 0 keeps the manifest's.
	MTU int
	// Registry all Calico images are pulled from ("docker.io", "quay.io"
	// or a mirror host[:port][/path]); "" keeps the manifest's.
	Registry string
	// ImagePath replaces the path of Calico's images before their name,
	// as the operator's Installation spec.imagePath does: with registry
	// mirror.local:5000 and imagePath mirror/calico, calico/node:v3.28.0
	// becomes mirror.local:5000/mirror/calico/node:v3.28.0; "" keeps it.
	ImagePath string
	// Install is InstallManifest ("" too) or InstallOperator.
	Install string
}

// Configure applies o to a parsed calico.yaml, every edit or none said
// why: the order is the one a person editing by hand would follow, and
// each error names the option that the manifest cannot take.
func Configure(objs []*Object, o Options) error {
	if o.PodCIDR != "" {
		if err := SetPodCIDR(objs, o.PodCIDR); err != nil {
			return err
		}
	}
	if o.Encapsulation != "" {
		if err := SetEncapsulation(objs, o.Encapsulation); err != nil {
			return err
		}
	}
	if o.MTU != 0 {
		if err := SetMTU(objs, o.MTU); err != nil {
			return err
		}
	}
	if o.Registry != "" {
		if _, err := SetRegistry(objs, o.Registry, CalicoImages); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
	}
	// after the registry: SetRegistry knows Calico's images by their path
	if o.ImagePath != "" {
		if _, err := SetImagePath(objs, o.ImagePath); err != nil {
			return fmt.Errorf("imagePath: %w", err)
		}
	}
	return nil
}
