#!/usr/bin/env bash
# Installs and starts what cnimatrix needs on a Debian 12 host: a Docker engine
# (with the runc front end when the capability bounding set is short), binfmt
# for arm64, QEMU and the image-building tools. Idempotent: safe to run twice.
set -euo pipefail
log() { printf '[setup %s] %s\n' "$(date +%T)" "$*"; }

# qemu-utils: per-VM qcow2 overlays (qemu-img); arch-test: mmdebstrap checks with it
# that an arm64 minbase (maintainer scripts under qemu-user) can run;
# debian-archive-keyring: on a non-Debian host (Ubuntu CI runners) apt has no
# key for the Debian archive the node images are built from; chromium: the HTML
# report's test renders the page in a headless browser.
PKGS=(jq mmdebstrap debootstrap qemu-user-static binfmt-support debian-archive-keyring
      qemu-system-arm qemu-utils arch-test e2fsprogs iproute2 iptables ca-certificates git make curl
      chromium bc)
# Calico from source (cni.calico.images: source): calico-node links libbpf
# (built from its source) through cgo, so it needs a C compiler and the
# libelf, zlib and libpcap development files of each arch it is built for;
# arm64 is cross-compiled with Debian's aarch64 toolchain and multiarch
# -dev packages.
# Multi-arch packages are named with their arch: with the arm64 one
# installed too, `dpkg -s libelf-dev` is ambiguous.
native=$(dpkg --print-architecture)
PKGS+=(gcc pkg-config:$native libc6-dev:$native libelf-dev:$native zlib1g-dev:$native libpcap-dev:$native)
if [ "$native" = amd64 ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  PKGS+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross libelf-dev:arm64 zlib1g-dev:arm64 libpcap-dev:arm64)
fi
# A Docker engine that already answers (GitHub-hosted runners ship docker-ce) is
# used as it is: Debian's docker.io conflicts with docker-ce's containerd.io.
engine_running=false
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine_running=true; else PKGS+=(docker.io); fi
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

here=$(cd "$(dirname "$0")" && pwd)
install -D -m 0755 "$here/missing-caps" /usr/local/libexec/cnimatrix/missing-caps
install -D -m 0755 "$here/runc-capfix" /usr/local/bin/runc-capfix

# binfmt for arm64 binaries (used while building arm64 root filesystems).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || log "warning: cannot mount binfmt_misc"
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true

# Docker engine.
mkdir -p /etc/docker
want_cfg='{"storage-driver":"overlay2","log-driver":"json-file"}'
if [ -n "$(/usr/local/libexec/cnimatrix/missing-caps)" ]; then
  log "capability bounding set lacks $(/usr/local/libexec/cnimatrix/missing-caps): docker uses runc-capfix"
  want_cfg='{"storage-driver":"overlay2","log-driver":"json-file","runtimes":{"runc-capfix":{"path":"/usr/local/bin/runc-capfix"}},"default-runtime":"runc-capfix"}'
fi
if $engine_running && [ -z "$(/usr/local/libexec/cnimatrix/missing-caps)" ]; then
  # Nothing to change: its configuration (e.g. a CI runner's cgroup parent) is kept.
  log "docker engine already running with every capability: configuration left as it is"
elif [ "$(cat /etc/docker/daemon.json 2>/dev/null)" != "$want_cfg" ]; then
  echo "$want_cfg" >/etc/docker/daemon.json
  if docker info >/dev/null 2>&1; then
    log "restarting dockerd for the new configuration"
    pkill -x dockerd || true
    for _ in $(seq 1 50); do pgrep -x dockerd >/dev/null || break; sleep 0.2; done
  fi
fi
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl restart docker
  else
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for i in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
fi
docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/dockerd.log"; tail -20 /var/log/dockerd.log; exit 1; }
log "docker $(docker version --format '{{.Server.Version}}') ready"
