#!/usr/bin/env bash
# Runs the benchmarks (not tests): numbers go to stdout and, with --write, to bench/results/.
#   npm run bench              # both, printed
#   npm run bench -- --write   # both, and refresh bench/results/*.md
# Needs root (network namespaces); installs and starts what it needs (scripts/prepare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh

write=()
[ "${1:-}" = "--write" ] && write=(--write)
echo "== bench/ipamd-socket.ts (daemon socket: cycles/s, p50/p99, RSS)"
node bench/ipamd-socket.ts --cycles 10000
echo "== bench/cni-add-del.ts (vpc-cni vs ptp+host-local, side by side)"
node bench/cni-add-del.ts --iterations 60 --concurrency 50 "${write[@]}"
