/**
 * Runs tasks one after another per key, and tasks of different keys freely. The Engine API
 * queues identical builds (same context bytes and options) behind each other, so the later
 * ones find every step in the cache and the same Dockerfile built N times at once yields one
 * image rather than N racing copies of each RUN.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier task of `key` has settled (whatever their outcome). */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => { release = resolve; });
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    try {
      await prev;
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
