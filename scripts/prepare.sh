# Sourced (not run) by scripts/test.sh, scripts/demo.sh and bench/run.sh: installs what is missing,
# puts Node 24 and the tools first on PATH, builds dist/vpc-cni and starts LocalStack. LocalStack is
# stopped on exit only if this run started it; one already running (anyone's, or another run's
# start.sh) is left alone. Expects to be sourced from the repository root with `set -euo pipefail`.
# npm, pip and go keep their caches under HOME; CI may start us without it.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
root=$PWD
tools="${VPC_IPAM_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/vpc-ipam/tools}"

if [ "$(id -u)" != 0 ]; then
  echo "[vpc-ipam] needs root (network namespaces, veth, routes, iptables); run it as root" >&2
  exit 1
fi

bash scripts/setup.sh
export PATH="$root/node_modules/.bin:$tools/bin:$PATH"
export HELM_BIN="$tools/bin/helm"
export KUBERNETES_VALIDATE_BIN="$tools/kv/bin/kubernetes-validate"

echo "[vpc-ipam] building dist/vpc-cni" >&2
node scripts/build-cni.ts >&2

export LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
export VPC_IPAM_EC2_ENDPOINT="http://127.0.0.1:${LOCALSTACK_PORT}"
pidfile="$root/.run/localstack/localstack-${LOCALSTACK_PORT}.pid"
had_pidfile=false
[ -f "$pidfile" ] && had_pidfile=true
bash localstack/start.sh
if [ "$had_pidfile" = false ] && [ -f "$pidfile" ]; then
  trap 'bash localstack/stop.sh || true' EXIT
fi
