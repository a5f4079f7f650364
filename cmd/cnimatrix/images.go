package main

import (
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

func newImagesCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Build the images scenarios need, offline and cached",
	}
	var k8s, arches []string
	var cni string
	build := &cobra.Command{
		Use:   "build",
		Short: "Build Kubernetes, the kind node image, workload and offline CNI images",
		Long: `Build builds, from the Go module proxy and Debian packages only:
  - Kubernetes binaries (kubeadm, kubelet, kubectl, control plane) with version ldflags
  - a kind node image for this host's arch (containerd 2.x, runc, CNI plugins, crictl,
    control-plane images preloaded under the tags kubeadm lists)
  - nginx and probe workload images, multi-arch (amd64 + arm64)
  - the offline CNI (flannel) image, multi-arch
Everything is cached by content; a second run with nothing changed takes seconds.`,
		Example: `  cnimatrix images build
  cnimatrix images build --kubernetes v1.36.3 --arch amd64,arm64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cat, err := catalog.Load()
			if err != nil {
				return err
			}
			if len(k8s) == 0 {
				k8s = []string{cat.DefaultKubernetes()}
			}
			for _, v := range k8s {
				if !cat.HasKubernetes(v) {
					return badInput("unknown Kubernetes version %q (known: %s)", v, strings.Join(cat.KubernetesVersions(), ", "))
				}
			}
			for _, a := range arches {
				if a != "amd64" && a != "arm64" {
					return badInput("unknown arch %q (known: amd64, arm64)", a)
				}
			}
			log := logx.Stderr(g.verbose)
			cache, err := images.NewCache(cacheDir(g), log)
			if err != nil {
				return err
			}
			t0 := time.Now()
			for _, v := range k8s {
				ref, err := cache.NodeImage(ctx, v, scenario.HostArch())
				if err != nil {
					return err
				}
				log.Infof("node image %s", ref)
			}
			if _, err := cache.WorkloadImages(ctx, arches); err != nil {
				return err
			}
			if cni == "flannel" {
				if _, err := cache.FlannelIndex(ctx, arches); err != nil {
					return err
				}
			}
			log.Infof("images ready in %s (workloads: %s, %s)", time.Since(t0).Truncate(100*time.Millisecond), engine.NginxImage, engine.ProbeImage)
			return nil
		},
	}
	build.Flags().StringSliceVar(&k8s, "kubernetes", nil, "Kubernetes versions (default: the catalog's default)")
	build.Flags().StringSliceVar(&arches, "arch", []string{"amd64", "arm64"}, "architectures of the multi-arch images")
	build.Flags().StringVar(&cni, "cni", "flannel", "offline CNI whose images to build (flannel, or none)")
	cmd.AddCommand(build)
	return cmd
}

func cacheDir(g *globalFlags) string {
	if g.cacheDir != "" {
		return g.cacheDir
	}
	return images.DefaultCacheDir()
}
