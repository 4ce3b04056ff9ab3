/** Fuzzing helper: a small seeded random source, so every case can be made again from its seed. */

/** mulberry32: fast, seedable, good enough to pick test inputs. */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)]!;
  }

  /** A string of `n` characters drawn from `alphabet`. */
  string(n: number, alphabet: string): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

/** The seed of case `index` of a run seeded `seed` (each case reproducible on its own). */
export function caseSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 2654435761) + Math.imul(index + 1, 40503)) >>> 0;
}

/** Byte-level mutations of a buffer: flips, deletions, insertions, duplications, truncation. */
export function mutateBytes(rng: Rng, input: Buffer, rounds = 1 + rng.int(4)): Buffer {
  let b = Buffer.from(input);
  const specials = [0, 0xff, 0x2f, 0x2e, 0x0a, 0x22, 0x5c, 0x24, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a];
  for (let r = 0; r < rounds; r++) {
    if (b.length === 0) return Buffer.from(rng.string(1 + rng.int(16), '{}[]":,./\\$\n'));
    const at = rng.int(b.length);
    switch (rng.int(6)) {
      case 0: b[at] = rng.int(256); break;
      case 1: b[at] = rng.pick(specials); break;
      case 2: b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + rng.int(64)))]); break;
      case 3: b = Buffer.concat([b.subarray(0, at), Buffer.from(rng.string(1 + rng.int(8), '../${}[]"\\\n\t :=#\0x')), b.subarray(at)]); break;
      case 4: { const len = 1 + rng.int(Math.min(512, b.length - at)); b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]); break; }
      default: b = b.subarray(0, at);
    }
  }
  return b;
}
