#!/usr/bin/env bash
# `npm run demo`, the main job: installs what is missing, builds the CNI single executable, starts
# LocalStack (or uses the one already running) — all in scripts/prepare.sh — and runs
# scripts/demo.ts: two nodes in a local VPC of network namespaces, vpc-ipamd on each, pods added
# and deleted with dist/vpc-cni, everything proved with real TCP. See docs/demo.md. Arguments go
# to demo.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh

node scripts/demo.ts "$@"
