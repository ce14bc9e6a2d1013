#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, built from the package registries, for
# `make kube-up` and the cluster tests.
#
# Usage: scripts/kube.sh {install|install-packages|start|stop|status|reset|kubeconfig|kubectl ARGS...|
#                         load IMAGE.tar|node-ip|guard-drops}
#
#   install     build or fetch every piece (cached under $AGORA_CACHE/kube; a warm run takes
#               seconds): the Kubernetes components and etcd as one binary, CoreDNS and
#               kube-router and local-path-provisioner from their Go modules, containerd, runc
#               and the CNI plugins from Debian, and the pause, CoreDNS and busybox images, made
#               locally
#   install-packages  only the Debian part of install (apt; quick)
#   start       install, then start the cluster; no-op if it runs already; returns once the
#               node is Ready and cluster DNS answers. A cluster whose certificates are not
#               valid at this machine's time (a copied disk, a clock set back) is reset first
#   stop        stop every process the cluster started (its containers too) and restore every
#               host setting it changed: sysctls, folders, iptables chains, ipsets, network
#               devices, mounts, cgroups. The cluster's state (etcd, certificates) stays.
#   status      0 = running and the node Ready, 3 = not running, 1 = partly running
#   reset       stop, then delete the cluster's state (the next start is a new cluster)
#   kubeconfig  print the path of the admin kubeconfig of the running cluster
#   kubectl     run the cluster's kubectl with the admin kubeconfig
#   load        import an OCI image archive (scripts/lib/oci_image.py) into the node
#   node-ip     print the node's IP address (where host services must listen for pods)
#   guard-drops print how many packets the guard chain dropped (0 unless cluster traffic tried
#               to leave the machine)
#
# The pieces: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy (iptables mode) run as host processes; containerd runs the pods with runc on the
# bridge CNI plugin; kube-router's NetworkPolicy controller enforces NetworkPolicies with
# iptables and ipsets; CoreDNS runs as a Deployment in kube-system; local-path-provisioner
# serves the default StorageClass (local-path): each claim a folder under the cluster's state
# (reset deletes them). Versions are pinned in scripts/versions.env. No image is pulled: the
# node has the images made here and whatever `load` imports.
#
# Addresses: the node's IP ($AGORA_KUBE_NODE_IP) sits on a port-less bridge of its own, so the
# API server, the kubelet and NodePorts listen there and nowhere else; pods get addresses from
# $AGORA_KUBE_POD_CIDR and Services from $AGORA_KUBE_SERVICE_CIDR. All of them live only on this
# machine, and a guard chain drops any packet from or to them that would leave by another
# interface. CoreDNS answers cluster names only; it forwards nothing.
#
# Environment:
#   AGORA_CACHE               cache root                    (default: $HOME/.cache/agora)
#   AGORA_KUBE_NODE_IP        the node's address            (default: 10.240.0.1)
#   AGORA_KUBE_POD_CIDR       the node's pod range, a /24   (default: 10.241.0.0/24)
#   AGORA_KUBE_SERVICE_CIDR   Service addresses             (default: 10.242.0.0/16)
#   AGORA_KUBE_START_TIMEOUT  seconds to wait for readiness (default: 180)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/versions.env"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/debian.sh"


# --- Configuration ----------------------------------------------------------

KUBE_HOME="$CACHE_DIR/kube"
BIN="$KUBE_HOME/bin"          # kube (multi-call), containerd, runc, ctr
CNI_BIN="$KUBE_HOME/cni-bin"  # bridge, host-local, loopback, portmap
IMAGES="$KUBE_HOME/images"    # OCI archives of the node's own images
BUILD="$KUBE_HOME/build"      # wrapper module, image root filesystems
DEBS="$CACHE_DIR/debian"      # unpacked Debian packages, shared with scripts/dev-images.sh
STATE="$KUBE_HOME/state"      # the cluster: pki, etcd, kubelet, containerd, logs
VOLUMES="$STATE/volumes"      # PersistentVolumes' folders (local-path-provisioner)

RUN="$STATE/run"              # pid files and logs of the host processes
HOST="$STATE/host"            # host settings as they were before the first start
LOCK="$KUBE_HOME/.lock"

# Go builds keep their module and build caches here too (several GB; a warm relink is seconds).
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod
export GOMODCACHE="$CACHE_DIR/go/mod" GOCACHE="$CACHE_DIR/go/build"

NODE_IP="${AGORA_KUBE_NODE_IP:-10.240.0.1}"
POD_CIDR="${AGORA_KUBE_POD_CIDR:-10.241.0.0/24}"
SERVICE_CIDR="${AGORA_KUBE_SERVICE_CIDR:-10.242.0.0/16}"
START_TIMEOUT="${AGORA_KUBE_START_TIMEOUT:-180}"
NODE_NAME=agora-node
CLUSTER_DOMAIN=cluster.local
NODE_BRIDGE=agk-node0  # carries NODE_IP; no ports
POD_BRIDGE=agk-pods0   # the CNI bridge; the pods' gateway

# Local host ports of the control plane (loopback, except the API server and the kubelet,
# which pods and the API server reach on NODE_IP).
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
APISERVER_PORT=6443
KUBELET_PORT=10250
# Services' NodePorts; the policy engine lets any pod reach these ports on the node.
NODE_PORT_RANGE=30000-32767

# The node's own images: names under a domain of our own, so none can be mistaken for one a
# registry serves (and none is ever pulled: the node has no registry to pull from).
PAUSE_IMAGE="agora.local/kube/pause:1"
COREDNS_IMAGE="agora.local/kube/coredns:$COREDNS_VERSION"
BUSYBOX_IMAGE="agora.local/kube/busybox:1.35"

# Host sysctls the cluster's components change (the kubelet's kernel defaults, the bridge
# plugin's forwarding, kube-proxy's and kube-router's netfilter settings): saved before the
# first start, written back by stop.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet net.ipv4.conf.all.forwarding net.ipv6.conf.all.forwarding
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait net.netfilter.nf_conntrack_tcp_be_liberal)

# Host folders the components create at fixed paths whatever their settings: removed by stop
# if they did not exist before the first start.
HOST_DIRS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd
  /run/netns /var/run/netns /etc/cni /opt/cni /var/lib/kube-router /var/lib/calico)

# The components, in start order; each a host process with a pid file and a log in RUN.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router
  local-path-provisioner)

kubectl_admin() { "$BIN/kube" kubectl --kubeconfig "$STATE/admin.kubeconfig" "$@"; }

# The Nth address of range $1 (1: the Services' API address and the pods' gateway; 10: DNS).
nth_address() { python3 -c "import ipaddress, sys; print(ipaddress.ip_network(sys.argv[1])[int(sys.argv[2])])" "$1" "$2"; }

# --- Install ----------------------------------------------------------------

# Debian packages whose binaries the node runs from a private folder (nothing installed on
# the host, no daemon started by a package script): name, then the paths to take.
debian_extract_node() {
  mkdir -p "$BIN" "$CNI_BIN"
  debian_extract "$DEBS" containerd runc containernetworking-plugins busybox-static
  local x="$DEBS"
  cp -f "$x/x-containerd/usr/bin/containerd" "$x/x-containerd/usr/bin/containerd-shim-runc-v2" \
    "$x/x-containerd/usr/bin/ctr" "$x/x-runc/usr/sbin/runc" "$BIN/"
  local plugin
  for plugin in bridge host-local loopback portmap; do
    cp -f "$x/x-containernetworking-plugins/usr/lib/cni/$plugin" "$CNI_BIN/"
  done
}

# Host tools the components run (iptables and ipset for kube-proxy and kube-router,
# conntrack for kube-proxy): installed with apt-get, idempotently.
host_tools() {
  local missing=() tool pkg
  for tool in iptables:iptables ipset:ipset conntrack:conntrack openssl:openssl gcc:gcc; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]} (apt-get)"
  apt-get update -qq
  for pkg in "${missing[@]}"; do
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  done
}

# The multi-call binary: a wrapper module that requires Kubernetes and etcd and points each
# staging module Kubernetes' go.mod replaces with ./staging at its published build.
build_kube() {
  local stamp source_sum
  source_sum="$(sha256sum "$SCRIPT_DIR/kube/main.go" | cut -c1-12)"
  stamp="$BIN/.kube-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-$source_sum"
  [[ -x "$BIN/kube" && -f "$stamp" ]] && return 0
  command -v go >/dev/null || die "go not found; install Go (>= 1.26) first"
  local dir="$BUILD/kube" k8s="k8s.io/kubernetes@v$KUBERNETES_VERSION" buildlog="$BUILD/kube.log"
  log "building Kubernetes $KUBERNETES_VERSION and etcd $ETCD_VERSION as one binary (cold: 10-20 min; log: $buildlog)"
  local start=$SECONDS
  mkdir -p "$dir"
  : >"$buildlog"
  (
    cd "$dir"
    cp "$SCRIPT_DIR/kube/main.go" main.go
    if [[ ! -f go.mod ]] || ! grep -q "k8s.io/kubernetes v$KUBERNETES_VERSION" go.mod; then
      rm -f go.mod go.sum
      go mod init agora.local/kube >>"$buildlog" 2>&1
      local gomod srcdir
      gomod="$(go mod download -json "$k8s" | awk -F'"' '$2 == "GoMod" { print $4 }')"
      srcdir="$GOMODCACHE/$k8s"
      [[ -f "$gomod" ]] || die "cannot download $k8s"
      # The release's go.sum vouches for the versions it requires.
      cp "$srcdir/go.sum" go.sum && chmod u+w go.sum
      local -a edits=(-go=1.24.0 -require="$k8s" -require="go.etcd.io/etcd/server/v3@v$ETCD_VERSION")
      local module version
      while read -r module; do
        version="v$KUBERNETES_STAGING_VERSION"
        case "$module" in k8s.io/sample-cli-plugin | k8s.io/sample-controller) version="v$KUBERNETES_SAMPLES_VERSION" ;; esac
        edits+=(-replace="$module=$module@$version")
      done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$gomod")
      ((${#edits[@]} > 20)) || die "found no staging replaces in $gomod"
      go mod edit "${edits[@]}"
      go mod tidy >>"$buildlog" 2>&1 || { tail -n 30 "$buildlog" >&2; die "go mod tidy failed (log: $buildlog)"; }
    fi
    local v="v$KUBERNETES_VERSION" major="${KUBERNETES_VERSION%%.*}" minor
    minor="$(cut -d. -f2 <<<"$KUBERNETES_VERSION")"
    local ldx="" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldx+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    go build -trimpath -ldflags="-s -w$ldx" -o "$BIN/kube.tmp" . >>"$buildlog" 2>&1 \
      || { tail -n 30 "$buildlog" >&2; die "go build failed (log: $buildlog)"; }
  )
  mv -f "$BIN/kube.tmp" "$BIN/kube"
  rm -f "$BIN"/.kube-*
  touch "$stamp"
  log "built $BIN/kube in $((SECONDS - start))s"
}

# An image from a folder: the node's own images are single-layer archives.
make_image() {
  local name="$1" rootfs="$2" out="$3"
  shift 3
  python3 "$SCRIPT_DIR/lib/oci_image.py" --rootfs "$rootfs" --name "$name" --out "$out" "$@" >/dev/null
}

build_images() {
  mkdir -p "$IMAGES"
  local root="$BUILD/rootfs"
  if [[ ! -f "$IMAGES/pause.tar" || "$SCRIPT_DIR/kube/pause.c" -nt "$IMAGES/pause.tar" ]]; then
    rm -rf "$root" && mkdir -p "$root/pause"
    gcc -static -Os -s -o "$root/pause/pause" "$SCRIPT_DIR/kube/pause.c"
    make_image "$PAUSE_IMAGE" "$root/pause" "$IMAGES/pause.tar" --entrypoint '["/pause"]' --user 65535:65535
  fi
  if [[ ! -f "$IMAGES/coredns-$COREDNS_VERSION.tar" ]]; then
    rm -rf "$root" && mkdir -p "$root/coredns"
    cp "$(bash "$SCRIPT_DIR/go-tools.sh" path coredns)" "$root/coredns/coredns"
    rm -f "$IMAGES"/coredns-*.tar
    make_image "$COREDNS_IMAGE" "$root/coredns" "$IMAGES/coredns-$COREDNS_VERSION.tar" \
      --entrypoint '["/coredns"]' --user 65532:65532
  fi
  if [[ ! -f "$IMAGES/busybox.tar" ]]; then
    rm -rf "$root" && mkdir -p "$root/busybox/bin" "$root/busybox/tmp"
    cp "$DEBS/x-busybox-static/bin/busybox" "$root/busybox/bin/busybox"
    local applet
    for applet in sh nc wget cat ls sleep id touch timeout nslookup echo test true false; do
      ln -s busybox "$root/busybox/bin/$applet"
    done
    chmod 1777 "$root/busybox/tmp"
    make_image "$BUSYBOX_IMAGE" "$root/busybox" "$IMAGES/busybox.tar" \
      --entrypoint '["/bin/sh"]' --env PATH=/bin --user 65532:65532
  fi
  rm -rf "$root"
}

cmd_install_packages() {
  mkdir -p "$KUBE_HOME"
  host_tools
  [[ -x "$BIN/containerd" && -x "$CNI_BIN/bridge" && -x "$DEBS/x-busybox-static/bin/busybox" ]] || debian_extract_node
}

cmd_install() {
  cmd_install_packages
  build_kube
  bash "$SCRIPT_DIR/go-tools.sh" install coredns kube-router local-path-provisioner
  local tool
  for tool in kube-router local-path-provisioner; do
    ln -sf "$(bash "$SCRIPT_DIR/go-tools.sh" path "$tool")" "$BIN/$tool"
  done
  build_images
}

# --- Host settings ----------------------------------------------------------

# Record, once per cluster life, what stop must put back. A start after a crash (no stop)
# keeps the first record: that is the host as it was before the cluster.
save_host() {
  [[ -f "$HOST/saved" ]] && return 0
  mkdir -p "$HOST"
  local key value
  : >"$HOST/sysctl"
  for key in "${SYSCTLS[@]}"; do
    value="$(sysctl -n "$key" 2>/dev/null)" || continue
    printf '%s=%s\n' "$key" "$value" >>"$HOST/sysctl"
  done
  : >"$HOST/absent-dirs"
  local dir
  for dir in "${HOST_DIRS[@]}"; do
    [[ -e "$dir" || -L "$dir" ]] || printf '%s\n' "$dir" >>"$HOST/absent-dirs"
  done
  ipset list -n 2>/dev/null | sort >"$HOST/ipsets" || true
  nft list tables 2>/dev/null | sort >"$HOST/nft-tables" || true
  local family table
  for family in iptables ip6tables; do
    for table in filter nat mangle raw; do
      "$family-save" -t "$table" 2>/dev/null | awk '/^:/ { print $1 }' | sort >"$HOST/$family-$table-chains" || true
    done
  done
  touch "$HOST/saved"
}

# Every chain a component of ours makes starts with one of these.
OUR_CHAINS='^:?(KUBE-|CNI-|AGORA-KUBE)'

# Remove our chains (and every rule that jumps to them) from one table, keeping the rest.
iptables_clean_table() {
  local family="$1" table="$2" saved
  saved="$("$family-save" -t "$table" 2>/dev/null)" || return 0
  grep -qE -- "$OUR_CHAINS|-j (KUBE-|CNI-|AGORA-KUBE)" <<<"$saved" || return 0
  grep -vE -- "$OUR_CHAINS|-A (KUBE-|CNI-|AGORA-KUBE)[^ ]* |-j (KUBE-|CNI-|AGORA-KUBE)|-g (KUBE-|CNI-)" <<<"$saved" \
    | "$family-restore" -T "$table" \
    || log "warning: could not remove the cluster's chains from $family $table"
}

restore_host() {
  [[ -f "$HOST/saved" ]] || return 0
  local family table
  for family in iptables ip6tables; do
    for table in filter nat mangle raw; do
      iptables_clean_table "$family" "$table"
    done
  done
  local table_line words
  while read -r table_line; do
    [[ -n "$table_line" ]] || continue
    grep -qxF "$table_line" "$HOST/nft-tables" 2>/dev/null && continue
    read -r -a words <<<"${table_line#table }"
    nft delete table "${words[@]}" 2>/dev/null || log "warning: could not delete nft $table_line"
  done < <(nft list tables 2>/dev/null)
  local set
  while read -r set; do
    [[ -n "$set" ]] || continue
    grep -qxF "$set" "$HOST/ipsets" 2>/dev/null || ipset destroy "$set" 2>/dev/null \
      || log "warning: could not destroy ipset $set"
  done < <(ipset list -n 2>/dev/null)
  local link
  for link in "$POD_BRIDGE" "$NODE_BRIDGE"; do
    ip link show "$link" >/dev/null 2>&1 && ip link delete "$link"
  done
  # Veths whose pod end went with its network namespace go by themselves; any left is ours.
  while read -r link; do
    ip link delete "$link" 2>/dev/null || true
  done < <(ip -o link show type veth 2>/dev/null | awk -F': ' '$2 ~ /^veth/ && /master '"$POD_BRIDGE"'/ { sub(/@.*/, "", $2); print $2 }')
  local kv
  while read -r kv; do
    [[ -n "$kv" ]] || continue
    [[ "$(sysctl -n "${kv%%=*}" 2>/dev/null)" == "${kv#*=}" ]] || sysctl -qw "$kv" >/dev/null 2>&1 \
      || log "warning: could not restore sysctl $kv"
  done <"$HOST/sysctl"
  local dir
  while read -r dir; do
    [[ -n "$dir" ]] || continue
    unmount_under "$dir"
    rm -rf "$dir"
  done <"$HOST/absent-dirs"
  rm -rf "$HOST"
}

# Unmount everything mounted at or below $1, deepest first.
unmount_under() {
  local target
  findmnt -rn -o TARGET 2>/dev/null | awk -v p="$1" 'index($0, p) == 1 && (length($0) == length(p) || substr($0, length(p) + 1, 1) == "/")' \
    | sort -r | while read -r target; do
      umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || log "warning: could not unmount $target"
    done
}

# --- Certificates and kubeconfigs -------------------------------------------

# The validity period of the cluster's CA, as openssl prints it.
pki_validity() {
  openssl x509 -in "$STATE/pki/ca.crt" -noout -startdate -enddate 2>/dev/null | tr '\n' ' ' | sed 's/ $//'
}

# True unless the cluster has certificates and this machine's clock is outside their validity
# (every certificate is made with the CA, so the CA's period stands for all of them).
pki_valid_now() {
  [[ -f "$STATE/pki/done" ]] || return 0
  local not_before
  not_before="$(openssl x509 -in "$STATE/pki/ca.crt" -noout -startdate 2>/dev/null | cut -d= -f2)" || return 1
  [[ -n "$not_before" ]] || return 1
  (($(date -d "$not_before" +%s) <= $(date +%s))) || return 1
  openssl x509 -in "$STATE/pki/ca.crt" -noout -checkend 86400 >/dev/null 2>&1
}

# One CA signs every certificate; each client's identity is its subject (CN user, O group).
pki() {
  local p="$STATE/pki"
  [[ -f "$p/done" ]] && return 0
  rm -rf "$p" && mkdir -p "$p"
  local service_ip
  service_ip="$(nth_address "$SERVICE_CIDR" 1)"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=agora-kube-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  cert() {  # name subject [subjectAltName]
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$p/$1.key" -out "$p/$1.csr" 2>/dev/null
    local ext="$p/$1.ext"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' \
      "${3:+serverAuth,}clientAuth" >"$ext"
    [[ -n "${3:-}" ]] && printf 'subjectAltName=%s\n' "$3" >>"$ext"
    openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
      -days 3650 -extfile "$ext" -out "$p/$1.crt" 2>/dev/null
    rm -f "$p/$1.csr" "$ext"
  }
  cert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:$service_ip,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=agora-admin"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert kubelet-server "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kube-proxy "/CN=system:kube-proxy"
  cert kube-router "/CN=agora:kube-router"
  cert local-path-provisioner "/CN=agora:local-path-provisioner"
  chmod 600 "$p"/*.key
  local who
  for who in admin kubelet controller-manager scheduler kube-proxy kube-router local-path-provisioner; do
    kubeconfig_for "$who" >"$STATE/$who.kubeconfig"
  done
  touch "$p/done"
}

kubeconfig_for() {
  local p="$STATE/pki"
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: agora
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority: $p/ca.crt
users:
- name: $1
  user:
    client-certificate: $p/$1.crt
    client-key: $p/$1.key
contexts:
- name: agora
  context: {cluster: agora, user: $1}
current-context: agora
EOF
}

# --- Configuration files ----------------------------------------------------

# Write stdin to file $1 only if it differs: kube-proxy exits when its config file changes, so a
# start that finds it running must leave the file alone.
put() {
  local tmp="$1.tmp"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

write_configs() {
  local c="$STATE/config"
  mkdir -p "$c" "$STATE/cni/net.d" "$STATE/containerd" "$STATE/kubelet" "$STATE/logs/pods"
  put "$c/containerd.toml" <<EOF
# Generated by scripts/kube.sh on each start.
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$STATE/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM lacks CAP_SYS_RESOURCE: no process may lower an oom_score_adj, so containers keep
  # what they inherit instead of failing to start.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$BIN/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$STATE/cni/net.d"
EOF
  local gateway
  gateway="$(nth_address "$POD_CIDR" 1)"
  put "$STATE/cni/net.d/10-agora.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "agora",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$gateway"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  printf '# No upstream resolver: cluster DNS answers cluster names only.\n' | put "$c/resolv.conf"
  local p="$STATE/pki"
  put "$c/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $p/kubelet-server.crt
tlsPrivateKeyFile: $p/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $p/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$STATE/containerd.sock
# cgroups v1 on this VM: the cgroupfs driver, and 1.34's deprecation check turned off.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE: the kubelet may not give itself a negative oom_score_adj.
oomScoreAdj: 0
clusterDNS: [$(nth_address "$SERVICE_CIDR" 10)]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $c/resolv.conf
podLogsDir: $STATE/logs/pods
staticPodPath: ""
serializeImagePulls: false
# A developer's disk fills up; the test cluster must not evict its pods for it.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 110
EOF
  put "$c/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
iptables: {localhostNodePorts: false, masqueradeAll: false}
# 0: leave the host's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
oomScoreAdj: 0
EOF
}

# --- Processes --------------------------------------------------------------

pidfile() { printf '%s/%s.pid\n' "$RUN" "$1"; }
logfile() { printf '%s/%s.log\n' "$RUN" "$1"; }
# What a component's command line contains (daemon_pid's guard against a reused pid).
pattern_of() {
  case "$1" in
    containerd) printf '%s\n' "--config $STATE/config/containerd.toml" ;;
    *) printf '%s\n' "$1" ;;
  esac
}
component_pid() { daemon_pid "$(pidfile "$1")" "$(pattern_of "$1")"; }

launch() {
  local name="$1"
  shift
  component_pid "$name" >/dev/null && return 0
  daemon_launch "$(pidfile "$name")" "$(logfile "$name")" env PATH="$BIN:$CNI_BIN:$PATH" "$@"
}

# wait_for NAME TIMEOUT CHECK...
wait_for() {
  local name="$1" timeout="$2" pid
  shift 2
  pid="$(component_pid "$name")" || { tail -n 30 "$(logfile "$name")" >&2 || true; die "$name is not running (log: $(logfile "$name"))"; }
  daemon_wait_ready "$pid" "$(pidfile "$name")" "$(logfile "$name")" "$timeout" "$@"
}

etcd_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; }
apiserver_ready() {
  curl -fsS --max-time 2 --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" \
    "https://$NODE_IP:$APISERVER_PORT/readyz" >/dev/null 2>&1
}
containerd_ready() { "$BIN/ctr" --address "$STATE/containerd.sock" version >/dev/null 2>&1; }
node_ready() {
  [[ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
policy_engine_ready() { iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1; }

# The node's network: its own bridge with NODE_IP, forwarding on, and the guard chain.
node_network() {
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip addr show dev "$NODE_BRIDGE" | grep -qF " $NODE_IP/" || ip addr add "$NODE_IP/32" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1 >/dev/null
  # Pod and Service addresses exist only on this machine: drop any packet from or to them that
  # would leave through another interface (a misrouted packet, a pod reaching for the
  # internet). Counted, so the tests can show it stayed at 0.
  iptables -N AGORA-KUBE-GUARD 2>/dev/null || iptables -F AGORA-KUBE-GUARD
  iptables -N AGORA-KUBE-LEAVING 2>/dev/null || iptables -F AGORA-KUBE-LEAVING
  iptables -A AGORA-KUBE-LEAVING -o lo -j RETURN
  iptables -A AGORA-KUBE-LEAVING -o "$POD_BRIDGE" -j RETURN
  iptables -A AGORA-KUBE-LEAVING -o "$NODE_BRIDGE" -j RETURN
  iptables -A AGORA-KUBE-LEAVING -o "veth+" -j RETURN
  iptables -A AGORA-KUBE-LEAVING -m comment --comment "agora kube: cluster traffic stays on this machine" -j DROP
  local cidr
  for cidr in "$POD_CIDR" "$SERVICE_CIDR"; do
    iptables -A AGORA-KUBE-GUARD -s "$cidr" -j AGORA-KUBE-LEAVING
    iptables -A AGORA-KUBE-GUARD -d "$cidr" -j AGORA-KUBE-LEAVING
  done
  local hook
  for hook in FORWARD OUTPUT; do
    iptables -C "$hook" -j AGORA-KUBE-GUARD 2>/dev/null || iptables -I "$hook" 1 -j AGORA-KUBE-GUARD
  done
}

# Packets the guard dropped (0 in every healthy run).
guard_drops() { iptables -nvxL AGORA-KUBE-LEAVING 2>/dev/null | awk '$3 == "DROP" { n += $1 } END { print n + 0 }'; }

start_containerd() {
  launch containerd "$BIN/containerd" --config "$STATE/config/containerd.toml"
}

start_etcd() {
  launch etcd "$BIN/kube" etcd --name agora --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "agora=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
    --quota-backend-bytes $((2 * 1024 * 1024 * 1024))
}

start_control_plane() {
  local p="$STATE/pki"
  launch kube-apiserver "$BIN/kube" kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range "$NODE_PORT_RANGE" \
    --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" --kubelet-client-key "$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$p/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --authorization-mode Node,RBAC --allow-privileged=true --profiling=false \
    --enable-admission-plugins NodeRestriction
  wait_for kube-apiserver "$START_TIMEOUT" apiserver_ready
  launch kube-controller-manager "$BIN/kube" kube-controller-manager \
    --kubeconfig "$STATE/controller-manager.kubeconfig" --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" --bind-address 127.0.0.1 \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
    --use-service-account-credentials --leader-elect=false --profiling=false \
    --allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size "${POD_CIDR#*/}" \
    --service-cluster-ip-range "$SERVICE_CIDR" --controllers '*,-cloud-node-lifecycle'
  launch kube-scheduler "$BIN/kube" kube-scheduler \
    --kubeconfig "$STATE/scheduler.kubeconfig" --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

start_node() {
  launch kubelet "$BIN/kube" kubelet --config "$STATE/config/kubelet.yaml" \
    --kubeconfig "$STATE/kubelet.kubeconfig" --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  launch kube-proxy "$BIN/kube" kube-proxy --config "$STATE/config/kube-proxy.yaml"
  # Only the NetworkPolicy controller: no routing (one node), no service proxy (kube-proxy's).
  launch kube-router "$BIN/kube-router" --run-firewall=true --run-router=false --run-service-proxy=false \
    --kubeconfig "$STATE/kube-router.kubeconfig" --hostname-override "$NODE_NAME" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range "$NODE_PORT_RANGE" \
    --health-port 0 --metrics-port 0 --enable-cni=false --enable-ipv6=false
}

import_images() {
  local tar
  for tar in "$IMAGES"/*.tar; do
    "$BIN/ctr" --address "$STATE/containerd.sock" -n k8s.io images import --no-unpack=false "$tar" >/dev/null \
      || die "could not import $tar"
  done
}

cmd_load() {
  [[ $# -eq 1 && -f "$1" ]] || die "usage: $0 load IMAGE.tar (an OCI archive, e.g. from make images)"
  component_pid containerd >/dev/null || die "the cluster is not running; start it: $0 start"
  "$BIN/ctr" --address "$STATE/containerd.sock" -n k8s.io images import "$1" >/dev/null || die "could not import $1"
  log "loaded $1"
}

addons() {
  mkdir -p "$VOLUMES"
  sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@DNS_IP@|$(nth_address "$SERVICE_CIDR" 10)|g" \
    -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" -e "s|@BUSYBOX_IMAGE@|$BUSYBOX_IMAGE|g" \
    -e "s|@VOLUMES_DIR@|$VOLUMES|g" "$SCRIPT_DIR/kube/addons.yaml" | kubectl_admin apply -f - >/dev/null
}

# The storage provisioner reads its settings from the add-ons' ConfigMap: started after them.
start_storage() {
  launch local-path-provisioner "$BIN/local-path-provisioner" start \
    --kubeconfig "$STATE/local-path-provisioner.kubeconfig" --namespace local-path-storage \
    --service-account-name local-path-helper --helper-image "$BUSYBOX_IMAGE"
}

dns_ready() {
  [[ "$(kubectl_admin -n kube-system get deploy coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" -ge 1 ]]
}

cmd_start() {
  [[ "$(id -u)" -eq 0 ]] || die "the cluster needs root (network devices, iptables, mounts)"
  cmd_install
  daemon_lock "$LOCK" 600
  if cmd_status_quiet; then
    log "running: node $NODE_NAME Ready at https://$NODE_IP:$APISERVER_PORT"
    return 0
  fi
  local begin=$SECONDS
  if ! pki_valid_now; then
    # A cluster made while this machine's clock said otherwise (a disk copied to another
    # machine, a VM started from a snapshot) holds certificates that are not valid now, and
    # every TLS handshake in it would fail: it is reset and a new one starts.
    log "the cluster's certificates are not valid at $(date -u '+%F %T') UTC ($(pki_validity)): resetting the cluster"
    cmd_reset
  fi
  mkdir -p "$STATE" "$RUN"
  save_host
  node_network
  pki
  write_configs
  start_containerd
  start_etcd
  wait_for containerd 60 containerd_ready
  import_images
  wait_for etcd 60 etcd_ready
  start_control_plane
  start_node
  # The policy engine's access, cluster DNS and storage, applied as soon as the API answers.
  addons
  start_storage
  wait_for kubelet "$START_TIMEOUT" node_ready
  log "node Ready in $((SECONDS - begin))s"
  wait_for kube-router 60 policy_engine_ready
  wait_for kubelet "$START_TIMEOUT" dns_ready
  log "cluster ready in $((SECONDS - begin))s: kubectl --kubeconfig $STATE/admin.kubeconfig (or: $0 kubectl ...)"
}

# Kill every container of the node (and its sandbox) through containerd, then whatever is left
# in the pods' cgroups.
stop_containers() {
  local ctr=("$BIN/ctr" --address "$STATE/containerd.sock" -n k8s.io) id
  if containerd_ready; then
    for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    local deadline=$((SECONDS + 20))
    while "${ctr[@]}" tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING" { found = 1 } END { exit !found }' \
      && ((SECONDS < deadline)); do
      sleep 0.2
    done
    for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  # Anything still in a pod cgroup (containerd gone before its tasks) is killed there.
  local procs pid
  while read -r procs; do
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$procs"
  done < <(find /sys/fs/cgroup/*/kubepods -name cgroup.procs 2>/dev/null)
}

# Remove the pod cgroups the kubelet made, deepest first, once empty.
remove_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$dir" ]] || continue
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "$dir" ]] && log "warning: could not remove $dir"
  done
  return 0
}

cmd_stop() {
  daemon_lock "$LOCK" 600
  local name i
  for name in kube-router kube-proxy kubelet; do
    daemon_stop "$(pidfile "$name")" "$(pattern_of "$name")" 20 2>&1 | sed "s/^\[kube\]/[kube] $name:/" >&2
  done
  stop_containers
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    name="${COMPONENTS[i]}"
    daemon_stop "$(pidfile "$name")" "$(pattern_of "$name")" 20 2>&1 | sed "s/^\[kube\]/[kube] $name:/" >&2
  done
  # A shim outlives containerd by design; ours are told apart by our containerd's address.
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $STATE/containerd.sock" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  stop_containers
  remove_cgroups
  # Network namespaces of pods (CNI's cni-* under /run/netns), and every mount of ours.
  local ns
  for ns in /run/netns/cni-* /var/run/netns/cni-*; do
    [[ -e "$ns" ]] || continue
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  unmount_under "$STATE"
  unmount_under /run/containerd
  unmount_under /var/lib/kubelet
  restore_host
  log "stopped; host settings restored"
}

cmd_status_quiet() {
  local name running=0
  for name in "${COMPONENTS[@]}"; do
    component_pid "$name" >/dev/null && running=$((running + 1))
  done
  ((running == ${#COMPONENTS[@]})) || return $((running == 0 ? 3 : 1))
  node_ready || return 1
}

cmd_status() {
  local name rc=0
  for name in "${COMPONENTS[@]}"; do
    if pid="$(component_pid "$name")"; then
      printf '%-24s running (pid %s)\n' "$name" "$pid"
    else
      printf '%-24s not running\n' "$name"
    fi
  done
  cmd_status_quiet || rc=$?
  case "$rc" in
    0) printf 'node %s Ready at https://%s:%s; guard drops: %s\n' "$NODE_NAME" "$NODE_IP" "$APISERVER_PORT" "$(guard_drops)" ;;
    3) printf 'cluster not running\n' ;;
    *) printf 'cluster partly running or node not Ready (logs: %s)\n' "$RUN" ;;
  esac
  return "$rc"
}

cmd_reset() {
  cmd_stop
  rm -rf "$STATE"
  log "state deleted; the next start makes a new cluster"
}

cmd_kubeconfig() {
  component_pid kube-apiserver >/dev/null || die "the cluster is not running; start it: $0 start"
  printf '%s\n' "$STATE/admin.kubeconfig"
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    install) cmd_install ;;
    install-packages) cmd_install_packages ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    kubeconfig) cmd_kubeconfig ;;
    kubectl) kubectl_admin "$@" ;;
    load) cmd_load "$@" ;;
    node-ip) printf '%s\n' "$NODE_IP" ;;
    guard-drops) guard_drops ;;
    *) usage ;;
  esac
}

main "$@"
