package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/apicompat"
	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/manifestcache"
	"github.com/cnimatrix/cnimatrix/internal/repo"
)

// catalogSource is where the catalog commands read the Calico catalog: a
// file given with --file, else the embedded copy.
type catalogSource struct {
	file string
}

func (s *catalogSource) load() (*catalog.Calico, []byte, error) {
	if s.file == "" {
		c, err := catalog.LoadCalico()
		return c, nil, err
	}
	data, err := os.ReadFile(s.file)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("calico catalog: %w", err)}
	}
	c, err := catalog.ParseCalico(data)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("%s: %w", s.file, err)}
	}
	return c, data, nil
}

// catalogHTTPClient downloads the catalog's files; nil is manifestcache's
// default. Tests point it at an httptest TLS server's client, since the
// catalog accepts https URLs only.
var catalogHTTPClient *http.Client

func manifestCache(g *globalFlags) *manifestcache.Cache {
	dir := ""
	if g.cacheDir != "" {
		dir = filepath.Join(g.cacheDir, "manifests")
	}
	c := manifestcache.New(dir)
	c.Client = catalogHTTPClient
	c.Mirror = os.Getenv(manifestcache.MirrorEnv)
	return c
}

func newCatalogCmd(g *globalFlags) *cobra.Command {
	src := &catalogSource{}
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "List the Calico catalog: versions, Kubernetes support, arm64 notes, pins",
		Long: `Catalog lists the Calico versions cnimatrix knows (internal/catalog/calico.yaml,
embedded in the binary): the Kubernetes minors each release was tested
against, how its images reach arm64 nodes, the upstream arm64 issues that hit
it, and how many of its downloaded files have a pinned sha256.

A run applies only pinned manifests: 'catalog update --write' pins them (it
needs the internet) and 'catalog fetch' puts pinned files into the manifest
cache, after which runs work offline.`,
		Example: `  cnimatrix catalog
  cnimatrix catalog update
  cnimatrix catalog update --write
  cnimatrix catalog fetch v3.32.1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := src.load()
			if err != nil {
				return err
			}
			return printCatalog(cmd.OutOrStdout(), c)
		},
	}
	cmd.PersistentFlags().StringVar(&src.file, "file", "", "read the Calico catalog from this file instead of the embedded copy")
	cmd.AddCommand(newCatalogUpdateCmd(g, src), newCatalogFetchCmd(g, src))
	return cmd
}

func printCatalog(w io.Writer, c *catalog.Calico) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tKUBERNETES\tPINNED\tARM64")
	for _, v := range c.Versions {
		pinned := 0
		for _, f := range v.Files() {
			if f.Pinned() {
				pinned++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", v.Version, v.KubernetesRange(), pinned, len(v.Files()), v.Arm64)
		for _, is := range v.Arm64Issues {
			fixed := ""
			if is.FixedIn != "" {
				fixed = " (fixed in " + is.FixedIn + ")"
			}
			fmt.Fprintf(tw, "\t\t\t  %s%s: %s\n", is.Ref, fixed, is.Summary)
		}
		if len(v.RemovedAPIs) > 0 {
			var uses []string
			for _, a := range v.RemovedAPIs {
				if r, ok := apicompat.Lookup(a.APIVersion, a.Kind); ok {
					uses = append(uses, r.Reason())
				}
			}
			fmt.Fprintf(tw, "\t\t\t  uses removed APIs: %s\n", strings.Join(uses, ", "))
		}
	}
	return tw.Flush()
}

func newCatalogUpdateCmd(g *globalFlags, src *catalogSource) *cobra.Command {
	var write, lockPins bool
	cmd := &cobra.Command{
		Use:   "update [VERSION...]",
		Short: "Download every file of the catalog, show how the sha256 pins would change; --write rewrites them",
		Long: `Update downloads each file of the Calico catalog (all versions, or those
named), into the manifest cache, and prints per file: its pin, the sum of
the download, and whether it is new, unchanged or CHANGED. For calico.yaml
files it also compares the images the manifest uses with the catalog's list,
and the Kubernetes APIs they use that Kubernetes removed with the version's
removedAPIs (from which runs skip cells without the manifest).

A changed pin is never taken silently: update only reports it, and --write
rewrites the sha256 fields of the catalog file (--file, default
internal/catalog/calico.yaml of the source tree), leaving everything else in
the file as it is. Rebuild cnimatrix afterwards: the binary embeds the catalog.

--lock, without a source tree or a rebuild, trusts the files the catalog does
not pin on first use: their sums go into your lock file ($CNIMATRIX_PINS, or
pins.lock in your config directory, e.g. ~/.config/cnimatrix/pins.lock). Runs
then apply those files only with those bytes and record them as
"trusted-on-first-use" in the matrix, not "pinned"; a later download that
differs from the lock is refused, never re-trusted (delete its line to trust
the new file).

It needs the internet; each file that cannot be fetched is listed with its
URL and error, and the command fails.`,
		Example: `  cnimatrix catalog update
  cnimatrix catalog update v3.32.1 --write
  cnimatrix catalog update v3.23.5 --lock`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if write && src.file == "" {
				root, err := repo.Root()
				if err != nil {
					return usageError{fmt.Errorf("--write rewrites the catalog in the source tree: %w (or give --file)", err)}
				}
				src.file = filepath.Join(root, catalog.CalicoFile)
			}
			c, data, err := src.load()
			if err != nil {
				return err
			}
			versions, err := pickVersions(c, args)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			cache := manifestCache(g)
			lock, err := catalog.LoadLock(catalog.DefaultLockPath())
			if err != nil {
				return usageError{err}
			}
			pins := map[string]string{}
			var failed []error
			changed, trusted := 0, 0
			for _, v := range versions {
				var manifests []string // downloaded, for the removedAPIs check
				for _, f := range v.Files() {
					r, err := cache.Fetch(cmd.Context(), f.URL, "")
					if err != nil {
						failed = append(failed, fmt.Errorf("%s %s: %w", v.Version, f.Name(), err))
						fmt.Fprintf(out, "%s %s: FAILED: %v\n", v.Version, f.Name(), err)
						continue
					}
					locked := lock.Pins[f.URL]
					switch {
					case f.SHA256 == "" && locked == r.SHA256:
						fmt.Fprintf(out, "%s %s: unchanged since first use %s (%s)\n", v.Version, f.Name(), r.SHA256, lock.Path)
					case f.SHA256 == "" && locked != "":
						failed = append(failed, fmt.Errorf("%s %s: changed since it was trusted on first use: locked %s, now %s (%s); review it, then delete its line from %s to trust it again", v.Version, f.Name(), locked, r.SHA256, f.URL, lock.Path))
						fmt.Fprintf(out, "%s %s: CHANGED since first use: locked %s, now %s: refused\n", v.Version, f.Name(), locked, r.SHA256)
					case f.SHA256 == "" && lockPins:
						trusted++
						lock.Pins[f.URL] = r.SHA256
						fmt.Fprintf(out, "%s %s: trusted on first use %s\n", v.Version, f.Name(), r.SHA256)
					}
					switch {
					case f.SHA256 == r.SHA256:
						fmt.Fprintf(out, "%s %s: unchanged %s\n", v.Version, f.Name(), r.SHA256)
					case f.SHA256 == "":
						changed++
						pins[f.URL] = r.SHA256
						fmt.Fprintf(out, "%s %s: new pin %s\n", v.Version, f.Name(), r.SHA256)
					default:
						changed++
						pins[f.URL] = r.SHA256
						fmt.Fprintf(out, "%s %s: CHANGED upstream: pinned %s, now %s (%s)\n", v.Version, f.Name(), f.SHA256, r.SHA256, f.URL)
					}
					if slices.Contains(v.Manifests, *f) {
						manifests = append(manifests, r.Path)
					}
				}
				if objs := parseFetched(out, v, manifests); objs != nil {
					if d := imageDiff(objs, v.Images); d != "" {
						fmt.Fprintf(out, "%s: images differ from the catalog: %s\n", v.Version, d)
					}
					checkRemovedAPIs(out, v, objs)
				}
			}
			if trusted > 0 {
				if err := lock.Write(); err != nil {
					return err
				}
				fmt.Fprintf(out, "wrote %d trust-on-first-use pins to %s\n", trusted, lock.Path)
			}
			switch {
			case changed == 0 && len(failed) == 0:
				fmt.Fprintln(out, "no pin to change")
			case changed == 0:
			case !write:
				fmt.Fprintf(out, "%d pins would change; rerun with --write to rewrite them\n", changed)
			default:
				nd, err := catalog.RewriteCalicoPins(data, pins)
				if err != nil {
					return err
				}
				if err := os.WriteFile(src.file, nd, 0o644); err != nil {
					return fmt.Errorf("write catalog: %w", err)
				}
				fmt.Fprintf(out, "wrote %d pins to %s; rebuild cnimatrix to embed them\n", len(pins), src.file)
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d of the catalog's files could not be fetched (this needs the internet):\n%w", len(failed), errors.Join(failed...))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&write, "write", false, "rewrite the sha256 pins in the catalog file")
	cmd.Flags().BoolVar(&lockPins, "lock", false, "trust files the catalog does not pin on first use: write their sums to your pins lock ($"+catalog.LockEnv+")")
	return cmd
}

// parseFetched parses the downloaded manifests of v (paths), once for every
// check of them; nil when one was not fetched (reported already) or does
// not parse (reported here).
func parseFetched(w io.Writer, v *catalog.CalicoVersion, paths []string) []*unstructured.Unstructured {
	if len(paths) != len(v.Manifests) {
		return nil
	}
	var objs []*unstructured.Unstructured
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err == nil {
			var o []*unstructured.Unstructured
			o, err = install.ParseManifest(data)
			objs = append(objs, o...)
		}
		if err != nil {
			fmt.Fprintf(w, "%s: manifests not checked: %v\n", v.Version, err)
			return nil
		}
	}
	return objs
}

// imageDiff compares the images the version's manifests use, all files
// together, with the catalog's list for the version; "" when they agree.
func imageDiff(objs []*unstructured.Unstructured, want []string) string {
	got := calico.Images(objs)
	var extra, missing []string
	for _, im := range got {
		if !slices.Contains(want, im) {
			extra = append(extra, im)
		}
	}
	for _, im := range want {
		if !slices.Contains(got, im) {
			missing = append(missing, im)
		}
	}
	return apicompat.DescribeDiff(extra, missing)
}

// checkRemovedAPIs prints how the APIs Kubernetes removed that the
// version's manifests use differ from the catalog's removedAPIs, from which
// runs skip cells without the manifest: a difference means the catalog
// skips what could run, or runs what cannot.
func checkRemovedAPIs(w io.Writer, v *catalog.CalicoVersion, objs []*unstructured.Unstructured) {
	if d := apicompat.Diff(apicompat.Used(objs), v.RemovedAPIs); d != "" {
		fmt.Fprintf(w, "%s: removed Kubernetes APIs differ from the catalog's removedAPIs: %s\n", v.Version, d)
	}
}

func pickVersions(c *catalog.Calico, names []string) ([]*catalog.CalicoVersion, error) {
	if len(names) == 0 {
		out := make([]*catalog.CalicoVersion, len(c.Versions))
		for i := range c.Versions {
			out[i] = &c.Versions[i]
		}
		return out, nil
	}
	var out []*catalog.CalicoVersion
	for _, n := range names {
		v, err := c.Version(n)
		if err != nil {
			return nil, usageError{err}
		}
		out = append(out, v)
	}
	return out, nil
}

func newCatalogFetchCmd(g *globalFlags, src *catalogSource) *cobra.Command {
	return &cobra.Command{
		Use:   "fetch [VERSION...]",
		Short: "Download the catalog's files into the manifest cache, checked against their pins",
		Long: `Fetch puts the files of the named Calico versions (default all) into the
manifest cache, so runs can use them offline. A pinned file already cached
is not downloaded again; a download whose sha256 differs from its pin is an
error and is not cached. Unpinned files are downloaded with a warning, but a
run still refuses them until they are pinned ('catalog update --write') or
trusted on first use ('catalog update --lock'); trusted files are fetched
against the lock's sums.

Air-gapped: set $CNIMATRIX_MANIFEST_MIRROR to a base URL that serves the
files under their host and path (e.g. http://mirror.local/files, serving
http://mirror.local/files/raw.githubusercontent.com/projectcalico/...);
downloads go there and are checked against the same pins. Calico's images
go to a mirror with cni.calico.registry.`,
		Example: `  cnimatrix catalog fetch v3.32.1 v3.31.7`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := src.load()
			if err != nil {
				return err
			}
			versions, err := pickVersions(c, args)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			cache := manifestCache(g)
			lock, err := catalog.LoadLock(catalog.DefaultLockPath())
			if err != nil {
				return usageError{err}
			}
			var failed []error
			for _, v := range versions {
				var manifests []string
				for _, f := range v.Files() {
					pin, _ := lock.Pin(*f)
					r, err := cache.Fetch(cmd.Context(), f.URL, pin)
					if err == nil && slices.Contains(v.Manifests, *f) {
						manifests = append(manifests, r.Path)
					}
					switch {
					case err != nil:
						failed = append(failed, fmt.Errorf("%s %s: %w", v.Version, f.Name(), err))
						fmt.Fprintf(out, "%s %s: FAILED: %v\n", v.Version, f.Name(), err)
					case r.Warning != "":
						fmt.Fprintf(out, "%s %s: %s\n", v.Version, f.Name(), r.Warning)
					case r.FromCache:
						fmt.Fprintf(out, "%s %s: cached %s\n", v.Version, f.Name(), r.Path)
					default:
						fmt.Fprintf(out, "%s %s: downloaded %s\n", v.Version, f.Name(), r.Path)
					}
				}
				if objs := parseFetched(out, v, manifests); objs != nil {
					checkRemovedAPIs(out, v, objs)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d files not fetched:\n%w", len(failed), errors.Join(failed...))
			}
			return nil
		},
	}
}
