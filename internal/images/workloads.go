package images

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Workload image references. They live under docker.io so that manifests
// can name them the usual way; the nodes get them from the local registry.
const (
	// NginxImage serves its pod's hostname as / on port 80 (and /healthz).
	NginxImage = "docker.io/cnimatrix/nginx:bookworm"
	// ProbeImage has curl, dig (DNS queries), getent, nc, ip and
	// coreutils, and sleeps.
	ProbeImage = "docker.io/cnimatrix/probe:bookworm"
)

// workloadRecipe changes whenever the workload images change in a way their
// inputs do not show.
const workloadRecipe = "workloads/v1"

const workloadPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// workloadBaseFiles are what Debian's maintainer scripts would have written
// and the extract variant does not run: accounts, name-service order, and
// the world-writable /tmp and /run.
func workloadBaseFiles() LayerFiles {
	return LayerFiles{
		"etc/passwd": {Content: []byte("root:x:0:0:root:/root:/bin/sh\n" +
			"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
			"www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")},
		"etc/group": {Content: []byte("root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n")},
		"etc/nsswitch.conf": {Content: []byte("passwd: files\ngroup: files\nshadow: files\n" +
			"hosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n")},
		"root": {Mode: fs.ModeDir | 0o700},
		"run":  {Mode: fs.ModeDir | 0o755},
		"tmp":  {Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// rootfsLayerRecipe changes with what rootfsLayer leaves out or adds.
const rootfsLayerRecipe = "rootfs-layer/v2"

// rootfsLayer returns one layer holding the Debian root filesystem of spec
// with extra written over it. Device nodes (the runtime provides /dev),
// documentation other than copyright files, manual pages and message
// translations are left out.
// The layer is cached by the rootfs key and extra's contents, so a warm call
// neither runs mmdebstrap nor reads the tarball.
func (c *Cache) rootfsLayer(ctx context.Context, spec RootfsSpec, extra LayerFiles) (v1.Layer, error) {
	name, key, err := rootfsLayerKey(spec, extra)
	if err != nil {
		return nil, err
	}
	return c.ociCachedLayer(ctx, name, key, func(ctx context.Context, w io.Writer) error {
		tarPath, err := c.DebianRootfs(ctx, spec)
		if err != nil {
			return err
		}
		return writeFilteredRootfs(ctx, w, tarPath, extra)
	})
}

func rootfsLayerKey(spec RootfsSpec, extra LayerFiles) (name, key string, err error) {
	spec, err = normalizeRootfsSpec(spec)
	if err != nil {
		return "", "", err
	}
	sources, err := debianSources(spec.Suite)
	if err != nil {
		return "", "", err
	}
	rname, rkey := rootfsEntry(spec, sources)
	return "rootfs-" + rname, Key(ociLayerRecipe, rootfsLayerRecipe, rkey, extra), nil
}

// writeFilteredRootfs copies the tarball to w without the entries
// rootfsDrop rejects or extra replaces, then appends extra. Hard links keep
// their targets: a first pass over the headers finds them.
func writeFilteredRootfs(ctx context.Context, w io.Writer, tarPath string, extra LayerFiles) error {
	linked := map[string]bool{}
	if err := walkTar(ctx, tarPath, func(h *tar.Header, _ io.Reader) error {
		if h.Typeflag == tar.TypeLink {
			linked[ociCleanPath(h.Linkname)] = true
		}
		return nil
	}); err != nil {
		return err
	}
	replaced := map[string]bool{}
	for p := range extra {
		replaced[ociCleanPath(p)] = true
	}
	tw := tar.NewWriter(w)
	err := walkTar(ctx, tarPath, func(h *tar.Header, r io.Reader) error {
		p := ociCleanPath(h.Name)
		if replaced[p] || (!linked[p] && rootfsDrop(p, h)) {
			return nil
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	})
	if err != nil {
		return err
	}
	if err := ociWriteFiles(tw, extra, "./"); err != nil {
		return err
	}
	return tw.Close()
}

func rootfsDrop(p string, h *tar.Header) bool {
	switch {
	case strings.HasPrefix(p, "dev/"):
		return true
	case strings.HasPrefix(p, "usr/share/man/"), strings.HasPrefix(p, "usr/share/info/"), strings.HasPrefix(p, "usr/share/locale/"):
		return true
	case strings.HasPrefix(p, "usr/share/doc/"):
		// Keep the directories and the licences.
		return h.Typeflag != tar.TypeDir && !strings.HasSuffix(p, "/copyright")
	}
	return false
}

func walkTar(ctx context.Context, file string, fn func(h *tar.Header, r io.Reader) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	return walkTarStream(ctx, file, f, fn)
}

// walkTarGz is walkTar for a gzip-compressed tarball (a .tar.gz source
// release).
func walkTarGz(ctx context.Context, file string, fn func(h *tar.Header, r io.Reader) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return walkTarStream(ctx, file, zr, fn)
}

func walkTarStream(ctx context.Context, file string, r io.Reader, fn func(h *tar.Header, r io.Reader) error) error {
	tr := tar.NewReader(&ociCtxReader{ctx, r})
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", file, err)
		}
		if err := fn(h, tr); err != nil {
			return fmt.Errorf("%s: %s: %w", file, h.Name, err)
		}
	}
}

// iptablesBasePackages make a base for images that program the node's
// packet filter (kube-proxy, CNI daemons): both iptables backends, nft,
// conntrack, iproute2, a shell and coreutils.
var iptablesBasePackages = []string{"coreutils", "conntrack", "dash", "iproute2", "iptables", "nftables"}

// iptablesWrapper is installed as /usr/sbin/iptables-wrapper and as every
// iptables, iptables-save, iptables-restore and ip6tables* name. Debian's
// alternatives would pick the backend at install time, which the extract
// variant skips and which cannot know the node anyway: the rules a pod
// programs must land in the backend the node's kubelet and kube-proxy use,
// or they are ignored. So on first use the wrapper looks at this network
// namespace (a host-network pod sees the node's): the kubelet marks its
// backend with the KUBE-IPTABLES-HINT (or KUBE-KUBELET-CANARY) chain in the
// mangle table; without a mark, the backend holding more rules wins, and nft
// when neither has any. IPTABLES_MODE=legacy|nft forces a choice. It then
// points the names at that backend (when /usr/sbin is writable) and runs the
// requested command there.
const iptablesWrapper = `#!/bin/sh
# cnimatrix iptables mode wrapper (see IptablesBaseLayer).
set -eu

# scan COUNTVAR HINTVAR: counts rule lines of iptables-save output on stdin
# and notes the kubelet's backend marker chains.
scan() {
	n=0 hint=0
	while IFS= read -r line; do
		case "$line" in
		-*) n=$((n + 1)) ;;
		":KUBE-IPTABLES-HINT "* | ":KUBE-KUBELET-CANARY "*) hint=1 ;;
		esac
	done
	echo "$n $hint"
}

detect() {
	set -- $( { /usr/sbin/xtables-nft-multi iptables-save; /usr/sbin/xtables-nft-multi ip6tables-save; } 2>/dev/null | scan)
	nft_rules=$1 nft_hint=$2
	set -- $( { /usr/sbin/xtables-legacy-multi iptables-save; /usr/sbin/xtables-legacy-multi ip6tables-save; } 2>/dev/null | scan)
	legacy_rules=$1 legacy_hint=$2
	if [ "$nft_hint" = 1 ]; then
		mode=nft why="kubelet chains in nft"
	elif [ "$legacy_hint" = 1 ]; then
		mode=legacy why="kubelet chains in legacy"
	elif [ "$legacy_rules" -gt "$nft_rules" ]; then
		mode=legacy why="more rules in legacy"
	elif [ "$nft_rules" -gt 0 ]; then
		mode=nft why="more rules in nft"
	else
		mode=nft why="no rules yet, nft by default"
	fi
	echo "iptables-wrapper: using iptables-$mode: $why (rules: nft $nft_rules, legacy $legacy_rules)" >&2
}

mode=${IPTABLES_MODE:-}
case "$mode" in
"") detect ;;
legacy | nft) ;;
*)
	echo "iptables-wrapper: IPTABLES_MODE must be legacy or nft, not '$mode'" >&2
	exit 2
	;;
esac

for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
	ln -sf "xtables-$mode-multi" "/usr/sbin/.$cmd.tmp" 2>/dev/null &&
		mv -f "/usr/sbin/.$cmd.tmp" "/usr/sbin/$cmd" 2>/dev/null || true
done

name=${0##*/}
if [ "$name" = iptables-wrapper ]; then
	exit 0
fi
exec "/usr/sbin/xtables-$mode-multi" "$name" "$@"
`

// iptablesNames are the commands the wrapper stands in for.
var iptablesNames = []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"}

func iptablesBaseFiles() LayerFiles {
	files := workloadBaseFiles()
	files["usr/sbin/iptables-wrapper"] = LayerFile{Mode: 0o755, Content: []byte(iptablesWrapper)}
	for _, n := range iptablesNames {
		files["usr/sbin/"+n] = LayerFile{Mode: fs.ModeSymlink, Target: "iptables-wrapper"}
	}
	return files
}

// IptablesBaseLayer returns a self-contained root filesystem layer (Debian
// bookworm, extract variant) for arch with iptables (legacy and nft
// backends behind the mode wrapper described at iptablesWrapper), nft,
// conntrack, iproute2, dash and coreutils. Images that program the node's
// packet filter put their binaries on top of it.
func (c *Cache) IptablesBaseLayer(ctx context.Context, arch string) (v1.Layer, error) {
	l, err := c.rootfsLayer(ctx, iptablesBaseSpec(arch), iptablesBaseFiles())
	if err != nil {
		return nil, fmt.Errorf("iptables base %s: %w", arch, err)
	}
	return l, nil
}

func iptablesBaseSpec(arch string) RootfsSpec {
	return RootfsSpec{Arch: arch, Suite: DefaultDebianSuite, Variant: "extract", Packages: iptablesBasePackages}
}

// nginxEntrypoint writes the pod's hostname into index.html, so a client
// can tell which pod answered, and listens on $LISTEN_PORT (80) over IPv4
// and, when the pod has IPv6, IPv6. Only shell builtins: the image has no
// coreutils.
const nginxEntrypoint = `#!/bin/sh
set -eu
# Not $PORT or $NGINX_PORT: Kubernetes sets <SERVICE>_PORT variables.
port=${LISTEN_PORT:-80}
case "$port" in
'' | *[!0-9]*)
	echo "nginx-workload: LISTEN_PORT must be a number, not '$port'" >&2
	exit 2
	;;
esac
read -r host </proc/sys/kernel/hostname
printf '%s\n' "$host" >/var/www/html/index.html
{
	printf 'listen %s;\n' "$port"
	if read -r _ </proc/net/if_inet6 2>/dev/null; then
		printf 'listen [::]:%s;\n' "$port"
	fi
} >/etc/nginx/listen.conf
exec /usr/sbin/nginx -g 'daemon off;'
`

const nginxConf = `# cnimatrix workload: one server answering with the pod's hostname.
user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log stderr notice;

events {
	worker_connections 512;
}

http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	access_log /dev/stdout;
	sendfile on;
	keepalive_timeout 5;

	server {
		include /etc/nginx/listen.conf;
		server_name _;
		root /var/www/html;
		location = /healthz {
			default_type text/plain;
			return 200 "ok\n";
		}
		location / {
			index index.html;
		}
	}
}
`

// workloadImage describes one multi-arch workload image.
type workloadImage struct {
	ref      string
	packages []string
	files    LayerFiles
	config   v1.Config
}

func workloadImages() []workloadImage {
	nginxFiles := workloadBaseFiles()
	maps.Copy(nginxFiles, LayerFiles{
		"etc/nginx/nginx.conf":         {Content: []byte(nginxConf)},
		"etc/nginx/listen.conf":        {Content: []byte("listen 80;\n")},
		"usr/local/bin/nginx-workload": {Mode: 0o755, Content: []byte(nginxEntrypoint)},
		"var/www":                      {Mode: fs.ModeDir | 0o755},
		"var/www/html":                 {Mode: fs.ModeDir | 0o755},
		"var/www/html/index.html":      {Content: []byte("nginx\n")},
		"var/lib/nginx":                {Mode: fs.ModeDir | 0o755},
		"var/log/nginx":                {Mode: fs.ModeDir | 0o755},
	})
	probeFiles := workloadBaseFiles()
	// Debian names nc through the alternatives system, which the extract
	// variant does not run.
	probeFiles["usr/bin/nc"] = LayerFile{Mode: fs.ModeSymlink, Target: "nc.openbsd"}
	return []workloadImage{
		{
			ref:      NginxImage,
			packages: []string{"dash", "nginx"},
			files:    nginxFiles,
			config: v1.Config{
				Env:          []string{workloadPath},
				Entrypoint:   []string{"/usr/local/bin/nginx-workload"},
				ExposedPorts: map[string]struct{}{"80/tcp": {}},
				StopSignal:   "SIGQUIT",
			},
		},
		// dig (bind9-dnsutils) shows which server answered and how, which is
		// the evidence the DNS check records; it costs ~20 MB more than drill.
		// getent resolves the way applications do (search list, ndots).
		{
			ref:      ProbeImage,
			packages: []string{"bind9-dnsutils", "coreutils", "curl", "dash", "iproute2", "libc-bin", "netcat-openbsd"},
			files:    probeFiles,
			// Cmd, not Entrypoint: a pod's args (or docker run's
			// arguments) then replace the sleep instead of being passed to it.
			config: v1.Config{
				Env: []string{workloadPath},
				Cmd: []string{"/usr/bin/sleep", "infinity"},
			},
		},
	}
}

// WorkloadImages builds (or finds in the store) the workload images for
// arches, stores each under its reference (NginxImage, ProbeImage) and
// returns them as ref -> index. Warm calls read the host's apt sources and
// the store's index.json, nothing more.
func (c *Cache) WorkloadImages(ctx context.Context, arches []string) (map[string]v1.ImageIndex, error) {
	if len(arches) == 0 {
		return nil, fmt.Errorf("workload images: no architectures")
	}
	arches = slices.Sorted(slices.Values(arches))
	arches = slices.Compact(arches)
	out := map[string]v1.ImageIndex{}
	for _, w := range workloadImages() {
		ii, err := c.workloadIndex(ctx, w, arches)
		if err != nil {
			return nil, err
		}
		out[w.ref] = ii
	}
	return out, nil
}

func (c *Cache) workloadIndex(ctx context.Context, w workloadImage, arches []string) (v1.ImageIndex, error) {
	var layerKeys []string
	for _, arch := range arches {
		_, k, err := rootfsLayerKey(w.spec(arch), w.files)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", w.ref, err)
		}
		layerKeys = append(layerKeys, k)
	}
	key := Key(workloadRecipe, w.ref, arches, layerKeys, w.config)
	obj, err := c.CachedImage(ctx, w.ref, key, func(ctx context.Context) (ImageOrIndex, error) {
		done := c.Log.Phase(fmt.Sprintf("image %s %v", w.ref, arches))
		var imgs []v1.Image
		for _, arch := range arches {
			l, err := c.rootfsLayer(ctx, w.spec(arch), w.files)
			if err != nil {
				done(err)
				return nil, err
			}
			img, err := NewImage(arch, []v1.Layer{l}, w.config)
			if err != nil {
				done(err)
				return nil, err
			}
			imgs = append(imgs, img)
		}
		ii, err := NewIndex(imgs...)
		done(err)
		return ii, err
	})
	if err != nil {
		return nil, err
	}
	ii, ok := obj.(v1.ImageIndex)
	if !ok {
		return nil, fmt.Errorf("image %s: store holds %T, not an index", w.ref, obj)
	}
	return ii, nil
}

func (w workloadImage) spec(arch string) RootfsSpec {
	return RootfsSpec{Arch: arch, Suite: DefaultDebianSuite, Variant: "extract", Packages: w.packages}
}
