package e2e

import (
	"archive/tar"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/repo"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// Image sources a user brings: the flannel image the suite built is
// exported as an OCI layout tarball (what `docker save` of Docker 25+ or
// skopeo writes), imported, and served to a cell's nodes under a name
// nothing in the harness builds; and the same image, held only by a plain
// registry the test starts as ghcr.io's upstream, is pulled through by the
// run's registry when the nodes ask. Each cell must pass on that image
// alone; the pull-through must fetch only the layers of the cell's arch.
// The engine is one of the spec's own (its imported store and upstream
// are the test's); results go to <out>/image-sources.json.
func imageSourcesSpec() {
	It("image sources: a CNI image imported from an OCI layout tarball, and one pulled through from an upstream registry, each run a passing cell", Label("images"), func(ctx SpecContext) {
		if reuseScenario == nil {
			Skip("CNIMATRIX_SCENARIOS is set: the image-sources self-test runs with the default scenarios only")
		}
		root, err := repo.Root()
		Expect(err).NotTo(HaveOccurred())
		lg := logx.New(GinkgoWriter, os.Getenv("CNIMATRIX_VERBOSE") != "")
		cache, err := images.NewCache(images.DefaultCacheDir(), lg)
		Expect(err).NotTo(HaveOccurred())
		flannel, err := cache.FlannelIndex(ctx, engine.ImageArches)
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()

		By("the flannel index exported as an OCI layout tarball, and imported")
		const importedRef = "quay.io/cnimatrix-import/flannel:v0.28.10"
		lay, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
		Expect(err).NotTo(HaveOccurred())
		Expect(lay.AppendIndex(flannel, layout.WithAnnotations(map[string]string{
			"io.containerd.image.name": importedRef, "org.opencontainers.image.ref.name": "v0.28.10",
		}))).To(Succeed())
		archive := filepath.Join(dir, "flannel.tar")
		tarDir(filepath.Join(dir, "layout"), archive)
		store, err := images.OpenStore(filepath.Join(dir, "imported"))
		Expect(err).NotTo(HaveOccurred())
		t0 := time.Now()
		got, err := images.ImportFiles(ctx, store, []string{archive})
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("import of %s: %s\n", archive, time.Since(t0).Truncate(time.Millisecond))
		want, _ := flannel.Digest()
		Expect(got).To(HaveLen(1))
		Expect(got[0].Ref).To(Equal(importedRef))
		Expect(got[0].Digest).To(Equal(want.String()), "an OCI layout keeps the index's digest")

		By("flannel with one more layer per arch, held only by a plain registry standing in for ghcr.io")
		// The extra layer is new in every run: the flannel layers are in
		// the run's registry already (the harness pushes them), and a blob
		// cached by an earlier run is not fetched again.
		upstreamIdx, extra := withRunLayer(flannel)
		up := &countingRegistry{}
		Expect(os.MkdirAll(filepath.Join(dir, "upstream-blobs"), 0o755)).To(Succeed())
		up.srv = httptest.NewServer(up.handler(filepath.Join(dir, "upstream-blobs")))
		DeferCleanup(up.srv.Close)
		upHost := strings.TrimPrefix(up.srv.URL, "http://")
		upRef, err := name.ParseReference(upHost+"/cnimatrix-upstream/flannel:v0.28.10", name.Insecure)
		Expect(err).NotTo(HaveOccurred())
		Expect(remote.WriteIndex(upRef, upstreamIdx)).To(Succeed())

		By("the node image built here, held by the same registry as docker.io's kindest/node, for --upstream-node-images")
		// kind publishes no image of a Kubernetes built here, and nothing
		// here reaches docker.io: the path (pull through, docker load, kind
		// booting an image not built by cnimatrix, with the registry
		// config patch) is what is tested, not kind's own image.
		cat, err := catalog.Load()
		Expect(err).NotTo(HaveOccurred())
		k8s := cat.DefaultKubernetes() // the two scenarios' version
		nodeImg, err := cache.NodeImageContent(ctx, k8s, runtime.GOARCH)
		Expect(err).NotTo(HaveOccurred())
		nodeRef, err := name.ParseReference(upHost+"/kindest/node:"+k8s, name.Insecure)
		Expect(err).NotTo(HaveOccurred())
		t0 = time.Now()
		Expect(remote.Write(nodeRef, nodeImg)).To(Succeed())
		GinkgoWriter.Printf("node image pushed to the fake upstream in %s\n", time.Since(t0).Truncate(time.Millisecond))
		upstreamNode := images.UpstreamNodeImage(k8s)
		DeferCleanup(func(ctx SpecContext) {
			// Untag only (the image stays as cnimatrix/kind-node): no
			// kindest/node tag of ours is left in the host's Docker.
			_ = exec.CommandContext(ctx, "docker", "image", "rm", upstreamNode).Run()
		})
		_ = exec.CommandContext(ctx, "docker", "image", "rm", upstreamNode).Run() // a run interrupted before its cleanup
		up.reset()

		e2, err := engine.Start(ctx, engine.Options{
			Log: lg, WorkDir: filepath.Join(outDir, "clusters"), ArtifactsDir: artifactsDir(), Preflight: preflight,
			ImportedDir:        filepath.Join(dir, "imported"),
			PullThrough:        images.Upstreams{"ghcr.io": up.srv.URL, "docker.io": up.srv.URL},
			UpstreamNodeImages: true,
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(outDir, "run-ids", fmt.Sprintf("%d-images", GinkgoParallelProcess())), []byte(e2.RunID()), 0o644)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(e2.Close(ctx)).To(Succeed()) }, NodeTimeout(5*time.Minute))
		Expect(e2.Imported()).To(Equal([]string{importedRef}))

		results := map[string]matrix.Result{}
		DeferCleanup(func() { writeJSON(filepath.Join(outDir, "image-sources.json"), results) })
		for _, src := range []string{"import", "pull-through"} {
			By("a cell on the " + src + "ed image")
			s, err := scenario.Load(filepath.Join(root, "e2e", "testdata", "image-"+src+".yaml"), cat, root)
			Expect(err).NotTo(HaveOccurred())
			t0 := time.Now()
			Expect(e2.Prepare(ctx, s)).To(Succeed())
			GinkgoWriter.Printf("prepare (%s): %s\n", src, time.Since(t0).Truncate(time.Millisecond))
			r := e2.RunCell(ctx, s, onlyCell(s, "amd64"))
			results[src] = r
			GinkgoWriter.Printf("%s: %s %s %s (%s)\n", r.ID, r.Outcome, r.RootCause, r.Reason, phaseTimes(r))
			Expect(r.Outcome).To(Equal(matrix.Pass), r.Reason)
			ref := s.CNI.ImageOverrides[images.FlannelImageRef]
			Expect(evidenceText(r)).To(ContainSubstring(ref), "the CNI's pods ran the %sed image", src)
			want := matrix.ImageSource{Image: ref, Source: images.OriginImported, Detail: archive}
			if src == "pull-through" {
				want = matrix.ImageSource{Image: ref, Source: images.OriginPulledThrough, Detail: up.srv.URL}
			}
			Expect(r.ImageSources).To(ContainElement(want), "the matrix says where the cell's CNI image came from")
			Expect(r.NodeImage).To(HaveValue(Equal(matrix.ImageSource{Image: upstreamNode, Source: images.OriginPulledThrough, Detail: up.srv.URL})),
				"the kind nodes booted the node image pulled through, and the matrix says so")
		}

		By("the pull-through fetched the index and, of the blobs the run lacked, only the amd64 image's, each once")
		Expect(e2.PulledThrough()).To(ContainElement(HavePrefix("ghcr.io/cnimatrix-upstream/flannel:v0.28.10 from " + up.srv.URL)))
		fetched := up.blobGets()
		GinkgoWriter.Printf("blobs fetched from the upstream: %v\n", fetched)
		Expect(fetched).To(ContainElements(extra["amd64"]), "the amd64 image's new layer and config")
		for _, b := range extra["arm64"] {
			Expect(fetched).NotTo(ContainElement(b), "arm64 blob fetched though no arm64 node asked")
		}
		sorted := slices.Sorted(slices.Values(fetched))
		Expect(slices.Compact(slices.Clone(sorted))).To(HaveLen(len(sorted)), "a blob fetched twice from the upstream")
	}, SpecTimeout(20*time.Minute))
}

// countingRegistry is a plain registry that remembers the blobs it served.
type countingRegistry struct {
	srv  *httptest.Server
	mu   sync.Mutex
	gets []string
}

// handler serves blobs from blobDir: a node image is too big for memory.
func (c *countingRegistry) handler(blobDir string) http.Handler {
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithBlobHandler(registry.NewDiskBlobHandler(blobDir)))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if i := strings.Index(req.URL.Path, "/blobs/sha256:"); i >= 0 && req.Method == http.MethodGet {
			c.mu.Lock()
			c.gets = append(c.gets, req.URL.Path[i+len("/blobs/"):])
			c.mu.Unlock()
		}
		h.ServeHTTP(w, req)
	})
}

func (c *countingRegistry) reset() {
	c.mu.Lock()
	c.gets = nil
	c.mu.Unlock()
}

func (c *countingRegistry) blobGets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.gets)
}

// withRunLayer is idx with a layer of this run's own on every image, and
// per arch the digests of that layer and of the new config: blobs no
// registry or cache here holds yet.
func withRunLayer(idx v1.ImageIndex) (v1.ImageIndex, map[string][]string) {
	extra := map[string][]string{}
	var imgs []v1.Image
	for _, arch := range engine.ImageArches {
		img, err := images.ImageForPlatform(idx, arch)
		Expect(err).NotTo(HaveOccurred())
		l, err := images.LayerFromFiles(images.LayerFiles{"etc/cnimatrix-upstream": {Content: []byte(arch + " " + time.Now().Format(time.RFC3339Nano) + "\n")}})
		Expect(err).NotTo(HaveOccurred())
		img, err = mutate.AppendLayers(img, l)
		Expect(err).NotTo(HaveOccurred())
		ld, err := l.Digest()
		Expect(err).NotTo(HaveOccurred())
		cn, err := img.ConfigName()
		Expect(err).NotTo(HaveOccurred())
		extra[arch] = []string{ld.String(), cn.String()}
		imgs = append(imgs, img)
	}
	out, err := images.NewIndex(imgs...)
	Expect(err).NotTo(HaveOccurred())
	return out, extra
}

// evidenceText is every phase's evidence of r, one line each.
func evidenceText(r matrix.Result) string {
	var b strings.Builder
	for _, p := range r.Phases {
		for _, e := range p.Evidence {
			fmt.Fprintf(&b, "%s %s %s %s %s\n", p.Name, e.Check, e.Source, e.Target, e.Detail)
		}
	}
	return b.String()
}

// phaseTimes is "cluster 31s, cni-ready 12s, ...".
func phaseTimes(r matrix.Result) string {
	var parts []string
	for _, p := range r.Phases {
		if !strings.HasPrefix(p.Name, "check:") {
			parts = append(parts, p.Name+" "+p.Duration().Truncate(100*time.Millisecond).String())
		}
	}
	return strings.Join(parts, ", ")
}

// tarDir writes the files under dir into a tar at out.
func tarDir(dir, out string) {
	f, err := os.Create(out)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	tw := tar.NewWriter(f)
	Expect(filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(dir, p)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})).To(Succeed())
	Expect(tw.Close()).To(Succeed())
}
