#!/usr/bin/env bash
# Builds the Kubernetes binaries the cluster test bed runs (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl, kube-proxy) from the Go module proxy, and installs the node
# runtime and image tools from Debian (etcd, containerd, runc, mmdebstrap, busybox-static, gcc).
# Binaries are cached under the tools dir by version; re-running skips what is there.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the staging modules with local
# paths), so a small wrapper module requires it and replaces each staging module with the same
# module published at v0.<minor>.<patch>.
set -euo pipefail
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
tools="${VPC_IPAM_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/vpc-ipam/tools}"
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
out="$tools/k8s/$K8S_VERSION"
bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy)

say() { printf '[build-k8s] %s\n' "$*" >&2; }
mkdir -p "$tools/bin"

# --- Debian: etcd, containerd, runc, image tools -----------------------------------------------
need_apt=()
[ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
command -v conntrack >/dev/null || need_apt+=(conntrack)
# the test bed's images (cluster/build-images.ts): a Debian base, busybox, a static pause
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
command -v gcc >/dev/null || need_apt+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need_apt+=(libc6-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { say "missing Debian packages: ${need_apt[*]} (run as root)"; exit 1; }
  say "installing Debian packages: ${need_apt[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # policy-rc.d keeps the packages' services from starting: the test bed runs its own instances.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# --- Kubernetes ----------------------------------------------------------------------------------
# One build at a time per tools dir (several worktrees may run setup at once); the second waits
# and then finds the binaries.
mkdir -p "$tools/k8s"
exec 9>"$tools/k8s/.build.lock"
flock 9
missing=()
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v go >/dev/null || { say "go is needed to build Kubernetes (golang-go)"; exit 1; }
  say "building ${missing[*]} $K8S_VERSION from the Go module proxy (about 10 min on 2 cores cold)"
  staging_version="v0.${K8S_VERSION#v1.}"
  mod="$tools/k8s/wrapper-$K8S_VERSION"
  mkdir -p "$mod" "$out"
  gomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { say "could not download k8s.io/kubernetes@$K8S_VERSION's go.mod"; exit 1; }
  {
    echo "module vpc-ipam.local/k8s-build"
    grep -m1 '^go ' "$gomod"
    grep '^godebug' "$gomod" || true
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod"
    echo ")"
  } >"$mod/go.mod"
  [ "$(grep -c ' => k8s.io/' "$mod/go.mod")" -gt 20 ] || { say "staging replaces not found in $gomod"; exit 1; }
  {
    echo "//go:build tools"
    echo "package tools"
    echo "import ("
    for b in "${bins[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; done
    echo ")"
  } >"$mod/tools.go"
  (
    cd "$mod"
    GOFLAGS=-mod=mod go mod tidy
    minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    ldflags="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    pkgs=(); for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}"
  )
fi
for b in "${bins[@]}"; do
  [ -x "$out/$b" ] || { say "$b was not built"; exit 1; }
  ln -sf "../k8s/$K8S_VERSION/$b" "$tools/bin/$b"
done
say "ready: $("$out/kubectl" version --client 2>/dev/null | head -1), etcd $(/usr/bin/etcd --version 2>/dev/null | head -1)"
