#!/usr/bin/env bash
# `npm run demo`, the main job: installs what is missing (scripts/setup.sh), builds the CNI single
# executable, starts LocalStack (or uses the one already running), and runs scripts/demo.ts: two
# nodes in a local VPC of network namespaces, vpc-ipamd on each, pods added and deleted with
# dist/vpc-cni, everything proved with real TCP. See docs/demo.md. Arguments go to demo.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "[demo] needs root (network namespaces, veth, routes, iptables); run it as root" >&2
  exit 1
fi

bash scripts/setup.sh
# Node 24 from the node@24 devDependency, whatever node the machine has.
export PATH="$root/node_modules/.bin:$PATH"

echo "[demo] building dist/vpc-cni" >&2
node scripts/build-cni.ts >&2

export LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
export VPC_IPAM_EC2_ENDPOINT="http://127.0.0.1:${LOCALSTACK_PORT}"
# Stop LocalStack on exit only if this run started it: one already running (anyone's, or another
# run's start.sh) is left alone.
pidfile="$root/.run/localstack/localstack-${LOCALSTACK_PORT}.pid"
had_pidfile=false
[ -f "$pidfile" ] && had_pidfile=true
bash localstack/start.sh
if [ "$had_pidfile" = false ] && [ -f "$pidfile" ]; then
  trap 'bash localstack/stop.sh || true' EXIT
fi

node scripts/demo.ts "$@"
