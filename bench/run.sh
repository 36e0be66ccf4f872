#!/usr/bin/env bash
# Runs the benchmarks (not tests) and writes every results file in bench/results/ (each script
# writes its own, verdicts computed from its numbers):
#   npm run bench
# Needs root (network namespaces); installs, builds and starts what it needs (scripts/prepare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh

echo "== bench/ipamd-socket.ts (daemon socket: cycles/s, latency, group commit, RSS curve)"
node bench/ipamd-socket.ts --cycles 20000 --concurrency 1,32 --memory-cycles 100000 --write
echo "== bench/cni-add-del.ts (vpc-cni vs ptp+host-local, side by side)"
node bench/cni-add-del.ts --iterations 60 --concurrency 50 --write
echo "== bench/burst.ts (a burst of pods against a slow cloud: vpc-ipam vs the AWS VPC CNI)"
node bench/burst.ts --runs m5.large:30 --write
node bench/burst.ts --runs m5.4xlarge:110 --write --out burst-m5.4xlarge.md
echo "== bench/daemon-restart.ts (vpc-ipamd kill -9 to ready: the bundle vs the sources)"
node bench/daemon-restart.ts --restarts 8 --write
echo "== bench/ipvlan-vs-veth.ts (CNI ADD/DEL, ipvlan vs routed veth, in the VM with Debian's 6.1 kernel)"
node bench/ipvlan-vs-veth.ts --write
