#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently, on a fresh Debian machine:
# Debian packages (iproute2, iptables, nftables, reference CNI plugins), npm packages (Node 24
# comes in as the node@24 devDependency), the CNI shim's Go modules, the LocalStack venv, helm,
# ec2-metadata-mock and the AWS VPC CNI (Go module proxy), the cluster test bed's Kubernetes
# binaries and node runtime (cluster/build-k8s.sh), the VM for the stock-kernel suites
# (scripts/setup-vm.sh) and kubernetes-validate (PyPI). Re-running skips what is already there.
set -euo pipefail
# npm, pip and go keep their caches under HOME; CI may start us without it.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
cd "$(dirname "$0")/.."
root=$PWD
tools="${VPC_IPAM_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/vpc-ipam/tools}"
mkdir -p "$tools/bin"

say() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v nft >/dev/null || need_apt+=(nftables)
command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v curl >/dev/null || need_apt+=(curl)
command -v openssl >/dev/null || need_apt+=(openssl)
[ -x /usr/lib/cni/ptp ] || need_apt+=(containernetworking-plugins)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing Debian packages: ${need_apt[*]} (run as root, or apt-get install them)"; exit 1
  fi
  say "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- npm packages (Node 24 arrives as node_modules/.bin/node) --------------------------------
stamp=node_modules/.vpc-ipam-lock
if [ ! -x node_modules/.bin/node ] || ! cmp -s package-lock.json "$stamp"; then
  say "installing npm packages"
  # npm install, not npm ci: the registry mirror lacks some of biome's off-platform optional
  # packages, which npm ci insists on seeing in the lock file; the lock still pins every version.
  npm install --no-fund --no-audit --loglevel=error
  cp package-lock.json "$stamp"
fi
node24=$root/node_modules/.bin/node
"$node24" -e 'if (+process.versions.node.split(".")[0] < 24) { console.error("node_modules/.bin/node is not Node 24"); process.exit(1) }'

# --- the CNI shim's Go modules (netlink, from the Go module proxy): scripts/build-cni.ts then
# builds dist/vpc-cni from the module cache --------------------------------------------------
command -v go >/dev/null || { say "go is needed to build the CNI shim (golang-go)"; exit 1; }
(cd src/cni/shim && GOFLAGS= GOTOOLCHAIN=local go mod download)

# --- LocalStack venv ---------------------------------------------------------------------------
bash localstack/setup-venv.sh

# --- helm (built from the Go module proxy) ----------------------------------------------------
if [ ! -x "$tools/bin/helm" ]; then
  command -v go >/dev/null || { say "go is needed to install helm (golang-go)"; exit 1; }
  say "building helm v4.2.4 with go install (a few minutes on a fresh machine)"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install helm.sh/helm/v4/cmd/helm@v4.2.4
fi

# --- ec2-metadata-mock (Go module proxy): the real IMDS mock for the AWS VPC CNI takeover tests ---
if [ ! -x "$tools/bin/ec2-metadata-mock" ]; then
  command -v go >/dev/null || { say "go is needed to install ec2-metadata-mock (golang-go)"; exit 1; }
  say "building ec2-metadata-mock v1.13.0 with go install"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod nice -n 10 go install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0
fi

# --- the AWS VPC CNI v1.23.2 (Go module proxy): aws-node's daemon and plugin, for the takeover
# tests and side-by-side benchmarks; cached by version under $tools/aws-vpc-cni/ ---------------
VPC_IPAM_TOOLS="$tools" bash scripts/build-aws-vpc-cni.sh

# --- the cluster test bed: Kubernetes from the Go module proxy, etcd/containerd/runc and image
# tools from Debian (about 10 min of CPU on a fresh machine; cached by version) -----------------
bash cluster/build-k8s.sh

# --- the VM for stock-kernel suites (Debian kernel, qemu, virtme-ng) ----------------------------
VPC_IPAM_TOOLS="$tools" bash scripts/setup-vm.sh

# --- kubernetes-validate (PyPI) ----------------------------------------------------------------
if [ ! -x "$tools/kv/bin/kubernetes-validate" ]; then
  say "installing kubernetes-validate"
  python3 -m venv "$tools/kv"
  "$tools/kv/bin/pip" install -q kubernetes-validate
fi

say "ready: node $("$node24" --version), helm $("$tools/bin/helm" version --short 2>/dev/null || echo '?')"
