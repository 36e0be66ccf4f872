#!/usr/bin/env bash
# Brings the cluster test bed up (or reuses the one already up) and returns once vpc-ipam is
# Helm-installed: LocalStack, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, two
# nodes (containerd + kubelet + kube-proxy each, in their own network namespace of the local VPC).
# The supervisor (cluster/testbed.ts) keeps running in the background; `bash cluster/down.sh`
# stops it. Prints the KUBECONFIG to use. Needs root. See README "The cluster test bed".
set -euo pipefail
cd "$(dirname "$0")/.."
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
tools="${VPC_IPAM_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/vpc-ipam/tools}"
[ "$(id -u)" = 0 ] || { echo "[cluster] needs root (namespaces, mounts, iptables)" >&2; exit 1; }
run=.run/cluster
state=$run/state.json
if [ -f "$state" ] && kill -0 "$(sed -n 's/^  "pid": \([0-9]*\),$/\1/p' "$state")" 2>/dev/null; then
  echo "[cluster] already up; KUBECONFIG=$PWD/$run/kubeconfig" >&2
  exit 0
fi
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$tools/bin:$PATH"
echo "[cluster] building dist/vpc-cni" >&2
node scripts/build-cni.ts >&2
export LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
export VPC_IPAM_EC2_ENDPOINT="http://127.0.0.1:${LOCALSTACK_PORT}"
# LocalStack stays up after this script (down.sh leaves it alone too: other runs may use it)
bash localstack/start.sh
mkdir -p "$run"
rm -f "$state"
setsid node cluster/testbed.ts >"$run/testbed.log" 2>&1 </dev/null &
pid=$!
echo "[cluster] supervisor $pid starting (log: $run/testbed.log)" >&2
while [ ! -f "$state" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -40 "$run/testbed.log" >&2
    echo "[cluster] the test bed failed to come up (full log: $run/testbed.log)" >&2
    exit 1
  fi
  sleep 1
done
grep -m1 'up in' "$run/testbed.log" >&2 || true
echo "[cluster] up; KUBECONFIG=$PWD/$run/kubeconfig kubectl get nodes -o wide" >&2
