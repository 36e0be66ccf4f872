#!/usr/bin/env bash
# The test command (README quick start, `npm test`, CI): installs what it needs, type-checks,
# lints, builds the CNI single executable, starts LocalStack, and runs every suite (unit,
# integration against LocalStack and local fakes, e2e in network namespaces) with node's test
# runner. Suites that cannot run fail loudly; nothing is skipped.
set -euo pipefail
# npm, pip and go keep their caches under HOME; CI may start us without it.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
cd "$(dirname "$0")/.."
root=$PWD
tools="${VPC_IPAM_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/vpc-ipam/tools}"

if [ "$(id -u)" != 0 ]; then
  echo "[test] the e2e suites need root (network namespaces, veth, iptables); run as root" >&2
  exit 1
fi

bash scripts/setup.sh
export PATH="$root/node_modules/.bin:$tools/bin:$PATH"
export HELM_BIN="$tools/bin/helm"
export KUBERNETES_VALIDATE_BIN="$tools/kv/bin/kubernetes-validate"

echo "[test] typecheck"; tsc -p tsconfig.json
echo "[test] lint"; biome check src test bench scripts localstack
echo "[test] build"; node scripts/build-cni.ts

# One LocalStack for the whole run; every suite seeds its own VPC under its own cluster name.
export LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
export VPC_IPAM_EC2_ENDPOINT="http://127.0.0.1:${LOCALSTACK_PORT}"
bash localstack/start.sh
trap 'bash localstack/stop.sh || true' EXIT

pattern=("test/**/*.test.ts")
[ $# -gt 0 ] && pattern=("$@")
echo "[test] node --test ${pattern[*]}"
node --test --test-reporter=spec --test-timeout=600000 "${pattern[@]}"
