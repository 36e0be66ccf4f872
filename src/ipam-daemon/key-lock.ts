// Serializes work per key (one pod attachment): an ADD and a DEL for the same container never
// interleave, while different keys run concurrently.

export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();
  private active = 0;

  /** Operations queued or running. */
  get inFlight(): number {
    return this.active;
  }

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key);
    this.active++;
    // The key's tail is in place before fn starts: anything fn itself queues for the key waits.
    let open!: () => void;
    const tail = new Promise<void>((r) => {
      open = r;
    });
    this.tails.set(key, tail);
    // Nothing queued for the key (the common case): start now rather than a microtask later.
    const result = prev ? prev.then(fn, fn) : start(fn);
    const done = () => {
      this.active--;
      if (this.tails.get(key) === tail) this.tails.delete(key);
      open();
    };
    result.then(done, done);
    return result;
  }

  /** Resolves when nothing is queued or running (or after timeoutMs). */
  async idle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.active > 0) {
      if (Date.now() >= deadline) return false;
      await Promise.race([Promise.all(this.tails.values()), sleep(Math.min(50, deadline - Date.now()))]);
    }
    return true;
  }
}

function start<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (err) {
    return Promise.reject(err);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}
