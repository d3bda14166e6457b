#!/usr/bin/env bash
# Runs a one-node Kubernetes cluster on this machine for the tests in
# test/node, and takes it down again restoring the host.
#
#   hack/node.sh up     install containerd, runc, the CNI plugins and iptables
#                       (Debian's packages) if missing, start etcd,
#                       kube-apiserver, kube-controller-manager,
#                       kube-scheduler, containerd and kubelet; print the
#                       admin kubeconfig's path on stdout (progress: stderr)
#   hack/node.sh down   stop all of it and undo what it changed on the host;
#                       safe to run twice or after a failed `up`
#   hack/node.sh env    print `export KUBECONFIG=… CONTAINERD_ADDRESS=…` lines
#                       for the running node
#
# so that `export KUBECONFIG=$(hack/node.sh up)` works. Needs root (a
# kubelet and a container runtime) and the binaries hack/build-controlplane.sh
# builds (the same kube-apiserver and etcd as envtest, plus kubelet,
# kube-controller-manager and kube-scheduler from the same Kubernetes module).
#
# Everything binds to 127.0.0.1 or to the CNI bridge (cni0, 10.88.0.1/16),
# which is local to the machine. The API server listens on the bridge address
# because Pods must reach it too (the operator's in-cluster client); the node
# name is $(hostname), which /etc/hosts maps to 127.0.0.1, so the API server
# reaches the kubelet (logs, exec, port-forward) on loopback and never asks a
# DNS resolver outside the machine.
#
# There is no kube-proxy and no cluster DNS: a Service is reached from the
# host with `kubectl port-forward svc/…`, a Pod by its IP. The one exception
# is the `kubernetes` Service (10.96.0.1:443), which every in-cluster client
# uses: one DNAT rule (chain SMAREGI-NODE in the nat table) sends it to the
# API server, which is all kube-proxy would do for it.
#
# State (certificates, etcd data, containerd's root, kubelet's root dir,
# logs, PIDs) lives in SMAREGI_NODE_DIR (default /tmp/smaregi-node); `down`
# removes it. Logs: $SMAREGI_NODE_DIR/logs/*.log.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
dir="${SMAREGI_NODE_DIR:-/tmp/smaregi-node}"
pki="$dir/pki"
logs="$dir/logs"
pids="$dir/pids"
ctrd="$dir/containerd"
sock="$ctrd/containerd.sock"
cni_conf="$dir/cni/net.d"
kubelet_root="$dir/kubelet"
kubeconfig="$dir/admin.kubeconfig"

node_name="$(hostname)"
bridge=cni0
bridge_ip=10.88.0.1
pod_cidr=10.88.0.0/16
service_cidr=10.96.0.0/16
service_ip=10.96.0.1
pause_ref=localhost/smaregi-node/pause:1
# host-local keeps its allocations here, per network name.
cni_state=/var/lib/cni/networks/smaregi-node

# The sysctls the kubelet sets at start (protectKernelDefaults off) and the
# bridge plugin's ip_forward: saved before `up`, restored by `down`.
sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward)

log() { echo ">> $*" >&2; }
die() { echo "hack/node.sh: $*" >&2; exit 1; }

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (a kubelet and a container runtime)"; }

# --- host packages ------------------------------------------------------------
install_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v ip >/dev/null || missing+=(iproute2)
  (( ${#missing[@]} == 0 )) && return
  log "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # Debian starts the packaged containerd service where there is an init
  # system; ours runs with its own config and socket, so that one is not used.
}

# --- ports --------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port VAR BASE: sets VAR to the first port from BASE on that nothing
# listens on and that this run has not handed out already. envtest picks
# random ports, so fixed ones could collide with a test running beside us.
taken_ports=" "
free_port() {
  local p=$2
  while port_in_use "$p" || [[ "$taken_ports" == *" $p "* ]]; do
    p=$((p + 1))
    (( p < $2 + 200 )) || die "no free port from $2"
  done
  taken_ports+="$p "
  printf -v "$1" '%s' "$p"
}

# --- certificates -------------------------------------------------------------
# cert NAME CN ORG EXT: a P-256 key and a certificate signed by the node's CA.
cert() {
  local name=$1 cn=$2 org=$3 ext=$4 subj
  subj="/CN=$cn"
  [[ -n "$org" ]] && subj="/O=$org$subj"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 7 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_pki() {
  mkdir -p "$pki"
  chmod 700 "$pki"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=smaregi-node-ca" -days 7 -out "$pki/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  local server="extendedKeyUsage=serverAuth" client="extendedKeyUsage=clientAuth"
  cert apiserver kube-apiserver "" "$server
subjectAltName=IP:127.0.0.1,IP:$bridge_ip,IP:$service_ip,DNS:localhost,DNS:$node_name,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # The API server's client certificate towards the kubelet. system:masters
  # keeps the node small (no RBAC binding to create before the first log or
  # exec); the kubelet still authenticates it with the node's CA.
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "$client"
  cert admin admin system:masters "$client"
  cert kubelet-client "system:node:$node_name" system:nodes "$client"
  cert kubelet-serving "$node_name" "" "$server
subjectAltName=DNS:$node_name,DNS:localhost,IP:127.0.0.1"
  cert controller-manager system:kube-controller-manager "" "$client"
  cert scheduler system:kube-scheduler "" "$client"
  # Service-account token signing pair.
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

# kubeconfig FILE NAME: a kubeconfig for the client certificate NAME.
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: smaregi-node
  cluster:
    server: https://$bridge_ip:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: smaregi-node
  context: {cluster: smaregi-node, user: $2}
current-context: smaregi-node
EOF
  chmod 600 "$1"
}

# --- the pause image ----------------------------------------------------------
# The sandbox image: a static Go program that waits for SIGTERM, in an image
# with nothing else. No registry is reachable to pull one from.
pause_image() {
  local work="$dir/pause"
  mkdir -p "$work/rootfs"
  (cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/rootfs/pause" ./hack/node/pause) >&2
  # The project's image builder (its own module), as for the operator's
  # image: no CA bundle, and the user the pause image usually runs as.
  go run -C "$here/imagebuild" . --binary "$work/rootfs/pause" --path /pause --ca-bundle "" \
    --user 65535:65535 --tag "$pause_ref" --out "$work/pause.tar" >/dev/null
  ctr -a "$sock" -n k8s.io images import "$work/pause.tar" >&2
}

# --- processes ----------------------------------------------------------------
# start NAME CMD…: runs CMD in the background, its output in logs/NAME.log,
# its PID in pids/NAME.
start() {
  local name=$1
  shift
  "$@" >"$logs/$name.log" 2>&1 &
  echo $! >"$pids/$name"
}

alive() { [[ -f "$pids/$1" ]] && kill -0 "$(cat "$pids/$1")" 2>/dev/null; }

# wait_for WHAT SECONDS CMD…: polls CMD until it succeeds; on a timeout shows
# the logs of what is running.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    for p in "$pids"/*; do
      [[ -f "$p" ]] || continue
      alive "$(basename "$p")" || { tail -n 30 "$logs/$(basename "$p").log" >&2; die "$(basename "$p") exited while waiting for $what"; }
    done
    sleep 0.25
  done
  for l in "$logs"/*.log; do echo "--- $l" >&2; tail -n 15 "$l" >&2; done
  die "timed out after ${secs}s waiting for $what"
}

# stop NAME: SIGTERM, then SIGKILL after 15 s; only the PID we started.
stop() {
  local name=$1 pid i
  [[ -f "$pids/$name" ]] || return 0
  pid="$(cat "$pids/$name")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$pids/$name"
}

# --- up -----------------------------------------------------------------------
up() {
  need_root
  if alive kubelet && alive kube-apiserver && [[ -f "$kubeconfig" ]]; then
    log "the node is already running"
    echo "$kubeconfig"
    return
  fi
  local t0=$SECONDS
  # Leftovers of an earlier run (a failed `up`, a killed test) go first.
  down_quiet

  install_packages
  local bins
  bins="$("$here/build-controlplane.sh")"
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    [[ -x "$bins/$b" ]] || die "$bins/$b missing (hack/build-controlplane.sh)"
  done

  mkdir -p "$dir" "$logs" "$pids" "$ctrd" "$cni_conf" "$kubelet_root" "$dir/pod-logs"
  echo "$bins" >"$dir/bin-dir"

  # Save what the kubelet and the bridge plugin change, before they run.
  : >"$dir/sysctls.saved"
  for s in "${sysctls[@]}"; do
    v="$(sysctl -n "$s" 2>/dev/null)" && echo "$s=$v" >>"$dir/sysctls.saved"
  done
  # KUBE-* chains that already exist are not ours to delete.
  iptables_chains >"$dir/iptables.before"

  local etcd_port etcd_peer cm_port sched_port kubelet_port kubelet_healthz
  free_port api_port 16443
  free_port etcd_port 12379
  free_port etcd_peer 12380
  free_port cm_port 20257
  free_port sched_port 20259
  free_port kubelet_port 20250
  free_port kubelet_healthz 20248
  echo "$api_port" >"$dir/api-port"

  log "certificates"
  make_pki
  kubeconfig "$kubeconfig" admin
  kubeconfig "$dir/kubelet.kubeconfig" kubelet-client
  kubeconfig "$dir/controller-manager.kubeconfig" controller-manager
  kubeconfig "$dir/scheduler.kubeconfig" scheduler

  # The bridge exists before the first Pod, so that the API server can
  # listen on its address; the bridge plugin takes it over as it is.
  log "bridge $bridge ($bridge_ip)"
  ip link add "$bridge" type bridge
  ip addr add "$bridge_ip/16" dev "$bridge"
  ip link set "$bridge" up
  # The `kubernetes` Service for Pods (no kube-proxy): see the header.
  iptables -t nat -N SMAREGI-NODE
  iptables -t nat -A SMAREGI-NODE -d "$service_ip/32" -p tcp --dport 443 -j DNAT --to-destination "$bridge_ip:$api_port"
  iptables -t nat -I PREROUTING -j SMAREGI-NODE
  iptables -t nat -I OUTPUT -j SMAREGI-NODE

  log "etcd on 127.0.0.1:$etcd_port"
  start etcd "$bins/etcd" --name node --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "node=http://127.0.0.1:$etcd_peer" \
    --unsafe-no-fsync # a throwaway cluster on a shared disk: speed over durability

  log "kube-apiserver on $bridge_ip:$api_port"
  start kube-apiserver "$bins/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$bridge_ip" --advertise-address "$bridge_ip" --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$service_cidr" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types Hostname \
    --profiling=false

  log "containerd ($sock)"
  write_containerd_config
  start containerd containerd --config "$ctrd/config.toml"

  wait_for "kube-apiserver" 60 "$bins/kubectl" --kubeconfig "$kubeconfig" get --raw /readyz
  wait_for "containerd" 30 ctr -a "$sock" version

  log "kube-controller-manager and kube-scheduler"
  start kube-controller-manager "$bins/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$cm_port" --leader-elect=false \
    --use-service-account-credentials --service-account-private-key-file "$pki/sa.key" \
    --root-ca-file "$pki/ca.crt" --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$service_cidr" --allocate-node-cidrs=false --profiling=false
  start kube-scheduler "$bins/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --profiling=false

  log "pause image"
  pause_image

  log "kubelet (node $node_name)"
  cat >"$cni_conf/10-smaregi-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "smaregi-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$bridge_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$sock
# This machine's cgroups are v1 (hybrid): the kubelet refuses them unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
# The images cannot be pulled again (no registry): never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# A shared build machine: evict only when really out of room.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 30
# Container logs stay in the state dir rather than /var/log/pods.
podLogsDir: $dir/pod-logs
EOF
  start kubelet "$bins/kubelet" --config "$dir/kubelet.yaml" --kubeconfig "$dir/kubelet.kubeconfig" \
    --root-dir "$kubelet_root" --cert-dir "$pki/kubelet" --hostname-override "$node_name"

  wait_for "node $node_name Ready" 90 node_ready "$bins/kubectl"
  # The default ServiceAccount (created by the controller manager) is needed
  # by every Pod; wait for it so a test can create Pods at once.
  wait_for "the default ServiceAccount" 30 "$bins/kubectl" --kubeconfig "$kubeconfig" -n default get serviceaccount default
  log "node up in $((SECONDS - t0))s; kubeconfig $kubeconfig"
  echo "$kubeconfig"
}

node_ready() {
  [[ "$("$1" --kubeconfig "$kubeconfig" get node "$node_name" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

write_containerd_config() {
  mkdir -p "$ctrd/root" "$ctrd/state" "$ctrd/opt"
  cat >"$ctrd/config.toml" <<EOF
version = 2
root = "$ctrd/root"
state = "$ctrd/state"
# Not the packaged service's /etc/containerd: this one is the node's alone.
imports = []

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$ctrd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_ref"
  # The container lacks CAP_SYS_RESOURCE: without this every sandbox fails
  # with "runc create failed … can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$ctrd/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cni_conf"
    max_conf_num = 1
EOF
}

# --- down ---------------------------------------------------------------------
iptables_chains() {
  local ipt t
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle; do
      "$ipt" -t "$t" -S 2>/dev/null | awk -v i="$ipt" -v t="$t" '$1 == "-N" && $2 ~ /^KUBE-/ {print i, t, $2}'
    done
  done
}

# kill_pod_processes: SIGKILL to whatever still runs in the kubelet's
# kubepods cgroups (containers whose runtime is gone): only Pods of this
# node live there.
kill_pod_processes() {
  local f p n=0
  while read -r f; do
    while read -r p; do
      [[ -n "$p" ]] || continue
      kill -KILL "$p" 2>/dev/null && n=$((n + 1))
    done <"$f"
  done < <(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice -name cgroup.procs 2>/dev/null)
  if (( n > 0 )); then
    log "killed $n process(es) left in the kubepods cgroups"
    sleep 0.5
  fi
}

down_quiet() {
  # The order matters: the kubelet first (it would restart containers), then
  # the containers it left (their shims), containerd, the control plane.
  stop kubelet
  if [[ -S "$sock" ]] && alive containerd; then
    # Stop every container and sandbox so their shims exit and their mounts
    # and network namespaces go with them.
    local ids
    ids="$(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null || true)"
    for id in $ids; do ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 1
    for id in $ids; do ctr -a "$sock" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr -a "$sock" -n k8s.io containers ls -q 2>/dev/null || true); do
      ctr -a "$sock" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true
    done
  fi
  kill_pod_processes
  stop containerd
  # A shim outlives containerd; ours are the ones whose socket or work dir
  # is in our state dir, found by their command line, killed by PID.
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null || true); do
    log "killing a containerd shim of the node (pid $p)"
    kill -KILL "$p" 2>/dev/null || true
  done
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd

  # The shims' socket directory is fixed (/run/containerd/s); left empty, it
  # goes, as does /run/containerd if nothing else uses it.
  rmdir /run/containerd/s /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd 2>/dev/null || true

  # Mounts under the state dir (kubelet's volumes and root-dir bind mount,
  # containerd's overlay rootfs and sandbox shm), deepest first.
  local m
  if [[ -d "$dir" ]]; then
    while read -r m; do
      umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
  fi
  # Network namespaces containerd made for the sandboxes (cni-…), then the
  # bridge and host-local's allocations.
  for m in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do
    ip netns delete "$m" 2>/dev/null || true
  done
  ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"
  rm -rf "$cni_state" /var/lib/cni/results/smaregi-node-*

  # iptables: our DNAT chain and the KUBE-* chains the kubelet added.
  if iptables -t nat -S SMAREGI-NODE >/dev/null 2>&1; then
    while iptables -t nat -D PREROUTING -j SMAREGI-NODE 2>/dev/null; do :; done
    while iptables -t nat -D OUTPUT -j SMAREGI-NODE 2>/dev/null; do :; done
    iptables -t nat -F SMAREGI-NODE
    iptables -t nat -X SMAREGI-NODE
  fi
  if [[ -f "$dir/iptables.before" ]]; then
    local ipt t c rule
    while read -r ipt t c; do
      grep -qx "$ipt $t $c" "$dir/iptables.before" && continue
      # Jumps to the chain from built-in chains first, then the chain.
      "$ipt" -t "$t" -S | awk -v c="$c" '$1 == "-A" && $2 !~ /^KUBE-/ && / -j / && $NF == c' |
        while read -r rule; do
          # shellcheck disable=SC2086
          "$ipt" -t "$t" ${rule/-A/-D} 2>/dev/null || true
        done
      "$ipt" -t "$t" -F "$c" 2>/dev/null || true
    done < <(iptables_chains)
    while read -r ipt t c; do
      grep -qx "$ipt $t $c" "$dir/iptables.before" && continue
      "$ipt" -t "$t" -X "$c" 2>/dev/null || log "could not delete $ipt chain $t/$c"
    done < <(iptables_chains)
  fi

  # cgroups the kubelet made (kubepods, its QoS and Pod children) in every
  # hierarchy, leaves first. Empty once every container has stopped.
  kill_pod_processes
  local h
  for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    [[ -d "$h" ]] || continue
    find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "$h" ]] && log "could not remove cgroup $h (processes left in it?)"
  done

  if [[ -f "$dir/sysctls.saved" ]]; then
    local kv
    while IFS= read -r kv; do
      [[ "$(sysctl -n "${kv%%=*}" 2>/dev/null)" == "${kv#*=}" ]] && continue
      sysctl -q -w "$kv" >/dev/null 2>&1 || log "could not restore $kv"
    done <"$dir/sysctls.saved"
  fi

  # --one-file-system: should an unmount have failed, rm stops at it
  # instead of deleting what is mounted there.
  rm -rf --one-file-system "$dir"
}

down() {
  need_root
  down_quiet
  log "node down"
}

env_cmd() {
  [[ -f "$kubeconfig" ]] || die "the node is not running (hack/node.sh up)"
  echo "export KUBECONFIG=$kubeconfig"
  echo "export CONTAINERD_ADDRESS=$sock"
  echo "export CONTAINERD_NAMESPACE=k8s.io"
  echo "export PATH=$(cat "$dir/bin-dir"):\$PATH"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) env_cmd ;;
  *) die "usage: $0 up|down|env" ;;
esac
