/**
 * Parsed Dockerfiles kept in the store (`parsed/<sha256>`), so that a build whose Dockerfile
 * was built before never loads the parser. Loading dockerfile-ast and its dependencies is the
 * largest single start-up cost of a `slipway build` process that the cache then serves whole.
 *
 * An entry is keyed by the sha256 of the parser's identity (the code of every module of
 * `dockerfile/` and `errors.js`, dockerfile-ast's package.json, and V8's version), the file name used in
 * messages, and the text. A parse is a pure function of these, so an entry can only be
 * stale if the key is: changing any of them names another entry. The entry is V8's
 * serialization of the parse result (`node:v8`), which keeps every `undefined` field that
 * JSON would drop. A parse that fails is never kept, and nothing is written until the caller
 * says the build succeeded (`save`): a bad Dockerfile leaves the store as it was.
 */
import fs from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { writeFileAtomic } from '../fs.js';
import type { StoreLayout } from '../store/layout.js';
import type { Dockerfile } from '../dockerfile/step.js';

/** A parsed Dockerfile, and how to keep it for the next build. */
export interface ParsedDockerfile {
  df: Dockerfile;
  /** True when it came from the store (the parser was not loaded for it). */
  cached: boolean;
  /** Keeps the parse in the store; a no-op when it came from there. Call once the build succeeded. */
  save: () => Promise<void>;
}

let fingerprint: string | undefined;

/**
 * The parser's identity: a hash of the code that turns a Dockerfile's text into steps. Read
 * once per process (a few small files), so a new Slipway or dockerfile-ast never reads an old
 * entry.
 */
export function parserFingerprint(): string {
  if (fingerprint !== undefined) return fingerprint;
  const h = crypto.createHash('sha256').update(`v8 ${process.versions.v8}\0`);
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dir = path.join(here, '..', 'dockerfile');
  const files = [...readdirSync(dir).filter((n) => n.endsWith('.js')).sort().map((n) => path.join(dir, n)), path.join(here, '..', 'errors.js')];
  // dockerfile-ast by its package.json (its exact version: package.json pins it). Hashing its
  // forty code files on every run would cost about half of what the cache saves.
  files.push(path.join(path.dirname(fileURLToPath(import.meta.resolve('dockerfile-ast'))), '..', 'package.json'));
  for (const f of files) h.update(`${path.relative(here, f)}\0`).update(readFileSync(f)).update('\0');
  fingerprint = h.digest('hex');
  return fingerprint;
}

/** The entry's file for this text and file name. */
function entryFile(layout: StoreLayout, text: string, file: string): string {
  const key = crypto.createHash('sha256').update(`${parserFingerprint()}\0${file}\0`).update(text).digest('hex');
  return layout.parsedDockerfile(key);
}

/**
 * A resident engine's start: the parser loaded (dockerfile-ast's forty modules) and its
 * fingerprint read, so that its first build of a new Dockerfile does not pay them (about
 * 30 + 16 ms on a 2-core VM), as a daemon's code is loaded before it listens.
 */
export async function loadParser(): Promise<void> {
  parserFingerprint();
  const { parseDockerfile } = await import('../dockerfile/parse.js');
  parseDockerfile('FROM scratch\n', 'Dockerfile');
}

/**
 * The Dockerfile parsed: from the store when this text was parsed (and built) before by this
 * parser, else by the parser, loaded now. Throws the parser's error for a bad Dockerfile.
 */
export async function parsedDockerfile(layout: StoreLayout, text: string, file: string): Promise<ParsedDockerfile> {
  const entry = entryFile(layout, text, file);
  // A missing or unreadable entry is only a miss.
  const kept = await fs.readFile(entry).then((b) => v8.deserialize(b) as Partial<Dockerfile> | undefined).catch(() => undefined);
  if (kept && typeof kept === 'object' && Array.isArray(kept.steps) && Array.isArray(kept.warnings)) return { df: kept as Dockerfile, cached: true, save: async () => undefined };
  const { parseDockerfile } = await import('../dockerfile/parse.js');
  const df = parseDockerfile(text, file);
  // Derived and rebuildable: no fsync, only the atomic rename (no torn entry after kill -9).
  return { df, cached: false, save: () => writeFileAtomic(entry, v8.serialize(df), 0o644, { fsync: false }) };
}
