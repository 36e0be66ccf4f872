#!/usr/bin/env bash
# Stops the LocalStack that start.sh started on $LOCALSTACK_PORT (default 4566), and only that one:
# an instance started some other way is left running.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${LOCALSTACK_PORT:-4566}"
pidfile="$root/.run/localstack/localstack-$port.pid"
say() { printf '[localstack] %s\n' "$*" >&2; }

if [ ! -f "$pidfile" ]; then
  say "nothing started by start.sh on port $port"
  exit 0
fi
pid="$(cat "$pidfile")"
# Only signal the pid if it still is the LocalStack we started (pids get reused).
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null ||
  ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'localstack.runtime.main'; then
  say "pid file $pidfile is stale; removing it"
  rm -f "$pidfile"
  exit 0
fi
say "stopping LocalStack (pid $pid, port $port)"
kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
for ((i = 0; i < 40; i++)); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then
  say "still running after 20s; sending SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$pidfile"
say "stopped"
