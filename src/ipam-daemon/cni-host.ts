// The daemon's side of the CNI shim (src/cni/shim): POST /v1/cni carries the CNI env + stdin the
// runtime gave the shim; the already-warm daemon runs the command with the plugin's own code
// (src/cni/run.ts: every CNI semantic) and answers the stdout and exit code for the shim to relay.
// The plugin's daemon calls go to the Daemon in-process, through the same validation and error
// mapping as the socket, so a command behaves the same whichever process runs it. Wiring is the
// same `ip -batch` / `nsenter --net=<netns> ip -batch` processes (argument arrays, no shell).

import { clientOver, type Transport } from '../cni/daemon-client.ts';
import { type CniOutcome, runCni } from '../cni/run.ts';
import type { ApiError } from './api-types.ts';
import type { Routes } from './server.ts';
import { MAX_GC_BODY_BYTES, ValidationError } from './validate.ts';

/** The env the shim may forward: the CNI variables, nothing else (validated again by runCni). */
export const CNI_ENV_KEYS = [
  'CNI_COMMAND',
  'CNI_CONTAINERID',
  'CNI_NETNS',
  'CNI_IFNAME',
  'CNI_ARGS',
  'CNI_PATH',
];
/** A GC's network config lists every attachment on the node (see MAX_GC_BODY_BYTES). */
export const MAX_CNI_BODY_BYTES = MAX_GC_BODY_BYTES;

export interface CniRequest {
  env: Record<string, string>;
  stdin: string;
}

/** Checks the shape of POST /v1/cni; the values themselves are checked by runCni (parseEnv). */
export function parseCniRequest(body: unknown): CniRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ValidationError('body must be a JSON object {env, stdin}');
  }
  const { env, stdin } = body as Record<string, unknown>;
  if (typeof env !== 'object' || env === null || Array.isArray(env)) {
    throw new ValidationError('env must be an object of CNI_* variables');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (!CNI_ENV_KEYS.includes(k))
      throw new ValidationError(`env: ${JSON.stringify(k.slice(0, 64))} is not forwarded`);
    if (typeof v !== 'string' || v.length > 4096 || v.includes('\0')) {
      throw new ValidationError(`env ${k}: must be a string of at most 4096 characters without NUL`);
    }
    out[k] = v;
  }
  if (typeof stdin !== 'string') throw new ValidationError('stdin must be a string (the network config)');
  return { env: out, stdin };
}

type ErrorMapper = (err: unknown) => { status: number; body: ApiError };

/** The socket API's routes (server.ts apiRoutes), called in-process: same validation, same answers. */
export function inProcessTransport(routes: Routes, toApiError: ErrorMapper): Transport {
  return async (method, path, payload) => {
    const url = new URL(path, 'http://ipamd');
    const handler = method === 'GET' || method === 'POST' ? routes[url.pathname]?.[method] : undefined;
    if (!handler) {
      return {
        status: 404,
        body: { code: 'NOT_FOUND', message: `no route ${method} ${url.pathname}`, retryable: false },
      };
    }
    try {
      return { status: 200, body: await handler(async () => payload, url) };
    } catch (err) {
      const e = toApiError(err);
      return { status: e.status, body: e.body };
    }
  };
}

/** Runs one forwarded CNI command. Never throws: every failure is a CNI error on stdout. */
export function runForShim(routes: Routes, toApiError: ErrorMapper, req: CniRequest): Promise<CniOutcome> {
  const client = clientOver(inProcessTransport(routes, toApiError));
  return runCni(req.env, req.stdin, { daemon: () => client, via: 'daemon', started: performance.now() });
}
