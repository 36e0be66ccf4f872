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
    const prev = this.tails.get(key) ?? Promise.resolve();
    this.active++;
    const result = prev.then(fn, fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      this.active--;
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
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

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}
