#!/usr/bin/env bash
# The chaos soak with its prerequisites (setup, build, LocalStack): see docs/reliability.md.
#   bash scripts/soak.sh [--cycles N] [--kills N] [--minutes N] [--fault-share F] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
node scripts/chaos-soak.ts "$@"
