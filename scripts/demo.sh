#!/usr/bin/env bash
# `npm run demo`, the main job: installs what is missing, builds the CNI single executable, starts
# LocalStack (or uses the one already running) — all in scripts/prepare.sh — and runs
# scripts/demo.ts: two nodes in a local VPC of network namespaces, vpc-ipamd on each, pods added
# and deleted with dist/vpc-cni, everything proved with real TCP; then cluster/demo.ts: the same
# product Helm-installed on the cluster test bed (real kube-apiserver, kubelet, containerd), shown
# with kubectl. See docs/demo.md. Arguments go to scripts/demo.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh

node scripts/demo.ts "$@"
node cluster/demo.ts
