/**
 * A deterministic synthetic project history for `cache-replay`: a small TypeScript service whose
 * sources change in most commits, tests and docs now and then, and its dependency lockfile about
 * every ten commits. The same (commits, seed) gives the same files, the same commit messages and
 * dates, and so the same commit ids on every machine.
 *
 * `planSyntheticHistory` is pure (the file tree of every commit); `writeSyntheticHistory` turns a
 * plan into a git repository, plus the two Dockerfiles the replay compares (outside the repo).
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** What one commit changes, for the commit message and the bench's per-commit table. */
export type ChangeKind = 'initial' | 'src' | 'test' | 'docs' | 'src+docs' | 'module' | 'deps';

/** One commit: its message, what kind of change it is, and the whole tree after it. */
export interface SyntheticCommit {
  subject: string;
  kind: ChangeKind;
  /** Every file of the commit (path relative to the repository -> content). */
  files: Map<string, string>;
}

/** A generated repository: its folder, its commits oldest first, and the Dockerfiles to compare. */
export interface SyntheticHistory {
  repo: string;
  commits: Array<{ sha: string; subject: string; kind: ChangeKind }>;
  dockerfiles: Array<{ label: string; path: string }>;
}

/** mulberry32: a tiny seeded PRNG, so the history is the same everywhere. */
function prng(seed: number): { next(): number; int(lo: number, hi: number): number; pick<T>(xs: readonly T[]): T } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  return { next, int, pick: <T>(xs: readonly T[]) => xs[int(0, xs.length - 1)]! };
}

// Invented package names, so nothing here reads as a real dependency.
const DEPS = ['fastroute', 'tinylog', 'confy', 'lru-lite', 'uuidish', 'datefmt', 'argsly', 'colorish',
  'schemly', 'httpkit', 'retryer', 'semverish', 'globby-lite', 'yamlish', 'tempo-ms'] as const;
const MODULES = ['server', 'router', 'db', 'auth', 'cache', 'config', 'logger', 'metrics', 'queue', 'mailer', 'billing', 'search'] as const;
const DOCS = ['docs/guide.md', 'docs/api.md', 'docs/deploy.md', 'README.md'] as const;
const WORDS = ['request', 'handler', 'cache', 'retry', 'timeout', 'token', 'session', 'index', 'batch', 'stream',
  'header', 'route', 'config', 'worker', 'queue', 'limit', 'backoff', 'schema', 'field', 'record'] as const;

interface State {
  deps: Map<string, [number, number, number]>;
  modules: Map<string, string[]>;
  tests: Map<string, string[]>;
  docs: Map<string, string[]>;
  fnCounter: number;
}

type Rng = ReturnType<typeof prng>;

function sentence(r: Rng): string {
  const n = r.int(6, 14);
  const w = Array.from({ length: n }, () => r.pick(WORDS));
  return `${w.join(' ').replace(/^./, (c) => c.toUpperCase())}.`;
}

function addFunction(st: State, r: Rng, mod: string): void {
  const k = st.fnCounter++;
  st.modules.get(mod)!.push(`export function ${mod}${k}(x: number): number {\n  return x * ${r.int(2, 97)} + ${r.int(0, 999)};\n}\n`);
}

/** Edits a module: change a constant in one of its functions, or add a function. */
function editModule(st: State, r: Rng, mod: string): void {
  const fns = st.modules.get(mod)!;
  if (fns.length === 0 || r.next() < 0.4) return addFunction(st, r, mod);
  const i = r.int(0, fns.length - 1);
  fns[i] = fns[i]!.replace(/\+ \d+;/, `+ ${r.int(0, 999)};`);
}

function editTest(st: State, r: Rng, mod: string): void {
  const list = st.tests.get(mod) ?? [];
  list.push(`test('${mod} case ${list.length + 1}', () => assert.equal(${mod}.check(${r.int(0, 99)}), true));\n`);
  st.tests.set(mod, list);
}

function lockfile(st: State): string {
  const pkgs: Record<string, unknown> = { '': { name: 'synthetic-service', version: '1.0.0', dependencies: depRanges(st) } };
  for (const [name, v] of [...st.deps].sort(([a], [b]) => a.localeCompare(b))) {
    const version = v.join('.');
    const integrity = crypto.createHash('sha512').update(`${name}@${version}`).digest('base64');
    pkgs[`node_modules/${name}`] = { version, resolved: `https://registry.example/${name}/-/${name}-${version}.tgz`, integrity: `sha512-${integrity}` };
  }
  return `${JSON.stringify({ name: 'synthetic-service', version: '1.0.0', lockfileVersion: 3, requires: true, packages: pkgs }, null, 2)}\n`;
}

function depRanges(st: State): Record<string, string> {
  return Object.fromEntries([...st.deps].sort(([a], [b]) => a.localeCompare(b)).map(([n, v]) => [n, `^${v[0]}.${v[1]}.0`]));
}

/** The tree a state renders to. package.json lists ranges, so a patch bump changes only the lockfile. */
function render(st: State): Map<string, string> {
  const files = new Map<string, string>();
  files.set('.dockerignore', 'node_modules\ndist\n*.log\n');
  files.set('tsconfig.json', `${JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', strict: true, outDir: 'dist' } }, null, 2)}\n`);
  files.set('package.json', `${JSON.stringify({ name: 'synthetic-service', version: '1.0.0', type: 'module',
    scripts: { build: 'tsc -p .', test: 'node --test dist/test' }, dependencies: depRanges(st) }, null, 2)}\n`);
  files.set('package-lock.json', lockfile(st));
  for (const [mod, fns] of st.modules) files.set(`src/${mod}.ts`, `// ${mod}: part of the synthetic service\n\n${fns.join('\n')}`);
  for (const [mod, tests] of st.tests) files.set(`test/${mod}.test.ts`, `import { test } from 'node:test';\nimport assert from 'node:assert/strict';\nimport * as ${mod} from '../src/${mod}.js';\n\n${tests.join('')}`);
  for (const [doc, paras] of st.docs) files.set(doc, `# ${path.basename(doc, '.md')}\n\n${paras.join('\n\n')}\n`);
  return files;
}

/** Picks the next commit's change (never `deps`: those come on their own schedule). */
function ordinaryChange(st: State, r: Rng): { kind: ChangeKind; subject: string } {
  const mods = [...st.modules.keys()];
  const x = r.next();
  if (x < 0.55) {
    const touched = [...new Set([r.pick(mods), ...(r.next() < 0.35 ? [r.pick(mods)] : [])])];
    for (const m of touched) {
      editModule(st, r, m);
      if (r.next() < 0.5) editTest(st, r, m);
    }
    return { kind: 'src', subject: `src: change ${touched.join(', ')}` };
  }
  if (x < 0.7) {
    const m = r.pick(mods);
    editTest(st, r, m);
    return { kind: 'test', subject: `test: cover ${m}` };
  }
  if (x < 0.85) {
    const doc = r.pick(DOCS);
    st.docs.get(doc)!.push(sentence(r));
    return { kind: 'docs', subject: `docs: update ${doc}` };
  }
  const unused = MODULES.filter((m) => !st.modules.has(m));
  if (x < 0.93 && unused.length > 0) {
    const m = unused[0]!;
    st.modules.set(m, []);
    addFunction(st, r, m);
    addFunction(st, r, m);
    editTest(st, r, m);
    return { kind: 'module', subject: `feat: add module ${m}` };
  }
  const m = r.pick(mods);
  editModule(st, r, m);
  st.docs.get('docs/api.md')!.push(`\`${m}\`: ${sentence(r)}`);
  return { kind: 'src+docs', subject: `src: change ${m}, document it` };
}

/** A dependency change: a patch or minor bump, or (one time in three) a new dependency. */
function depsChange(st: State, r: Rng): string {
  const unused = DEPS.filter((d) => !st.deps.has(d));
  if (unused.length > 0 && r.next() < 0.34) {
    const d = unused[0]!;
    st.deps.set(d, [r.int(1, 5), r.int(0, 9), r.int(0, 9)]);
    return `deps: add ${d}`;
  }
  const d = r.pick([...st.deps.keys()]);
  const [ma, mi, pa] = st.deps.get(d)!;
  const next: [number, number, number] = r.next() < 0.7 ? [ma, mi, pa + 1] : [ma, mi + 1, 0];
  st.deps.set(d, next);
  return `deps: bump ${d} ${ma}.${mi}.${pa} → ${next.join('.')}`;
}

/**
 * The tree of each of `commits` commits, from `seed`. The lockfile changes every 8-12 commits;
 * the other commits edit sources (55 %), tests (15 %), docs (15 %), add a module or edit a source
 * and its docs together.
 */
export function planSyntheticHistory(commits: number, seed: number): SyntheticCommit[] {
  const r = prng(seed);
  const st: State = { deps: new Map(), modules: new Map(), tests: new Map(), docs: new Map(), fnCounter: 1 };
  for (const d of DEPS.slice(0, 10)) st.deps.set(d, [r.int(1, 5), r.int(0, 9), r.int(0, 9)]);
  for (const m of MODULES.slice(0, 6)) {
    st.modules.set(m, []);
    for (let i = r.int(2, 4); i > 0; i--) addFunction(st, r, m);
    editTest(st, r, m);
  }
  for (const d of DOCS) st.docs.set(d, [sentence(r), sentence(r)]);
  const out: SyntheticCommit[] = [{ subject: 'initial import', kind: 'initial', files: render(st) }];
  let nextDeps = 1 + r.int(8, 12);
  for (let i = 1; i < commits; i++) {
    let change: { kind: ChangeKind; subject: string };
    if (i === nextDeps) {
      change = { kind: 'deps', subject: depsChange(st, r) };
      nextDeps = i + r.int(8, 12);
    } else {
      change = ordinaryChange(st, r);
    }
    out.push({ ...change, files: render(st) });
  }
  return out;
}

/** The dependency install both Dockerfiles share: reads the lockfile, writes ~384 KB per package. */
const INSTALL = `RUN set -e; mkdir -p node_modules; \\
    awk -F'"' '/"node_modules\\//{n=substr($2,14)} /"version"/{if(n!=""){print n, $4; n=""}}' package-lock.json | \\
    while read name version; do \\
      mkdir -p "node_modules/$name"; \\
      yes "module.exports = '$name@$version';" | head -c 393216 > "node_modules/$name/index.js"; \\
    done; \\
    sleep 2`;
// sleep 2: stands in for the download time of a real install, so a rebuilt install is visible.
const COMPILE = 'RUN mkdir -p dist && for f in src/*.ts; do sed \'s/: number//g\' "$f"; done > dist/app.js';
const TEST = 'RUN for t in test/*.ts; do grep -c "^test(" "$t"; done > dist/test-report.txt';

/** Everything copied first, then installed: any change to any file rebuilds the install. */
export const NAIVE_DOCKERFILE = `FROM busybox:latest
WORKDIR /app
COPY . .
${INSTALL}
${COMPILE}
${TEST}
CMD ["cat", "/app/dist/app.js"]
`;

/** Manifests first, then install, then sources, then tests: the install survives source edits. */
export const ORDERED_DOCKERFILE = `FROM busybox:latest
WORKDIR /app
COPY package.json package-lock.json ./
${INSTALL}
COPY tsconfig.json ./
COPY src/ src/
${COMPILE}
COPY test/ test/
${TEST}
CMD ["cat", "/app/dist/app.js"]
`;

async function git(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout } = await execFileP('git', args, { cwd, env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1', ...env } });
  return stdout.trim();
}

/**
 * Writes `plan` as a git repository at `<dir>/repo` (one commit per entry, fixed author and
 * dates an hour apart, so commit ids are reproducible) and the two Dockerfiles at
 * `<dir>/naive.Dockerfile` and `<dir>/ordered.Dockerfile`, outside the repository.
 */
export async function writeSyntheticHistory(dir: string, plan: SyntheticCommit[]): Promise<SyntheticHistory> {
  const repo = path.join(dir, 'repo');
  await fs.mkdir(repo, { recursive: true });
  await git(repo, ['init', '-q', '-b', 'main']);
  const commits: SyntheticHistory['commits'] = [];
  let prev = new Map<string, string>();
  for (const [i, c] of plan.entries()) {
    for (const f of prev.keys()) if (!c.files.has(f)) await fs.rm(path.join(repo, f));
    for (const [f, text] of c.files) {
      if (prev.get(f) === text) continue;
      await fs.mkdir(path.dirname(path.join(repo, f)), { recursive: true });
      await fs.writeFile(path.join(repo, f), text);
    }
    const date = `${1_700_000_000 + i * 3600} +0000`;
    const who = { GIT_AUTHOR_NAME: 'Synthetic Dev', GIT_AUTHOR_EMAIL: 'dev@synthetic.example', GIT_AUTHOR_DATE: date,
      GIT_COMMITTER_NAME: 'Synthetic Dev', GIT_COMMITTER_EMAIL: 'dev@synthetic.example', GIT_COMMITTER_DATE: date };
    await git(repo, ['add', '-A']);
    await git(repo, ['commit', '-q', '--allow-empty', '--no-verify', '-m', c.subject], who);
    commits.push({ sha: await git(repo, ['rev-parse', 'HEAD']), subject: c.subject, kind: c.kind });
    prev = c.files;
  }
  const dockerfiles = [
    { label: 'naive', path: path.join(dir, 'naive.Dockerfile'), text: NAIVE_DOCKERFILE },
    { label: 'ordered', path: path.join(dir, 'ordered.Dockerfile'), text: ORDERED_DOCKERFILE },
  ];
  for (const d of dockerfiles) await fs.writeFile(d.path, d.text);
  return { repo, commits, dockerfiles: dockerfiles.map(({ label, path: p }) => ({ label, path: p })) };
}

/** Plans and writes a synthetic history of `commits` commits into `dir` (see the functions above). */
export async function generateSyntheticHistory(opts: { dir: string; commits: number; seed: number }): Promise<SyntheticHistory> {
  return writeSyntheticHistory(opts.dir, planSyntheticHistory(opts.commits, opts.seed));
}
