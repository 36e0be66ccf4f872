#!/usr/bin/env bash
# Stops the cluster test bed started by cluster/up.sh: the supervisor tears down the release's
# pods, nodes, control plane, namespaces and the LocalStack VPC it seeded. LocalStack itself stays.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.run/cluster/state.json
[ -f "$state" ] || { echo "[cluster] not up" >&2; exit 0; }
pid=$(sed -n 's/^  "pid": \([0-9]*\),$/\1/p' "$state")
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null && { echo "[cluster] supervisor $pid still running after 120 s" >&2; exit 1; }
fi
rm -f "$state" .run/cluster/kubeconfig
echo "[cluster] down" >&2
