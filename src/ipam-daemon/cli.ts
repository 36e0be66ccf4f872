#!/usr/bin/env node
// vpc-ipam: the operator's view of a node's pool, read from the daemon's socket.
//
//   vpc-ipam [pool]            the pool as a table (default)
//   vpc-ipam allocations       every allocation as a table
//   vpc-ipam health [--ready]  exit 0 when /healthz (/readyz) answers 200 within 2 s, else 1 and
//                              one line saying why (the DaemonSet's exec probes)
//   options: --json (raw API answer), --socket PATH (default $VPC_IPAM_SOCKET or /run/vpc-ipam/ipamd.sock)

import { request } from 'node:http';
import type { AllocationRecord, PoolStatus } from './api-types.ts';
import { DEFAULT_SOCKET_PATH } from './api-types.ts';

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatPool(p: PoolStatus): string {
  const lines = [
    `instance ${p.instanceId} (${p.instanceType}), max pods ${p.maxPods}`,
    `IPs: ${p.total} total, ${p.assigned} assigned, ${p.cooling} cooling, ${p.free} free, ${p.lost ?? 0} lost`,
    `plan: ${p.plan}`,
  ];
  if (p.noIpReason) lines.push(`NO IP: ${p.noIpReason}`);
  if ((p.lost ?? 0) > 0)
    lines.push(
      `LOST: ${p.lost} pod IP(s) are gone from the cloud (drift): those pods have no working address; delete them so they get new IPs (Node events PodIPLost name them)`,
    );
  lines.push('');
  lines.push(
    table(
      ['DEV', 'INTERFACE', 'MAC', 'SUBNET', 'TOTAL', 'ASSIGNED', 'COOLING', 'FREE', 'LOST'],
      p.interfaces.map((i) => [
        i.deviceIndex,
        i.gone ? `${i.interfaceId} (gone)` : i.interfaceId,
        i.mac,
        i.subnetId,
        i.total,
        i.assigned,
        i.cooling,
        i.free,
        i.lost ?? 0,
      ]),
    ),
  );
  return lines.join('\n');
}

export function formatAllocations(list: AllocationRecord[]): string {
  if (list.length === 0) return 'no allocations';
  const rows = [...list]
    .sort((a, b) => a.deviceIndex - b.deviceIndex || a.ip.localeCompare(b.ip, 'en', { numeric: true }))
    .map((a) => [
      a.ip,
      a.podName ? `${a.podNamespace ?? 'default'}/${a.podName}` : '-',
      `${a.containerId.slice(0, 12)}/${a.ifName}`,
      a.interfaceId,
      a.deviceIndex,
      a.assignedAt,
    ]);
  return table(['IP', 'POD', 'CONTAINER/IF', 'INTERFACE', 'DEV', 'ASSIGNED AT'], rows);
}

export function getJson(
  socketPath: string,
  path: string,
  timeoutMs = 5000,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        } catch (err) {
          reject(new Error(`daemon answered non-JSON: ${(err as Error).message}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** How long `vpc-ipam health` waits for the whole answer: well inside the probe's timeoutSeconds. */
export const HEALTH_TIMEOUT_MS = 2000;

/**
 * One health check: GET /healthz (or /readyz) with a hard deadline on the whole exchange (a
 * daemon that accepts but never answers, or answers byte by byte, still fails in time).
 * Resolves with ok and a one-line message; never rejects.
 */
export function checkHealth(
  socketPath: string,
  ready: boolean,
  timeoutMs = HEALTH_TIMEOUT_MS,
): Promise<{ ok: boolean; message: string }> {
  const what = ready ? 'ready' : 'healthy';
  const path = ready ? '/readyz' : '/healthz';
  return new Promise((resolve) => {
    let settled = false;
    const finish = (ok: boolean, message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ ok, message });
    };
    const timer = setTimeout(
      () =>
        finish(
          false,
          `not ${what}: vpc-ipamd at ${socketPath} did not answer ${path} within ${timeoutMs} ms`,
        ),
      timeoutMs,
    );
    const req = request({ socketPath, path, method: 'GET', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => finish(false, `not ${what}: ${err.message}`));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status === 200) return finish(true, `vpc-ipamd at ${socketPath} is ${what}`);
        const text = Buffer.concat(chunks).toString('utf8');
        let detail = text.trim().slice(0, 200);
        try {
          const body = JSON.parse(text) as { message?: unknown };
          if (typeof body.message === 'string') detail = body.message;
        } catch {
          // not JSON: quote the start of the text
        }
        finish(false, `not ${what}: vpc-ipamd answered ${path} with ${status}${detail ? `: ${detail}` : ''}`);
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ENOENT'
          ? `no socket at ${socketPath} (vpc-ipamd not started yet?)`
          : err.code === 'ECONNREFUSED'
            ? `nothing listening on ${socketPath} (stale socket; vpc-ipamd not running)`
            : `cannot reach vpc-ipamd at ${socketPath}: ${err.message}`;
      finish(false, `not ${what}: ${why}`);
    });
    req.end();
  });
}

const USAGE = 'usage: vpc-ipam [pool|allocations|health [--ready]] [--json] [--socket PATH]';

export async function runCli(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (s: string) => void,
): Promise<number> {
  let socket = env.VPC_IPAM_SOCKET || DEFAULT_SOCKET_PATH;
  let json = false;
  let ready = false;
  let command = 'pool';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--ready') ready = true;
    else if (a === '--socket') {
      const v = argv[++i];
      if (!v) {
        out(`--socket needs a path\n${USAGE}`);
        return 2;
      }
      socket = v;
    } else if (a === '-h' || a === '--help') {
      out(USAGE);
      return 0;
    } else if (a === 'pool' || a === 'allocations' || a === 'health') command = a;
    else {
      out(`unknown argument ${JSON.stringify(a)}\n${USAGE}`);
      return 2;
    }
  }
  if (ready && command !== 'health') {
    out(`--ready goes with health\n${USAGE}`);
    return 2;
  }
  if (command === 'health') {
    const { ok, message } = await checkHealth(socket, ready);
    out(message);
    return ok ? 0 : 1;
  }
  let res: { status: number; body: unknown };
  try {
    res = await getJson(socket, command === 'pool' ? '/v1/pool' : '/v1/allocations');
  } catch (err) {
    out(
      `cannot reach vpc-ipamd at ${socket}: ${(err as Error).message} (is the daemon running? set --socket or VPC_IPAM_SOCKET)`,
    );
    return 1;
  }
  if (res.status !== 200) {
    out(`vpc-ipamd answered ${res.status}: ${JSON.stringify(res.body)}`);
    return 1;
  }
  if (json) out(JSON.stringify(res.body, null, 2));
  else if (command === 'pool') out(formatPool(res.body as PoolStatus));
  else out(formatAllocations((res.body as { allocations: AllocationRecord[] }).allocations));
  return 0;
}

if (import.meta.main) {
  process.exitCode = await runCli(process.argv.slice(2), process.env, (s) => process.stdout.write(`${s}\n`));
}
