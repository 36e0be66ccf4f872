// An HTTP proxy in front of (LocalStack's) EC2 that refuses a share of calls the way EC2 does when
// its token bucket is empty: HTTP 503 with the EC2 query-protocol XML error RequestLimitExceeded.
// The rest is forwarded untouched. Refusals are spread evenly (deterministic) unless a random
// source is given: with share 0.75 the pattern is pass, refuse, refuse, refuse, pass, ...
//
//   const proxy = await startThrottlingProxy({ target: 'http://127.0.0.1:4566', share: 0.5 });
//   proxy.url; proxy.setShare(1); proxy.stats; await proxy.close();

import { randomUUID } from 'node:crypto';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ThrottlingProxyOptions {
  target: string;
  /** Fraction of calls refused, 0..1. */
  share: number;
  /** Only these EC2 actions are refused (default all). */
  actions?: string[];
  random?: () => number;
}

export interface ThrottlingProxyStats {
  forwarded: number;
  throttled: number;
  /** Requests seen per EC2 action (Action= in the form body). */
  byAction: Record<string, number>;
  throttledByAction: Record<string, number>;
}

export interface ThrottlingProxy {
  url: string;
  stats: ThrottlingProxyStats;
  setShare(share: number): void;
  close(): Promise<void>;
}

function throttleBody(requestId: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    '<Response><Errors><Error><Code>RequestLimitExceeded</Code>' +
    '<Message>Request limit exceeded.</Message></Error></Errors>' +
    `<RequestID>${requestId}</RequestID></Response>`
  );
}

export async function startThrottlingProxy(options: ThrottlingProxyOptions): Promise<ThrottlingProxy> {
  let share = options.share;
  const setShare = (s: number) => {
    if (!(s >= 0 && s <= 1)) throw new RangeError(`share must be within 0..1, got ${s}`);
    share = s;
  };
  setShare(share);
  const target = new URL(options.target);
  const stats: ThrottlingProxyStats = { forwarded: 0, throttled: 0, byAction: {}, throttledByAction: {} };
  let seen = 0; // eligible requests so far, for the even spread
  const refuse = (): boolean => {
    if (options.random) return options.random() < share;
    const n = seen++;
    return Math.floor((n + 1) * share + 1e-9) > Math.floor(n * share + 1e-9);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const action = new URLSearchParams(body.toString('utf8')).get('Action') ?? 'unknown';
      stats.byAction[action] = (stats.byAction[action] ?? 0) + 1;
      const eligible = !options.actions || options.actions.includes(action);
      if (eligible && refuse()) {
        stats.throttled++;
        stats.throttledByAction[action] = (stats.throttledByAction[action] ?? 0) + 1;
        const requestId = randomUUID();
        const xml = throttleBody(requestId);
        // EC2 carries the request id in both the body and the x-amzn-requestid header.
        res.writeHead(503, {
          'content-type': 'text/xml;charset=UTF-8',
          'content-length': Buffer.byteLength(xml),
          'x-amzn-requestid': requestId,
        });
        res.end(xml);
        return;
      }
      stats.forwarded++;
      const upstream = request(
        {
          protocol: target.protocol,
          hostname: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: target.host },
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', (err) => {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`throttling proxy: upstream ${options.target} failed: ${err.message}`);
      });
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    setShare,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
