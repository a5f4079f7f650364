#!/usr/bin/env bash
# The mixed-arch cell of scenarios/offline-flannel-arm64.yaml done by hand:
# an amd64 kind control plane and one arm64 QEMU VM worker, flannel, nginx on
# both nodes and the probes between them — with kind's CLI, qemu, ip, curl
# and kubectl only, as a person following environment.md would. `make bench`
# compares its times with the harness's to show what the harness costs.
#
# Inputs are the harness's cached builds (node image, VM disk, images served
# by `cnimatrix images serve`), so both sides start equally warm.
# Prints "bench-by-hand: <step> <seconds>" lines; cleans up on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CNIMATRIX=${CNIMATRIX:-$ROOT/bin/cnimatrix}
KIND=${KIND:-$ROOT/bin/kind}
K8S=${K8S:-v1.37.2}
ID=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
NAME=cnimatrix-hand-$ID
NET=cnimatrix-net-hand-$ID
VM=$NAME-arm64-1
TAP=cmxhand$ID
WORK=$(mktemp -d /tmp/cnimatrix-hand-XXXXXX)
TOKEN=$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')

now() { date +%s.%N; }
T0=$(now)
mark() { printf 'bench-by-hand: %s %.1f\n' "$1" "$(echo "$(now) - ${2:-$T0}" | bc)"; }
say() { printf '[hand %5.1fs] %s\n' "$(echo "$(now) - $T0" | bc)" "$*" >&2; }

cleanup() {
	set +e
	[ -n "${QEMU_PID:-}" ] && kill -9 "$QEMU_PID" 2>/dev/null
	[ -n "${REG_PID:-}" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
	"$KIND" delete cluster --name "$NAME" >/dev/null 2>&1
	ip link del "$TAP" 2>/dev/null
	docker network rm "$NET" >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

# Cached inputs (seconds when warm; not timed: the harness's images phase
# is not part of the comparison either).
eval "$("$CNIMATRIX" images build --qemu --kubernetes "$K8S" 2>/dev/null)"
T0=$(now)

docker network create --label io.cnimatrix.run=true "$NET" >/dev/null
read -r SUBNET GW < <(docker network inspect "$NET" | jq -r '.[0].IPAM.Config[0] | "\(.Subnet) \(.Gateway)"')
BRIDGE=br-$(docker network inspect "$NET" -f '{{.Id}}' | cut -c1-12)
PREFIX=${SUBNET#*/}
# The last usable address of the subnet, as the provider picks.
IFS=./ read -r a b c d _ <<<"$SUBNET"
n=$(( ((a << 24) | (b << 16) | (c << 8) | d) | ((1 << (32 - PREFIX)) - 2) ))
VMIP=$(( n >> 24 & 255 )).$(( n >> 16 & 255 )).$(( n >> 8 & 255 )).$(( n & 255 ))

"$CNIMATRIX" images serve --listen "$GW:0" >"$WORK/serve.out" 2>"$WORK/serve.log" &
REG_PID=$!
until grep -q '^REGISTRY=' "$WORK/serve.out"; do kill -0 "$REG_PID"; sleep 0.2; done
REGISTRY=$(sed -n 's/^REGISTRY=//p' "$WORK/serve.out")
for up in docker.io quay.io registry.k8s.io ghcr.io; do
	mkdir -p "$WORK/certs.d/$up"
	printf 'server = "http://%s/v2/%s"\noverride_path = true\ncapabilities = ["pull", "resolve"]\n' "$REGISTRY" "$up" >"$WORK/certs.d/$up/hosts.toml"
done
say "network $NET ($SUBNET), registry $REGISTRY"

# The VM boots while kind makes the control plane.
ip tuntap add dev "$TAP" mode tap
ip link set "$TAP" master "$BRIDGE"
ip link set "$TAP" up
(umask 077; printf %s "$TOKEN" >"$WORK/agent-token")
qemu-img create -q -f qcow2 -b "$QEMU_DISK" -F raw "$WORK/overlay.qcow2"
TVM=$(now)
qemu-system-aarch64 -name "$VM" -nodefaults -no-user-config -display none -no-reboot \
	-M virt -accel tcg -cpu max,pauth-impdef=on -smp 2 -m 2048 \
	-kernel "$QEMU_KERNEL" -initrd "$QEMU_INITRD" \
	-append "console=ttyAMA0 root=/dev/vda rootfstype=ext4 rw net.ifnames=0 panic=-1 cnimatrix.hostname=$VM cnimatrix.ip=$VMIP/$PREFIX cnimatrix.gw=$GW cnimatrix.agent=1" \
	-fw_cfg "name=opt/cnimatrix/agent-token,file=$WORK/agent-token" \
	-drive "file=$WORK/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe" \
	-serial "file:$WORK/serial.log" -device virtio-rng-pci \
	-netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" -device virtio-net-pci,netdev=n0,romfile= \
	>"$WORK/qemu.log" 2>&1 &
QEMU_PID=$!

cgroup_patch=""
[ -f /sys/fs/cgroup/cgroup.controllers ] || cgroup_patch='kubeadmConfigPatches:
- |
  apiVersion: kubelet.config.k8s.io/v1beta1
  kind: KubeletConfiguration
  failCgroupV1: false'
oom_patch=""
[ -n "$(/usr/local/libexec/cnimatrix/missing-caps 2>/dev/null)" ] && oom_patch='  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true'
cat >"$WORK/kind.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/16
  disableDefaultCNI: true
  kubeProxyMode: iptables
nodes:
- role: control-plane
  image: $NODE_IMAGE
  extraMounts:
  - hostPath: $WORK/certs.d
    containerPath: /etc/containerd/certs.d
    readOnly: true
$cgroup_patch
containerdConfigPatches:
- |
  version = 3
$oom_patch
EOF
KIND_EXPERIMENTAL_DOCKER_NETWORK=$NET "$KIND" create cluster --name "$NAME" --config "$WORK/kind.yaml" --kubeconfig "$WORK/kubeconfig" >"$WORK/kind.log" 2>&1 ||
	{ cat "$WORK/kind.log" >&2; exit 1; }
CP=$NAME-control-plane
CPIP=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$CP")
kc() { docker exec -i "$CP" kubectl --kubeconfig /etc/kubernetes/admin.conf "$@"; }
# Without stdin: inside `while read` loops kc would eat the loop's input.
kx() { docker exec "$CP" kubectl --kubeconfig /etc/kubernetes/admin.conf "$@"; }
say "control plane $CP ($CPIP) up"

agent() { # agent STDIN ARGV...: run ARGV in the VM, print stdout+stderr, fail on non-zero exit
	local stdin=$1; shift
	local req; req=$(printf '%s\n' "$@" | jq -R . | jq -cs --arg in "$stdin" '{argv: ., stdin: $in}')
	local out; out=$(curl -sf -H "Authorization: Bearer $TOKEN" -d "$req" "http://$VMIP:10299/exec")
	jq -r '.stdout + .stderr' <<<"$out"
	[ "$(jq .exitCode <<<"$out")" = 0 ]
}
deadline=$(( $(date +%s) + 300 ))
until curl -sf -m2 -H "Authorization: Bearer $TOKEN" "http://$VMIP:10299/healthz" >/dev/null; do
	kill -0 "$QEMU_PID"
	[ "$(date +%s)" -lt "$deadline" ] || { echo "VM agent at $VMIP not answering after 5 min" >&2; tail -20 "$WORK/serial.log" >&2; exit 1; }
	sleep 0.5
done
mark vm-up "$TVM"
JOIN=$(docker exec "$CP" kubeadm token create --print-join-command --ttl 2h)
setup="set -e
echo '$CPIP $CP' >>/etc/hosts
systemctl start containerd.service"
for up in docker.io quay.io registry.k8s.io ghcr.io; do
	setup+="
mkdir -p /etc/containerd/certs.d/$up
cat >/etc/containerd/certs.d/$up/hosts.toml <<'EOT'
$(cat "$WORK/certs.d/$up/hosts.toml")
EOT"
done
agent "$setup" bash -s >/dev/null
# shellcheck disable=SC2086 # the join command is words
agent "" $JOIN --node-name "$VM" >"$WORK/join.log"
mark joined "$TVM"
say "VM $VM ($VMIP) joined"

TCNI=$(now)
kc apply -f - <"$ROOT/fixtures/cni/flannel/kube-flannel.yaml" >/dev/null
kc -n kube-flannel rollout status ds/kube-flannel-ds --timeout=20m >/dev/null
mark cni-ready "$TCNI"
kc wait --for=condition=Ready "node/$VM" --timeout=10m >/dev/null
mark node-ready "$TVM"
say "flannel ready, $VM Ready"

TCHK=$(now)
kc create namespace hand >/dev/null
{
	cat <<EOF
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: nginx, namespace: hand}
spec:
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
      - {name: nginx, image: docker.io/cnimatrix/nginx:bookworm, ports: [{containerPort: 80}], readinessProbe: {httpGet: {path: /, port: 80}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: probe, namespace: hand}
spec:
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
      - {name: probe, image: docker.io/cnimatrix/probe:bookworm, command: [sleep, infinity]}
---
apiVersion: v1
kind: Service
metadata: {name: nginx, namespace: hand}
spec:
  type: NodePort
  selector: {app: nginx}
  ports: [{port: 80, targetPort: 80}]
EOF
} | kc apply -f - >/dev/null
kc -n hand rollout status ds/nginx --timeout=20m >/dev/null
kc -n hand rollout status ds/probe --timeout=20m >/dev/null
mark workloads "$TCHK"
pods() { kx -n hand get pods -l "app=$1" -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}'; }
while read -r probe pnode _; do
	[ "$(kx -n hand exec "$probe" -- uname -m)" = "$(kx get node "$pnode" -o jsonpath='{.status.nodeInfo.architecture}' | sed 's/arm64/aarch64/;s/amd64/x86_64/')" ]
	while read -r nginx nnode nip; do
		[ "$nnode" = "$pnode" ] && continue
		kx -n hand exec "$probe" -- curl -sf -m10 "http://$nip/" | grep -q "$nginx"
		say "$probe@$pnode -> $nginx@$nnode: ok"
	done < <(pods nginx)
	kx -n hand exec "$probe" -- curl -sf -m10 http://nginx.hand.svc.cluster.local/ >/dev/null
	kx -n hand exec "$probe" -- dig +short nginx.hand.svc.cluster.local | grep -q .
done < <(pods probe)
PORT=$(kx -n hand get svc nginx -o jsonpath='{.spec.ports[0].nodePort}')
for ip in "$CPIP" "$VMIP"; do curl -sf -m10 "http://$ip:$PORT/" >/dev/null; done
mark checks "$TCHK"
mark total
