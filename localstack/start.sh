#!/usr/bin/env bash
# Starts LocalStack (EC2 + STS) without Docker on 127.0.0.1:$LOCALSTACK_PORT and waits until EC2
# is healthy. If a healthy LocalStack already answers on that port (ours or anyone's), says so and
# leaves it alone.
#
#   LOCALSTACK_PORT           default 4566
#   LOCALSTACK_START_TIMEOUT  seconds to wait for health (default 120)
#   LOCALSTACK_VENV           see setup-venv.sh
#
# State, log and pid file live in <repo>/.run/localstack/ (gitignored); stop.sh stops only what
# this script started.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${LOCALSTACK_PORT:-4566}"
timeout="${LOCALSTACK_START_TIMEOUT:-120}"
venv="${LOCALSTACK_VENV:-$root/.venv/localstack}"
run="$root/.run/localstack"
pidfile="$run/localstack-$port.pid"
log="$run/localstack-$port.log"
health="http://127.0.0.1:$port/_localstack/health"
say() { printf '[localstack] %s\n' "$*" >&2; }

[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] ||
  { say "LOCALSTACK_PORT must be a port number 1-65535, got '$port'"; exit 2; }
[[ "$timeout" =~ ^[0-9]+$ ]] || { say "LOCALSTACK_START_TIMEOUT must be whole seconds, got '$timeout'"; exit 2; }

ec2_healthy() {
  curl -fsS --max-time 3 "$health" 2>/dev/null | grep -Eq '"ec2": *"(available|running)"'
}

if ec2_healthy; then
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    say "already running on 127.0.0.1:$port (started by start.sh, pid $(cat "$pidfile"))"
  else
    say "already running on 127.0.0.1:$port (not started by this script; leaving it alone)"
  fi
  exit 0
fi
if curl -s --max-time 3 -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
  say "port $port answers but not as a LocalStack with EC2 ($health); stop that or set LOCALSTACK_PORT"
  exit 1
fi

bash "$root/localstack/setup-venv.sh"
mkdir -p "$run/state"
say "starting LocalStack on 127.0.0.1:$port (log $log)"
# setsid: its own process group, so stop.sh can end it and its children and nothing else.
env GATEWAY_LISTEN="127.0.0.1:$port" SERVICES=ec2,sts SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 \
  LOCALSTACK_VOLUME_DIR="$run/state" PERSISTENCE=0 \
  setsid "$venv/bin/python" -m localstack.runtime.main >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"

for ((i = 0; i < timeout * 2; i++)); do
  if ec2_healthy; then
    say "ready on http://127.0.0.1:$port (pid $pid, ${i}x0.5s)"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    say "LocalStack exited during startup; last lines of $log:"
    tail -n 30 "$log" >&2 || true
    rm -f "$pidfile"
    exit 1
  fi
  sleep 0.5
done
say "EC2 not healthy after ${timeout}s; last lines of $log:"
tail -n 30 "$log" >&2 || true
kill -TERM -- "-$pid" 2>/dev/null || true
rm -f "$pidfile"
exit 1
