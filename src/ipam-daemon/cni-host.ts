// The daemon's side of the CNI shim (src/cni/shim): POST /v1/cni carries the CNI env + stdin the
// runtime gave the shim; the already-warm daemon runs the command with the plugin's own code
// (src/cni/run.ts: every CNI semantic) and answers the stdout and exit code for the shim to relay.
// The plugin's daemon calls go to the Daemon in-process, through the same validation and error
// mapping as the socket, so a command behaves the same whichever process runs it.
//
// Wiring: a shim that says it can (`apply: N`) gets the pod's wiring as a plan (NetPlan) instead of
// the final answer, applies it with netlink in its own small process and reports back on
// POST /v1/cni/applied {ticket, error}; the ADD then goes on in TypeScript exactly as if `ip` had
// run here (on failure: rollback, release, CNI error) and the shim gets the final answer (or, after
// a "File exists" cleanup, one more plan). A veth DEL (plan version 2) likewise gets its host-side
// teardown as a plan, and releases the IP only after the shim reported it applied (a failed plan:
// the daemon cleans up with `ip`, then releases). From plan version 3, with a cooldown, the DEL
// plan removes the rules and the host route but leaves the veth to the runtime's netns deletion, as
// the AWS VPC CNI does; the daemon sweeps what is left (daemon/veth-sweep.ts) and the IP cools
// until then. So the daemon's event loop forks nothing per ADD or DEL. Older shims, ipvlan mode,
// and a DEL of an adopted (aws-node) veth: the daemon runs `ip -batch` processes itself (argument
// arrays, no shell).
//
// One attachment, one command at a time: an ADD and a DEL of the same container id + ifname run one
// after the other here, and a DEL or a new ADD first cancels an ADD or DEL still waiting for its
// shim (the runtime killed that shim). The cancelled command stops without touching anything more
// (ApplyCancelledError; a DEL releases nothing): the command that cancelled it owns the attachment,
// and a rollback 20 s later could otherwise delete the routes and rules of another pod that got the
// IP meanwhile.

import { randomUUID } from 'node:crypto';
import { clientOver, type Transport } from '../cni/daemon-client.ts';
import { ApplyCancelledError } from '../cni/plugin.ts';
import { type CniOutcome, runCni } from '../cni/run.ts';
import { CniError, ErrorCode, formatError, LATEST_VERSION } from '../cni/spec.ts';
import { type AppliedLinks, checkNetPlan, type NetPlan, PLAN_IFNAME } from '../cni/wiring/net-ops.ts';
import type { ApiError } from './api-types.ts';
import type { VethSweep } from './daemon/veth-sweep.ts';
import { KeyedMutex } from './key-lock.ts';
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

/**
 * The newest plan format the daemon sends; the shim declares the one it applies (`apply` in
 * POST /v1/cni) and gets plans of at most that version: 1 wires a veth ADD, 2 (DEL_PLAN_VERSION)
 * also deletes for a veth DEL, 3 (LEAVE_VETH_PLAN_VERSION) deletes a route and reports links.
 */
export const NET_PLAN_VERSION = 3;
/**
 * How long an ADD waits for the shim's report before it rolls back (the runtime DELs anyway; that
 * DEL cancels the wait at once), and a DEL before it cleans up with `ip` itself.
 * VPC_IPAM_CNI_APPLY_TIMEOUT overrides it.
 */
export const APPLY_REPORT_TIMEOUT_MS = 20_000;

export interface CniRequest {
  env: Record<string, string>;
  stdin: string;
  /** The shim applies plans of this version (absent: the daemon wires). */
  apply?: number;
}

/** The shim's answer: the final stdout + exit code, or a plan to apply and report on. */
export type ShimAnswer = CniOutcome | { apply: NetPlan; ticket: string };

export interface AppliedReport {
  ticket: string;
  /** null: every op applied; else the first failing op and the kernel's error. */
  error: string | null;
  /** Plan version 3: the ifindex of each link a routeDel named that exists. */
  links?: AppliedLinks;
}

/** Most links one report may name (a DEL plan names one). */
const MAX_REPORTED_LINKS = 16;

/** Checks the shape of POST /v1/cni; the values themselves are checked by runCni (parseEnv). */
export function parseCniRequest(body: unknown): CniRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ValidationError('body must be a JSON object {env, stdin}');
  }
  const { env, stdin, apply } = body as Record<string, unknown>;
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
  if (apply !== undefined && !Number.isSafeInteger(apply))
    throw new ValidationError('apply must be an integer');
  return apply === undefined ? { env: out, stdin } : { env: out, stdin, apply: apply as number };
}

export function parseAppliedReport(body: unknown): AppliedReport {
  const { ticket, error, links } = (typeof body === 'object' && body !== null ? body : {}) as Record<
    string,
    unknown
  >;
  if (typeof ticket !== 'string' || !/^[0-9a-f-]{36}$/.test(ticket)) {
    throw new ValidationError('ticket must be the one the daemon handed out');
  }
  if (error !== null && (typeof error !== 'string' || error.length > 4096)) {
    throw new ValidationError('error must be null or a string of at most 4096 characters');
  }
  if (links === undefined || links === null) return { ticket, error };
  const entries = typeof links === 'object' && !Array.isArray(links) ? Object.entries(links) : null;
  if (
    entries === null ||
    entries.length > MAX_REPORTED_LINKS ||
    !entries.every(
      ([name, index]) => PLAN_IFNAME.test(name) && Number.isSafeInteger(index) && (index as number) > 0,
    )
  ) {
    throw new ValidationError(`links must map at most ${MAX_REPORTED_LINKS} interface names to ifindexes`);
  }
  return { ticket, error, links: Object.fromEntries(entries) as AppliedLinks };
}

/** One ADD or DEL whose wiring a shim applies: hands plans out, turns the shim's reports back into results. */
class ShimSession {
  private respond: ((a: ShimAnswer) => void) | undefined;
  private waiting: { done(err: Error | null, links?: AppliedLinks): void } | undefined;
  private ticket: string | undefined;
  /** Why a later command of the same attachment took over (set once). */
  private cancelled: string | undefined;
  private readonly sessions: ShimSessions;
  private readonly timeoutMs: number;
  private readonly command: string;
  constructor(sessions: ShimSessions, timeoutMs: number, command = 'ADD') {
    this.sessions = sessions;
    this.timeoutMs = timeoutMs;
    this.command = command;
  }

  /** The shim's next answer: a plan (apply was called) or the final outcome. */
  next(): Promise<ShimAnswer> {
    return new Promise((r) => {
      this.respond = r;
    });
  }

  answer(a: ShimAnswer): void {
    const r = this.respond;
    this.respond = undefined;
    r?.(a); // nobody waiting: the shim's report came too late, it got an error instead
  }

  readonly apply = (plan: NetPlan): Promise<AppliedLinks | undefined> =>
    new Promise((resolve, reject) => {
      if (this.cancelled !== undefined) throw new ApplyCancelledError(this.cancelled, this.command);
      checkNetPlan(plan);
      const ticket = randomUUID();
      const timer = setTimeout(() => {
        this.sessions.forget(ticket);
        this.ticket = undefined;
        this.waiting = undefined;
        reject(new Error(`the shim did not report the wiring within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref(); // a daemon stopping does not wait for a shim that went away
      this.waiting = {
        done: (err, links) => {
          clearTimeout(timer);
          if (err) reject(err);
          else resolve(links);
        },
      };
      this.ticket = ticket;
      this.sessions.hold(ticket, this);
      this.answer({ apply: plan, ticket });
    });

  reported(error: string | null, links?: AppliedLinks): Promise<ShimAnswer> {
    const next = this.next();
    const w = this.waiting;
    this.waiting = undefined;
    this.ticket = undefined;
    w?.done(error === null ? null : new Error(error), links);
    return next;
  }

  /**
   * A later command of the same attachment took over: a wait for the shim ends now, and any later
   * apply is refused, both with ApplyCancelledError (the ADD then touches nothing). The ticket is
   * forgotten, so a shim that reports after all is told the ADD is gone.
   */
  cancel(why: string): void {
    if (this.cancelled !== undefined) return;
    this.cancelled = why;
    if (this.ticket !== undefined) this.sessions.forget(this.ticket);
    this.ticket = undefined;
    const w = this.waiting;
    this.waiting = undefined;
    w?.done(new ApplyCancelledError(why, this.command));
  }
}

/** The attachment a forwarded command is for (raw env: runCni validates it), or null. */
export function attachmentOf(env: Record<string, string>): string | null {
  const id = env.CNI_CONTAINERID;
  const ifName = env.CNI_IFNAME;
  return id && ifName ? `${id}/${ifName}` : null;
}

/** What ShimSessions needs of the daemon's veth sweep (daemon/veth-sweep.ts). */
export type VethLeaver = Pick<VethSweep, 'locks' | 'leave' | 'enabled'>;

/**
 * The commands waiting for a shim's report, by ticket; and the commands of each attachment, one at
 * a time, where a DEL or a new ADD cancels the ADD or DEL before it (see the header).
 */
export class ShimSessions {
  private readonly open = new Map<string, ShimSession>();
  /** The ADD or DEL of each attachment that may still hand out a plan. */
  private readonly current = new Map<string, ShimSession>();
  private readonly locks: KeyedMutex;
  private readonly timeoutMs: number;
  /** The daemon's veth sweep: a veth DEL may leave the veth to it (absent: DEL deletes the veth). */
  readonly veths: VethLeaver | undefined;
  constructor(timeoutMs = APPLY_REPORT_TIMEOUT_MS, veths?: VethLeaver) {
    this.timeoutMs = timeoutMs;
    this.veths = veths;
    // The sweep deletes a left veth under its attachment's lock: the same lock as the commands'.
    this.locks = veths?.locks ?? new KeyedMutex();
  }

  /**
   * Runs an ADD or DEL of `key` after the commands of `key` before it; an ADD or DEL of `key` still
   * waiting for its shim is cancelled first, so that wait ends now. `session`: this command's, which
   * a later command may cancel in turn. Other commands (and no key) run at once.
   */
  serialize<T>(
    command: string | undefined,
    key: string | null,
    session: ShimSession | undefined,
    run: () => Promise<T>,
  ): Promise<T> {
    if (key === null || (command !== 'ADD' && command !== 'DEL')) return run();
    this.current.get(key)?.cancel(`a later ${command} of ${key} took over`);
    if (session) this.current.set(key, session);
    return this.locks.run(key, run).finally(() => {
      if (session && this.current.get(key) === session) this.current.delete(key);
    });
  }

  /**
   * Runs a command whose wiring the shim applies; resolves with the shim's first answer (the
   * command goes on until the shim has reported). `of`: the command and attachment (serialize).
   */
  start(
    run: (apply: (plan: NetPlan) => Promise<AppliedLinks | undefined>) => Promise<CniOutcome>,
    of: { command?: string; key: string | null } = { key: null },
  ): Promise<ShimAnswer> {
    const session = new ShimSession(this, this.timeoutMs, of.command);
    const first = session.next();
    // runCni never rejects; should it ever, the shim still gets a CNI error, and nothing is unhandled.
    this.serialize(of.command, of.key, session, () => run(session.apply)).then(
      (outcome) => session.answer(outcome),
      (e: unknown) => {
        const err = new CniError(ErrorCode.INTERNAL, `internal error: ${(e as Error)?.message ?? e}`);
        session.answer({ stdout: `${JSON.stringify(formatError(err, LATEST_VERSION))}\n`, exitCode: 1 });
      },
    );
    return first;
  }

  /** The shim applied (or failed) the plan of this ticket: resolves with its next answer. */
  report(r: AppliedReport): Promise<ShimAnswer> {
    const session = this.open.get(r.ticket);
    if (!session) throw new ValidationError('unknown or expired ticket (the ADD was rolled back)');
    this.open.delete(r.ticket);
    return session.reported(r.error, r.links);
  }

  hold(ticket: string, s: ShimSession): void {
    this.open.set(ticket, s);
  }

  forget(ticket: string): void {
    this.open.delete(ticket);
  }

  get size(): number {
    return this.open.size;
  }
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

/**
 * Runs one forwarded CNI command. Never throws: every failure is a CNI error on stdout. A shim
 * that applies plans gets the wiring to apply first (see ShimSessions).
 */
export function runForShim(
  routes: Routes,
  toApiError: ErrorMapper,
  req: CniRequest,
  sessions: ShimSessions,
): Promise<ShimAnswer> {
  const client = clientOver(inProcessTransport(routes, toApiError));
  const ctx = { daemon: () => client, via: 'daemon' as const, started: performance.now() };
  const of = { command: req.env.CNI_COMMAND, key: attachmentOf(req.env) };
  if (req.apply === undefined || req.apply < 1) {
    return sessions.serialize(of.command, of.key, undefined, () => runCni(req.env, req.stdin, ctx));
  }
  const planVersion = Math.min(req.apply, NET_PLAN_VERSION);
  // With no cooldown a released IP is free at once: the DEL deletes the veth itself (issue #10).
  const veths = sessions.veths;
  const leaveVeth = veths?.enabled ? veths.leave : undefined;
  return sessions.start(
    (apply) =>
      runCni(req.env, req.stdin, { ...ctx, apply, planVersion, ...(leaveVeth ? { leaveVeth } : {}) }),
    of,
  );
}
