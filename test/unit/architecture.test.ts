import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The picture STYLE.md draws, checked on the sources: each third-party package stays in its
 * folder, the leaves import nothing of ours, nothing imports the CLI, and the scheduler never
 * reaches up into the CLI, the API or the farm.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sources(rel));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** Module specifiers a file imports (static and dynamic). */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)|(?:^|\n)\s*import\s+'([^']+)'/g)) {
    specs.push((m[1] ?? m[2] ?? m[3])!);
  }
  return specs;
}

/** An import resolved to a project path (`src/store/graph.ts`) or a package name. */
function target(file: string, spec: string): string {
  if (!spec.startsWith('.')) {
    if (spec.startsWith('node:')) return spec;
    // A scoped package is named by its first two components (`@scope/name`).
    return spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');
  }
  return path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)).replace(/\.js$/, '.ts');
}

const FILES = [...sources('src'), ...sources('workers')];
const EDGES = FILES.flatMap((f) => importsOf(f).map((s) => ({ from: f, to: target(f, s) })));

const PACKAGES: Record<string, (file: string) => boolean> = {
  'dockerfile-ast': (f) => f === 'src/dockerfile/parse.ts',
  'xxhash-wasm': (f) => f.startsWith('src/cache/'),
  piscina: (f) => f === 'src/scheduler/pool.ts',
  'tar-fs': (f) => f.startsWith('src/snapshot/') || f.startsWith('src/registry/'),
  'tar-stream': (f) => f.startsWith('src/snapshot/') || f.startsWith('src/registry/'),
  bullmq: (f) => f.startsWith('src/farm/'),
  ioredis: (f) => f.startsWith('src/farm/'),
  'prom-client': (f) => f.startsWith('src/farm/'),
  '@napi-rs/xattr': (f) => f === 'src/snapshot/xattr.ts',
};

test('the sources were found', () => {
  assert.ok(FILES.length > 50, `only ${FILES.length} files`);
  assert.ok(EDGES.some((e) => e.to === 'dockerfile-ast'), 'the import scanner sees package imports');
});

test('each third-party package is imported only in its own folder', () => {
  const bad = EDGES.filter((e) => e.to in PACKAGES && !PACKAGES[e.to]!(e.from)).map((e) => `${e.from} imports ${e.to}`);
  assert.deepEqual(bad, []);
  const unknown = EDGES.filter((e) => !e.to.startsWith('node:') && !e.to.startsWith('src/') && !e.to.startsWith('workers/') && !(e.to in PACKAGES));
  assert.deepEqual(unknown.map((e) => `${e.from} imports ${e.to}`), [], 'a new dependency needs a home in this table');
});

test('the leaves import nothing of ours', () => {
  for (const leaf of ['src/errors.ts', 'src/image-config.ts', 'src/fs.ts']) {
    const ours = EDGES.filter((e) => e.from === leaf && (e.to.startsWith('src/') || e.to.startsWith('workers/')));
    assert.deepEqual(ours.map((e) => e.to), [], leaf);
  }
});

test('nothing outside the CLI imports it; the scheduler and store never reach up', () => {
  const intoCli = EDGES.filter((e) => e.to.startsWith('src/cli/') && !e.from.startsWith('src/cli/'));
  assert.deepEqual(intoCli.map((e) => `${e.from} -> ${e.to}`), []);
  const up = EDGES.filter((e) => /^src\/(scheduler|store|dockerfile|snapshot|cache|context)\//.test(e.from) && /^src\/(cli|api|farm)\//.test(e.to));
  assert.deepEqual(up.map((e) => `${e.from} -> ${e.to}`), []);
});
