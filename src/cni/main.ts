// vpc-cni-node: the CNI plugin as a Node single executable (scripts/build-cni.ts). The runtime
// calls the static shim (src/cni/shim), which forwards to vpc-ipamd; this executable is what the
// shim runs when the daemon cannot be reached (e.g. a DEL while it is down), and works alone too.
import { readFileSync, writeSync } from 'node:fs';
import { createDaemonClient } from './daemon-client.ts';
import { runCni } from './run.ts';

function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN' || (e as NodeJS.ErrnoException).code === 'EOF')
      return '';
    throw e;
  }
}

async function main(): Promise<number> {
  const started = performance.now();
  let stdin = '';
  try {
    stdin = readStdin();
  } catch {
    // an unreadable stdin is an empty config: runCni answers with the decode error
  }
  const out = await runCni(process.env, stdin, {
    daemon: (conf) => createDaemonClient(conf.socketPath, conf.timeoutMs),
    via: 'plugin',
    started,
  });
  if (out.stdout) writeSync(1, out.stdout);
  return out.exitCode;
}

main().then(
  (code) => process.exit(code),
  () => process.exit(1),
);
