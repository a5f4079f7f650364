package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
	"github.com/cnimatrix/cnimatrix/qemu"
)

func newImagesCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Build the images scenarios need, offline and cached",
	}
	var k8s, arches []string
	var cni string
	var withQEMU bool
	build := &cobra.Command{
		Use:   "build",
		Short: "Build Kubernetes, the kind node image, workload and offline CNI images",
		Long: `Build builds, from the Go module proxy and Debian packages only:
  - Kubernetes binaries (kubeadm, kubelet, kubectl, control plane) with version ldflags
  - a kind node image for this host's arch (containerd 2.x, runc, CNI plugins, crictl,
    control-plane images preloaded under the tags kubeadm lists)
  - nginx and probe workload images, multi-arch (amd64 + arm64)
  - the offline CNI (flannel) image, multi-arch
  - with --qemu: the arm64 node disk of QEMU VM workers (Debian arm64, kernel,
    initramfs, containerd, kubeadm/kubelet, the images above preloaded); its
    kernel, initrd and disk paths are printed
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
				if withQEMU {
					fmt.Fprintf(cmd.OutOrStdout(), "NODE_IMAGE=%s\n", ref)
				}
			}
			if _, err := cache.WorkloadImages(ctx, arches); err != nil {
				return err
			}
			if cni == "flannel" {
				if _, err := cache.FlannelIndex(ctx, arches); err != nil {
					return err
				}
			}
			if withQEMU {
				pre, err := engine.HarnessImages(ctx, cache, cni)
				if err != nil {
					return err
				}
				vms := qemu.NewProvider(log, cache, nil)
				for _, v := range k8s {
					d, err := vms.Disk(ctx, cluster.Spec{KubernetesVersion: v, Preload: pre})
					if err != nil {
						return err
					}
					log.Infof("qemu arm64 disk %s: kernel %s initrd %s image %s", v, d.Kernel, d.Initrd, d.Image)
					fmt.Fprintf(cmd.OutOrStdout(), "QEMU_KERNEL=%s\nQEMU_INITRD=%s\nQEMU_DISK=%s\n", d.Kernel, d.Initrd, d.Image)
				}
			}
			log.Infof("images ready in %s (workloads: %s, %s)", time.Since(t0).Truncate(100*time.Millisecond), engine.NginxImage, engine.ProbeImage)
			return nil
		},
	}
	build.Flags().StringSliceVar(&k8s, "kubernetes", nil, "Kubernetes versions (default: the catalog's default)")
	build.Flags().StringSliceVar(&arches, "arch", []string{"amd64", "arm64"}, "architectures of the multi-arch images")
	build.Flags().StringVar(&cni, "cni", "flannel", "offline CNI whose images to build (flannel, or none)")
	build.Flags().BoolVar(&withQEMU, "qemu", false, "also build the arm64 QEMU node disk, and print NODE_IMAGE, QEMU_KERNEL, QEMU_INITRD, QEMU_DISK lines on stdout")
	cmd.AddCommand(build, newImagesServeCmd(g), newImagesImportCmd(g))
	return cmd
}

func cacheDir(g *globalFlags) string {
	if g.cacheDir != "" {
		return g.cacheDir
	}
	return images.DefaultCacheDir()
}

func newImagesServeCmd(g *globalFlags) *cobra.Command {
	var listen, cni string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the harness's images from a local registry until interrupted",
		Long: `Serve starts the registry that runs use as their mirror for docker.io, quay.io,
registry.k8s.io and ghcr.io (images of upstream U under the path prefix U/), with the
workload images and the offline CNI's images pushed, and serves until interrupted.
For clusters made by hand (hack/bench-by-hand.sh) and for debugging a kept cluster.`,
		Example: `  cnimatrix images serve --listen 172.18.0.1:5000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := logx.Stderr(g.verbose)
			cache, err := images.NewCache(cacheDir(g), log)
			if err != nil {
				return err
			}
			want, err := engine.HarnessImages(ctx, cache, cni)
			if err != nil {
				return err
			}
			reg, err := images.StartRegistry(ctx, listen, log)
			if err != nil {
				return err
			}
			defer reg.Close()
			for ref, idx := range want {
				if err := reg.Push(ctx, ref, idx); err != nil {
					return fmt.Errorf("push %s: %w", ref, err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "REGISTRY=%s\n", reg.Addr())
			log.Infof("serving %d images at %s; interrupt to stop", len(want), reg.Addr())
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on (host:port; port 0 picks one)")
	cmd.Flags().StringVar(&cni, "cni", "flannel", "offline CNI whose images to serve (flannel, or none)")
	return cmd
}

func newImagesImportCmd(g *globalFlags) *cobra.Command {
	var list bool
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Load images from docker save tarballs or OCI layouts for every run (air-gapped use)",
		Long: `Import stores images in the cache (<cache>/imported); every later run pushes them
into its registry under the names they carry, so the nodes pull them as if from
docker.io, quay.io, registry.k8s.io or ghcr.io. For air-gapped users: export the
released images where there is internet, carry the files over, import them.

Each FILE is one of:
  - an OCI image layout directory, or a tar / tar.gz of one (docker save of Docker
    25+, skopeo copy ... oci-archive:FILE:NAME, crane pull --format=oci): multi-arch
    indexes are kept whole and digests unchanged; each image needs its full name in
    index.json (annotation io.containerd.image.name or org.opencontainers.image.ref.name)
  - a docker save tarball of the older format (manifest.json): one single-arch image
    per name in RepoTags; its layers are compressed on import, so its digest is new

An image imported again under the same name replaces the earlier one. The arch
audit (preflight, cnimatrix audit against a run's registry) reads the imported
images themselves: index platforms and the ELF headers of every layer.
An image the harness builds under the same name (cni.calico.images: source)
replaces the imported one for that run. To forget every import, delete
<cache>/imported.`,
		Example: `  skopeo copy --all docker://quay.io/calico/node:v3.32.1 oci-archive:node.tar:quay.io/calico/node:v3.32.1
  cnimatrix images import node.tar cni.tar kube-controllers.tar
  cnimatrix images import --list`,
		Args: func(cmd *cobra.Command, args []string) error {
			if list != (len(args) == 0) {
				return badInput("images import takes FILE arguments, or --list alone")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			log := logx.Stderr(g.verbose)
			cache, err := images.NewCache(cacheDir(g), log)
			if err != nil {
				return err
			}
			s, err := cache.ImportedStore()
			if err != nil {
				return err
			}
			var got []images.Imported
			if list {
				got, err = images.ListImported(s)
			} else {
				t0 := time.Now()
				got, err = images.ImportFiles(cmd.Context(), s, args)
				if err == nil {
					log.Infof("imported %d images in %s", len(got), time.Since(t0).Truncate(time.Millisecond))
				}
			}
			if err != nil {
				if errors.Is(err, os.ErrNotExist) || !list {
					return usageError{err}
				}
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "IMAGE\tPLATFORMS\tDIGEST\tFROM")
			for _, im := range got {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", im.Ref, strings.Join(im.Platforms, ","), im.Digest, im.From)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&list, "list", false, "list the imported images instead")
	return cmd
}
