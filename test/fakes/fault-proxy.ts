// A fault proxy in front of LocalStack's EC2 (HTTP, query protocol) or the ARM fake (HTTPS, JSON).
// It makes the faults neither can make themselves, the ones where the cloud's outcome is unknown
// to the caller because the fault happens AFTER the change was made:
//   drop-after    forward; once the target has answered, reset the client's connection (answer lost)
//   delay-after   forward; hold the answer for delayMs (past the client's timeout), then send it
//   error-after   forward; then answer a 5xx instead of the target's answer (change made, "failed")
//   error-before  answer an error without forwarding (nothing changed); `status`/`code` pick it
//   delay-before  hold the request delayMs, then forward it whether or not the caller still waits
//                 (the change lands late: EC2 applying a call after the caller died or gave up);
//                 onHit runs when it arrives, so a test can kill the caller right then
//   throttle      answer like an empty token bucket without forwarding (EC2 503
//                 RequestLimitExceeded, ARM 429 + Retry-After)
//   lro-failed / lro-canceled   (ARM) forward an async-operation poll, then report the operation
//                 Failed / Canceled (the change the operation made stays made)
// Rules match by EC2 action (Action= of the form body) or by method and path, fire `times` times
// (default: unbounded) on a share of the matching requests (default all), first matching rule
// wins. A rule's mode may be a list: each hit picks one of them. Everything else is forwarded.
//
//   const proxy = await startFaultProxy({ target: 'http://127.0.0.1:4566', dialect: 'ec2' });
//   proxy.addRule({ action: 'CreateNetworkInterface', mode: 'drop-after', times: 1 });
//   proxy.url; proxy.stats; proxy.clearRules(); await proxy.close();
//
// With dialect 'arm' the proxy serves HTTPS with the given certificate and rewrites the target's
// origin to its own in answers (Azure-AsyncOperation / Location headers, nextLink), so the SDK's
// long-running-operation polls come through the proxy too.

import { randomUUID } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  request,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';

export const FAULT_MODES = [
  'drop-after',
  'delay-after',
  'error-after',
  'error-before',
  'delay-before',
  'throttle',
  'lro-failed',
  'lro-canceled',
] as const;
export type FaultMode = (typeof FAULT_MODES)[number];

/** The faults that leave the caller not knowing whether its change was made. */
export const UNKNOWN_OUTCOME_MODES: readonly FaultMode[] = ['drop-after', 'delay-after', 'error-after'];

export interface FaultRule {
  /** EC2 action(s) to match (ec2 dialect). */
  action?: string | string[];
  method?: string;
  /** Matched against the path without the query. */
  path?: RegExp;
  mode: FaultMode | FaultMode[];
  /** Hits before the rule retires (default unbounded). */
  times?: number;
  /** Fraction of matching requests hit, 0..1 (default 1); drawn from the proxy's random source. */
  share?: number;
  /** error-before / error-after: HTTP status (default 500, ARM 409 for AnotherOperationInProgress). */
  status?: number;
  /** error-before / error-after: the cloud's error code (default InternalError / InternalServerError). */
  code?: string;
  /** delay-after: how long the answer is held; delay-before: the request (default 30 s). */
  delayMs?: number;
  /** delay-before: hold the request until this settles instead (a test decides when it lands). */
  until?: Promise<unknown>;
  /**
   * Runs when the rule fires, after the target answered (for the *-after and lro modes): how a
   * test makes the cloud undo the change, e.g. an operation that was canceled and rolled back.
   */
  onHit?: (call: string) => void;
}

export interface FaultEvent {
  at: number;
  mode: FaultMode;
  /** EC2 action or `METHOD path`. */
  call: string;
}

export interface FaultProxyStats {
  requests: number;
  forwarded: number;
  /** Requests seen per call (EC2 action, or METHOD for ARM). */
  byCall: Record<string, number>;
  injected: Record<FaultMode, number>;
  events: FaultEvent[];
}

export interface FaultProxyOptions {
  target: string;
  dialect: 'ec2' | 'arm';
  /** arm: the certificate the proxy serves (the ARM fake's test CA signs it). */
  tls?: { certPem: string; keyPem: string };
  random?: () => number;
  rules?: FaultRule[];
}

export interface FaultProxy {
  url: string;
  stats: FaultProxyStats;
  addRule(rule: FaultRule): void;
  clearRules(): void;
  /** Total faults injected so far. */
  injectedTotal(): number;
  close(): Promise<void>;
}

interface LiveRule extends FaultRule {
  left: number;
}

function ec2Error(
  status: number,
  code: string,
  message: string,
): { status: number; body: string; type: string } {
  const id = randomUUID();
  return {
    status,
    type: 'text/xml;charset=UTF-8',
    body:
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
      `<Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors>` +
      `<RequestID>${id}</RequestID></Response>`,
  };
}

function armError(
  status: number,
  code: string,
  message: string,
): { status: number; body: string; type: string } {
  return {
    status,
    type: 'application/json; charset=utf-8',
    body: JSON.stringify({ error: { code, message, details: [] } }),
  };
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  const random = options.random ?? Math.random;
  const rules: LiveRule[] = [];
  const addRule = (r: FaultRule) => {
    if (r.share !== undefined && !(r.share >= 0 && r.share <= 1)) {
      throw new RangeError(`share must be within 0..1, got ${r.share}`);
    }
    rules.push({ ...r, left: r.times ?? Number.POSITIVE_INFINITY });
  };
  for (const r of options.rules ?? []) addRule(r);
  const injected = Object.fromEntries(FAULT_MODES.map((m) => [m, 0])) as Record<FaultMode, number>;
  const stats: FaultProxyStats = { requests: 0, forwarded: 0, byCall: {}, injected, events: [] };
  const arm = options.dialect === 'arm';
  let selfOrigin = '';

  const pick = (call: {
    action: string;
    method: string;
    path: string;
  }): { rule: LiveRule; mode: FaultMode } | undefined => {
    for (const r of rules) {
      if (r.left <= 0) continue;
      if (r.action !== undefined && ![r.action].flat().includes(call.action)) continue;
      if (r.method !== undefined && r.method !== call.method) continue;
      if (r.path !== undefined && !r.path.test(call.path)) continue;
      if (r.share !== undefined && random() >= r.share) continue;
      r.left--;
      const modes = [r.mode].flat();
      return { rule: r, mode: modes[Math.min(modes.length - 1, Math.floor(random() * modes.length))]! };
    }
    return undefined;
  };

  const errorFor = (mode: FaultMode, rule: FaultRule) => {
    if (mode === 'throttle') {
      return arm
        ? armError(
            429,
            'SubscriptionRequestsThrottled',
            'Number of write requests for subscription exceeded the limit.',
          )
        : ec2Error(503, 'RequestLimitExceeded', 'Request limit exceeded.');
    }
    const status = rule.status ?? 500;
    return arm
      ? armError(status, rule.code ?? 'InternalServerError', 'fault proxy: injected error')
      : ec2Error(status, rule.code ?? 'InternalError', 'An internal error has occurred (fault proxy).');
  };

  const sendError = (res: ServerResponse, e: { status: number; body: string; type: string }) => {
    const id = randomUUID();
    res.writeHead(e.status, {
      'content-type': e.type,
      'content-length': Buffer.byteLength(e.body),
      ...(arm
        ? { 'x-ms-request-id': id, ...(e.status === 429 ? { 'retry-after': '1' } : {}) }
        : { 'x-amzn-requestid': id }),
    });
    res.end(e.body);
  };

  /** Forward the request; resolves to the target's whole answer. */
  const forward = (req: IncomingMessage, body: Buffer) =>
    new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>(
      (resolve, reject) => {
        const send = target.protocol === 'https:' ? httpsRequest : request;
        const up = send(
          {
            protocol: target.protocol,
            hostname: target.hostname,
            port: target.port,
            method: req.method,
            path: req.url,
            headers: { ...req.headers, host: target.host },
          },
          (answer) => {
            const chunks: Buffer[] = [];
            answer.on('data', (c: Buffer) => chunks.push(c));
            answer.on('end', () =>
              resolve({
                status: answer.statusCode ?? 502,
                headers: answer.headers,
                body: Buffer.concat(chunks),
              }),
            );
            answer.on('error', reject);
          },
        );
        up.on('error', reject);
        up.end(body);
      },
    );

  const rewrite = (text: string) => (arm ? text.split(target.origin).join(selfOrigin) : text);

  const reply = (
    res: ServerResponse,
    answer: { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer },
  ) => {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(answer.headers)) {
      if (v === undefined || k === 'content-length' || k === 'transfer-encoding' || k === 'connection')
        continue;
      headers[k] = Array.isArray(v) ? v.map(rewrite) : rewrite(v);
    }
    const body = arm ? Buffer.from(rewrite(answer.body.toString('utf8'))) : answer.body;
    headers['content-length'] = String(body.length);
    res.writeHead(answer.status, headers);
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const method = req.method ?? 'GET';
    const action = arm ? '' : (new URLSearchParams(body.toString('utf8')).get('Action') ?? 'unknown');
    const call = arm ? `${method} ${path}` : action;
    stats.requests++;
    const key = arm ? method : action;
    stats.byCall[key] = (stats.byCall[key] ?? 0) + 1;
    const hit = pick({ action, method, path });
    if (hit) {
      stats.injected[hit.mode]++;
      stats.events.push({ at: Date.now(), mode: hit.mode, call });
    }
    if (hit && (hit.mode === 'error-before' || hit.mode === 'throttle')) {
      sendError(res, errorFor(hit.mode, hit.rule));
      return;
    }
    if (hit?.mode === 'delay-before') {
      hit.rule.onHit?.(call);
      await (hit.rule.until?.catch(() => {}) ??
        new Promise((r) => setTimeout(r, hit.rule.delayMs ?? 30_000)));
    }
    stats.forwarded++;
    let answer: Awaited<ReturnType<typeof forward>>;
    try {
      answer = await forward(req, body);
    } catch (err) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`fault proxy: upstream ${options.target} failed: ${(err as Error).message}`);
      return;
    }
    if (!hit || hit.mode === 'delay-before') {
      if (!res.destroyed && !res.socket?.destroyed) reply(res, answer);
      return;
    }
    hit.rule.onHit?.(call);
    switch (hit.mode) {
      case 'drop-after':
        res.socket?.destroy();
        return;
      case 'delay-after':
        setTimeout(() => {
          if (!res.destroyed && !res.socket?.destroyed) reply(res, answer);
        }, hit.rule.delayMs ?? 30_000).unref();
        return;
      case 'error-after':
        return sendError(res, errorFor(hit.mode, hit.rule));
      case 'lro-failed':
      case 'lro-canceled': {
        const failed = hit.mode === 'lro-failed';
        const text = JSON.stringify({
          name: randomUUID(),
          status: failed ? 'Failed' : 'Canceled',
          ...(failed
            ? { error: { code: 'InternalServerError', message: 'fault proxy: operation failed' } }
            : {}),
        });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
    }
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch((err) => {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`fault proxy: ${(err as Error).message}`);
        }
      });
    });
  };
  const server = arm
    ? (() => {
        if (!options.tls) throw new Error('fault proxy: the arm dialect needs tls (cert and key)');
        return createHttpsServer({ cert: options.tls.certPem, key: options.tls.keyPem }, onRequest);
      })()
    : createHttpServer(onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  selfOrigin = `${arm ? 'https' : 'http'}://127.0.0.1:${port}`;
  return {
    url: selfOrigin,
    stats,
    addRule,
    clearRules: () => {
      rules.length = 0;
    },
    injectedTotal: () => Object.values(injected).reduce((a, b) => a + b, 0),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
