#!/usr/bin/env node
// vpc-ipam: the operator's view of a node's pool, read from the daemon's socket.
//
//   vpc-ipam [pool]            the pool as a table (default)
//   vpc-ipam allocations       every allocation as a table
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
    `IPs: ${p.total} total, ${p.assigned} assigned, ${p.cooling} cooling, ${p.free} free`,
    `plan: ${p.plan}`,
  ];
  if (p.noIpReason) lines.push(`NO IP: ${p.noIpReason}`);
  lines.push('');
  lines.push(
    table(
      ['DEV', 'INTERFACE', 'MAC', 'SUBNET', 'TOTAL', 'ASSIGNED', 'COOLING', 'FREE'],
      p.interfaces.map((i) => [
        i.deviceIndex,
        i.interfaceId,
        i.mac,
        i.subnetId,
        i.total,
        i.assigned,
        i.cooling,
        i.free,
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

const USAGE = 'usage: vpc-ipam [pool|allocations] [--json] [--socket PATH]';

export async function runCli(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (s: string) => void,
): Promise<number> {
  let socket = env.VPC_IPAM_SOCKET || DEFAULT_SOCKET_PATH;
  let json = false;
  let command = 'pool';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
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
    } else if (a === 'pool' || a === 'allocations') command = a;
    else {
      out(`unknown argument ${JSON.stringify(a)}\n${USAGE}`);
      return 2;
    }
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
