// A list+watch loop keeping a local copy of a set of objects (what client-go calls a reflector).
// It lists once, then watches from the list's resourceVersion; when a stream breaks it resumes
// from the last resourceVersion it saw (events or bookmarks), so nothing is missed; when the
// server answers 410 Gone (that version was compacted) it relists and reconciles the cache,
// emitting the deletes it missed. Reconnects back off exponentially; the clock is injected.
import { EventEmitter } from 'node:events';
import type { Logger } from '../../lib/log.ts';

export interface MetaObject {
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export interface ListResult<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** Starts one watch stream; resolves once the stream is open (or has already ended via onDone). */
export type WatchFn<T> = (
  resourceVersion: string,
  onEvent: (type: WatchEventType, obj: T) => void,
  onDone: (err: unknown) => void,
) => Promise<{ abort(): void }>;

export interface ReflectorOptions<T extends MetaObject> {
  list: () => Promise<ListResult<T>>;
  watch: WatchFn<T>;
  logger: Logger;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface ReflectorStats {
  lists: number;
  watches: number;
  gone: number;
  errors: number;
}

/**
 * Events: 'upsert' (obj), 'delete' (obj), 'synced' (after each list), 'connected', 'disconnected'.
 * `connectedSince` is the time the current stream opened, or null while there is none.
 */
export class Reflector<T extends MetaObject> extends EventEmitter {
  readonly stats: ReflectorStats = { lists: 0, watches: 0, gone: 0, errors: 0 };
  private readonly opts: ReflectorOptions<T>;
  private readonly store = new Map<string, T>();
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private resourceVersion = '';
  private stopped = true;
  private current: { abort(): void } | undefined;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private _connectedSince: number | null = null;
  private _hasSynced = false;

  constructor(opts: ReflectorOptions<T>) {
    super();
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms).unref()));
  }

  get connectedSince(): number | null {
    return this._connectedSince;
  }

  get hasSynced(): boolean {
    return this._hasSynced;
  }

  get lastResourceVersion(): string {
    return this.resourceVersion;
  }

  items(): T[] {
    return [...this.store.values()];
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.abort();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const initial = this.opts.initialBackoffMs ?? 500;
    const max = this.opts.maxBackoffMs ?? 30_000;
    let backoff = initial;
    while (!this.stopped) {
      try {
        if (this.resourceVersion === '') await this.relist();
        if (this.stopped) break;
        const outcome = await this.watchOnce();
        if (outcome === 'gone') {
          // Our version was compacted: only a fresh list can tell what changed meanwhile.
          this.stats.gone += 1;
          this.resourceVersion = '';
          this.opts.logger.info('watch: resourceVersion expired (410 Gone), relisting');
          continue;
        }
        if (outcome === 'closed') {
          // A clean end (server timeout): resume at once from where we were.
          backoff = initial;
          continue;
        }
      } catch (err) {
        this.stats.errors += 1;
        this.opts.logger.warn({ err: String(err), retryInMs: backoff }, 'watch: stream failed, will resume');
      }
      if (this.stopped) break;
      await this.interruptibleSleep(backoff);
      backoff = Math.min(backoff * 2, max);
    }
  }

  private async interruptibleSleep(ms: number): Promise<void> {
    await Promise.race([this.sleep(ms), new Promise<void>((resolve) => (this.wake = resolve))]);
    this.wake = undefined;
  }

  private async relist(): Promise<void> {
    const list = await this.opts.list();
    this.stats.lists += 1;
    const seen = new Set<string>();
    for (const item of list.items) {
      const key = keyOf(item);
      seen.add(key);
      this.store.set(key, item);
      this.emit('upsert', item);
    }
    for (const [key, item] of this.store) {
      if (!seen.has(key)) {
        this.store.delete(key);
        this.emit('delete', item);
      }
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this._hasSynced = true;
    this.emit('synced');
  }

  /** One stream: resolves 'closed' on a clean end, 'gone' on 410, throws on a transport error. */
  private watchOnce(): Promise<'closed' | 'gone'> {
    return new Promise((resolve, reject) => {
      let gone = false;
      let failure: unknown;
      let ended = false;
      const finish = (err: unknown) => {
        if (ended) return;
        ended = true;
        this.current = undefined;
        if (this._connectedSince !== null) {
          this._connectedSince = null;
          this.emit('disconnected');
        }
        if (gone) resolve('gone');
        else if (failure !== undefined) reject(failure);
        else if (err && !this.stopped) reject(err);
        else resolve('closed');
      };
      const onEvent = (type: WatchEventType, obj: T) => {
        if (ended) return;
        if (type === 'ERROR') {
          const status = obj as unknown as { code?: number; message?: string };
          if (status.code === 410) gone = true;
          else failure = new Error(`watch error ${status.code ?? '?'}: ${status.message ?? 'unknown'}`);
          this.current?.abort();
          return;
        }
        const rv = obj.metadata?.resourceVersion;
        if (type === 'ADDED' || type === 'MODIFIED') {
          this.store.set(keyOf(obj), obj);
          this.emit('upsert', obj);
        } else if (type === 'DELETED') {
          const key = keyOf(obj);
          const had = this.store.get(key);
          this.store.delete(key);
          this.emit('delete', had ?? obj);
        }
        if (rv) this.resourceVersion = rv;
      };
      this.stats.watches += 1;
      this.opts
        .watch(this.resourceVersion, onEvent, finish)
        .then((handle) => {
          if (ended) return;
          this.current = handle;
          if (this.stopped) {
            handle.abort();
            return;
          }
          this._connectedSince = this.now();
          this.emit('connected');
        })
        .catch((err: unknown) => finish(err ?? new Error('watch failed')));
    });
  }
}

export function keyOf(obj: MetaObject): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name ?? ''}` : (obj.metadata?.name ?? '');
}
