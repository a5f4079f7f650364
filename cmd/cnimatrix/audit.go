package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// maxManifestBytes bounds a manifest read from a URL or standard input;
// Calico's largest manifests are a few hundred kilobytes.
const maxManifestBytes = 64 << 20

func newAuditCmd(g *globalFlags) *cobra.Command {
	var (
		arch     string
		asJSON   bool
		insecure bool
		mirrors  []string
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "audit (MANIFEST.yaml | URL | -)",
		Short: "Check that every image of a manifest has binaries for an arch",
		Long: `Audit lists every image of every container and init container of the
workloads in a manifest (Pod, DaemonSet, Deployment, StatefulSet, ReplicaSet,
Job, CronJob), resolves each in its registry and, for the linux/<arch>
variant, reads the ELF header of the entrypoint (or the container's command)
and of the executables in its bin directories, streaming the layers.

Findings:
  ok          a linux/<arch> variant exists and its executables are <arch>
  no-variant  the index has no linux/<arch> entry, or the image is a
              single-platform image of another arch
  mislabeled  the linux/<arch> variant holds executables of another machine
              (named, with their machine)
  error       the image could not be checked (registry unreachable, 401,
              500, unknown tag): never ok

The manifest is a file, an http(s) URL, or "-" for standard input.
--mirror UPSTREAM=URL fetches the images of registry UPSTREAM from URL
instead: docker.io=http://127.0.0.1:5000/docker.io reads
docker.io/calico/node:v3.2 as 127.0.0.1:5000/docker.io/calico/node:v3.2;
'*=http://127.0.0.1:5000' does that for every upstream (the layout of the
cnimatrix registry). Images are read anonymously.

Exit status: 0 all ok, 1 some finding not ok (including unreachable
registries), 2 bad input (unreadable or non-YAML manifest, unparsable image
reference, bad flags).`,
		Example: `  cnimatrix audit calico.yaml
  cnimatrix audit https://example.test/manifests/calico.yaml --arch arm64 --json
  cnimatrix audit calico.yaml --mirror '*=http://127.0.0.1:5000'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return badInput("audit takes one manifest (file, URL or -), got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			mm, err := parseMirrorFlags(mirrors)
			if err != nil {
				return err
			}
			if timeout <= 0 {
				return badInput("--timeout must be positive")
			}
			data, err := readManifest(cmd, args[0])
			if err != nil {
				return usageError{err}
			}
			imgs, err := archaudit.ManifestImages(data)
			if err != nil {
				return badInput("%s: %w", args[0], err)
			}
			if len(imgs) == 0 {
				return badInput("%s: no Pod, DaemonSet, Deployment, StatefulSet, ReplicaSet, Job or CronJob with containers", args[0])
			}
			rep, err := archaudit.Audit(ctx, imgs, arch, archaudit.Options{
				Mirrors: mm, Insecure: insecure, Log: logx.Stderr(g.verbose), ImageTimeout: timeout,
			})
			var ie *archaudit.InputError
			if errors.As(err, &ie) {
				return usageError{err}
			}
			if rep == nil {
				return err
			}
			// Interrupted: what was found so far is still printed.
			interrupted := err
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if err := rep.WriteTable(out); err != nil {
				return err
			}
			if interrupted != nil {
				return fmt.Errorf("audit interrupted: %w", interrupted)
			}
			if !rep.OK() {
				return failedError{rep.Summary()}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&arch, "arch", "arm64", "architecture the images must run on ("+strings.Join(archaudit.KnownArches(), ", ")+")")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON instead of a table")
	cmd.Flags().StringArrayVar(&mirrors, "mirror", nil, "fetch images of registry UPSTREAM from URL: UPSTREAM=URL, '*' for every upstream (repeatable)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP and unverified TLS to every registry")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "time allowed per image")
	return cmd
}

func parseMirrorFlags(flags []string) (map[string]string, error) {
	m := map[string]string{}
	for _, f := range flags {
		up, u, ok := strings.Cut(f, "=")
		up, u = strings.TrimSpace(up), strings.TrimSpace(u)
		if !ok || up == "" || u == "" {
			return nil, badInput("--mirror %q: want UPSTREAM=URL, as in docker.io=http://127.0.0.1:5000/docker.io", f)
		}
		if prev, dup := m[up]; dup && prev != u {
			return nil, badInput("--mirror: %s given twice (%s and %s)", up, prev, u)
		}
		m[up] = u
	}
	return m, nil
}

// readManifest reads a file, an http(s) URL or standard input ("-").
func readManifest(cmd *cobra.Command, src string) ([]byte, error) {
	if src == "-" {
		return readLimited(cmd.InOrStdin(), "standard input")
	}
	if !strings.HasPrefix(src, "http://") && !strings.HasPrefix(src, "https://") {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		return b, nil
	}
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("manifest URL %s: %w", src, err)
	}
	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch manifest %s: %s", src, resp.Status)
	}
	return readLimited(resp.Body, src)
}

func readLimited(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest from %s: %w", what, err)
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("manifest from %s is larger than %d MiB", what, maxManifestBytes>>20)
	}
	return b, nil
}
