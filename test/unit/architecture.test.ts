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
  'tar-fs': (f) => f.startsWith('src/snapshot/') || f.startsWith('src/registry/') || f === 'src/context/pack.ts',
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

test('the sandbox, the store and the build context stand below the scheduler', () => {
  const below = EDGES.filter((e) => /^src\/(sandbox|store|context)\//.test(e.from) && /^src\/(scheduler|cli|api|farm)\//.test(e.to));
  assert.deepEqual(below.map((e) => `${e.from} -> ${e.to}`), []);
  // The scheduler is driven through its executor: only the pool knows the worker threads.
  const workers = EDGES.filter((e) => e.from.startsWith('src/scheduler/') && e.to.startsWith('workers/'));
  assert.deepEqual(workers.map((e) => e.from), []);
});

test('no import cycle anywhere, type-only imports included', () => {
  const graph = new Map<string, string[]>();
  for (const f of FILES) graph.set(f, []);
  for (const e of EDGES) if (graph.has(e.to)) graph.get(e.from)!.push(e.to);
  // Tarjan's strongly connected components; any component of two or more files is a cycle.
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || graph.get(v)!.includes(v)) cycles.push(scc.sort().join(' <-> '));
  };
  for (const f of FILES) if (!index.has(f)) visit(f);
  assert.deepEqual(cycles, []);
});

test('no source file over 400 lines and no function over 60', async () => {
  const ts = (await import('typescript')).default;
  const long: string[] = [];
  for (const f of FILES.filter((x) => x.startsWith('src/'))) {
    const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    if (lines > 400) long.push(`${f}: ${lines} lines`);
    const sf = ts.createSourceFile(f, text, ts.ScriptTarget.ES2022, true);
    const visit = (n: import('typescript').Node): void => {
      if (ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isArrowFunction(n) || ts.isFunctionExpression(n) || ts.isConstructorDeclaration(n)) {
        const a = sf.getLineAndCharacterOfPosition(n.getStart()).line;
        const b = sf.getLineAndCharacterOfPosition(n.getEnd()).line;
        if (b - a + 1 > 60) long.push(`${f}:${a + 1}: a function of ${b - a + 1} lines`);
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }
  assert.deepEqual(long, []);
});

test('one error table: codes get their meaning only in errors.ts, and the engine never throws the CLI\'s usage error', () => {
  const tables = FILES.filter((f) => f !== 'src/errors.ts' && /Record<ErrorCode|Set<ErrorCode>/.test(fs.readFileSync(path.join(ROOT, f), 'utf8')));
  assert.deepEqual(tables, []);
  const usage = FILES.filter((f) => !f.startsWith('src/cli/') && f !== 'src/errors.ts' && fs.readFileSync(path.join(ROOT, f), 'utf8').includes("'ERR_USAGE'"));
  assert.deepEqual(usage, []);
});
