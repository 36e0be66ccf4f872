#!/usr/bin/env bash
# The test command (README quick start, `npm test`, CI): installs what it needs, builds the CNI
# single executable and starts LocalStack (scripts/prepare.sh), type-checks, lints, and runs every
# suite (unit, integration against LocalStack and local fakes, e2e in network namespaces) with
# node's test runner. Suites that cannot run fail loudly; nothing is skipped.
# One LocalStack serves the whole run; every suite seeds its own VPC under its own cluster name.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh

echo "[test] typecheck"; tsc -p tsconfig.json
echo "[test] lint"; biome check src test bench scripts localstack cluster

pattern=("test/**/*.test.ts")
[ $# -gt 0 ] && pattern=("$@")
echo "[test] node --test ${pattern[*]}"
node --test --test-reporter=spec --test-timeout=600000 "${pattern[@]}"
