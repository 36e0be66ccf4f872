#!/usr/bin/env bash
# Runs the benchmarks (not tests): numbers go to stdout and, with --write, to bench/results/.
#   npm run bench              # both, printed
#   npm run bench -- --write   # both, and refresh bench/results/*.md
# Needs root (network namespaces) and installs/starts what it needs like the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"
export LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
export VPC_IPAM_EC2_ENDPOINT="http://127.0.0.1:${LOCALSTACK_PORT}"
had_pid=0; [ -f ".run/localstack/localstack-${LOCALSTACK_PORT}.pid" ] && had_pid=1
bash localstack/start.sh
[ "$had_pid" = 0 ] && trap 'bash localstack/stop.sh || true' EXIT
node scripts/build-cni.ts

write=()
[ "${1:-}" = "--write" ] && write=(--write)
echo "== bench/ipamd-socket.ts (daemon socket: cycles/s, p50/p99, RSS)"
node bench/ipamd-socket.ts --cycles 10000
echo "== bench/cni-add-del.ts (vpc-cni vs ptp+host-local, side by side)"
node bench/cni-add-del.ts --iterations 60 --concurrency 50 "${write[@]}"
