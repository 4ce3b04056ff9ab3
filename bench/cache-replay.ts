#!/usr/bin/env node
/**
 * Cache replay: builds every commit of a git history in order, with one or more Dockerfiles,
 * each in its own fresh Slipway store, and reports how well the layer cache carries from commit
 * to commit: per commit hits/steps, build seconds and bytes rebuilt; per Dockerfile the hit rate,
 * total time and top cache breakers (from `slipway stats`).
 *
 *   node dist/bench/cache-replay.js [--synthetic N] [--seed S]
 *   node dist/bench/cache-replay.js --repo DIR [--range A..B] [--first-parent] [--dockerfile [LABEL=]F]...
 *                                   [--out DIR] [--cli PATH] [--base ROOTFS.tar] [--load IMAGE.tar]... [--keep]
 *
 * `--dockerfile F`: a file on disk, the same for every commit; `repo:PATH` is the commit's own
 * file (default `repo:Dockerfile`). Every store starts with busybox:latest (the --base rootfs) plus
 * the `docker save` tars given with --load. Without --repo it generates the synthetic history
 * (bench/synthetic-history.ts) with a naive and an ordered Dockerfile.
 *
 * stdout: one JSON line per (dockerfile, commit), one summary JSON line per Dockerfile, then a
 * Markdown table. --out (default ./cache-replay-out) gets cache-replay.jsonl, cache-replay.md
 * and cache-replay.svg (hit rate and build seconds per commit). It never asserts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { generateSyntheticHistory } from './synthetic-history.js';

interface Dockerfile { label: string; file: string; inRepo: boolean; root: string; tag: string }
interface Commit { sha: string; subject: string; changed: string[]; lockfile: boolean }
/** Dependency lockfiles of common ecosystems: commits that change one are marked in the table and chart. */
const LOCKFILE = /(^|\/)(package-lock\.json|npm-shrinkwrap\.json|yarn\.lock|pnpm-lock\.yaml|Cargo\.lock|go\.sum|poetry\.lock|Pipfile\.lock|uv\.lock|Gemfile\.lock|composer\.lock)$/;
/** One build of one commit with one Dockerfile (a JSON line). */
interface Row {
  dockerfile: string; index: number; commit: string; subject: string; changedFiles: number; lockfileChanged: boolean; ok: boolean;
  hits: number; steps: number; hitRate: number | null; seconds: number; buildMs: number | null;
  bytesRebuilt: number; firstMiss: string | null; error?: string;
}
interface Summary {
  dockerfile: string; summary: true; commits: number; failed: number; hits: number; steps: number;
  hitRate: number | null; warmHitRate: number | null; totalSeconds: number; coldSeconds: number; warmMeanSeconds: number;
  bytesRebuilt: number; breakers: Array<{ input: string; misses: number }>;
}
interface RunResult { code: number | null; seconds: number; stdout: string; stderr: string }

// ---- processes ------------------------------------------------------------------------------

let current: ChildProcess | undefined;
let interrupted = false;

/** Runs a command in its own process group, so Ctrl-C reaches us first and we stop it in order. */
function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<RunResult> {
  if (interrupted) return Promise.reject(new Error('interrupted'));
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
      env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0' } });
    current = child;
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-64_000)));
    child.on('error', reject);
    child.on('close', (code) => {
      current = undefined;
      resolve({ code, seconds: (performance.now() - t0) / 1000, stdout, stderr });
    });
  });
}

async function must(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${r.code}\n${(r.stderr || r.stdout).trim().split('\n').slice(-20).join('\n')}`);
  return r.stdout;
}

const log = (msg: string) => process.stderr.write(`# ${msg}\n`);
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

function findUp(from: string, rel: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, rel))) return path.join(dir, rel);
    if (dir === path.dirname(dir)) return undefined;
  }
}

// ---- the replay -----------------------------------------------------------------------------

interface Ctx { work: string; cli: string; gitDir: string; ctxDir: string }

const slipway = (ctx: Ctx, d: Dockerfile, args: string[]) => run(process.execPath, [ctx.cli, '--root', d.root, ...args]);

/** The commits of `range` in order (`git rev-list --reverse`), each with the paths it changed. */
async function listCommits(repo: string, range: string, firstParent: boolean): Promise<Commit[]> {
  const shas = (await must('git', ['-C', repo, 'rev-list', '--reverse', ...(firstParent ? ['--first-parent'] : []), range, '--'])).split('\n').filter(Boolean);
  const out: Commit[] = [];
  for (const sha of shas) {
    const subject = (await must('git', ['-C', repo, 'log', '-1', '--format=%s', sha])).trim();
    const changed = (await must('git', ['-C', repo, 'diff-tree', '-r', '--root', '--no-commit-id', '--name-only', sha])).split('\n').filter(Boolean);
    out.push({ sha, subject, changed, lockfile: changed.some((f) => LOCKFILE.test(f)) });
  }
  return out;
}

/** Names of the build records in a store, so the one a build adds can be found. */
const recordNames = async (root: string) => new Set(await fsp.readdir(path.join(root, 'builds')).catch(() => [] as string[]));

/** Builds one commit with one Dockerfile (the context is already checked out). */
async function buildOne(ctx: Ctx, d: Dockerfile, c: Commit, index: number): Promise<Row> {
  const base = { dockerfile: d.label, index, commit: c.sha.slice(0, 12), subject: c.subject, changedFiles: c.changed.length, lockfileChanged: c.lockfile };
  const file = d.inRepo ? path.join(ctx.ctxDir, d.file) : d.file;
  if (!fs.existsSync(file)) return { ...base, ok: false, hits: 0, steps: 0, hitRate: null, seconds: 0, buildMs: null, bytesRebuilt: 0, firstMiss: null, error: `no ${d.file} in this commit` };
  const before = await recordNames(d.root);
  const r = await slipway(ctx, d, ['build', '-t', d.tag, '-f', file, ctx.ctxDir]);
  // The build's own record (one per build, in <root>/builds/) gives the bytes of each missed step.
  const added = [...await recordNames(d.root)].filter((n) => !before.has(n)).sort();
  type Rec = { durationMs: number; steps: Array<{ hit: boolean; bytes: number }> };
  const rec = added.length ? JSON.parse(await fsp.readFile(path.join(d.root, 'builds', added[added.length - 1]!), 'utf8')) as Rec : undefined;
  const m = /^Cache: (\d+)\/(\d+) steps/m.exec(r.stdout);
  const hits = m ? Number(m[1]) : rec?.steps.filter((s) => s.hit).length ?? 0;
  const steps = m ? Number(m[2]) : rec?.steps.length ?? 0;
  const firstMiss = /^ ---> Cache miss: (.*)$/m.exec(r.stdout)?.[1] ?? null;
  const row: Row = { ...base, ok: r.code === 0, hits, steps, hitRate: steps ? round(hits / steps) : null, seconds: round(r.seconds),
    buildMs: rec?.durationMs ?? null, bytesRebuilt: rec ? rec.steps.filter((s) => !s.hit).reduce((a, s) => a + s.bytes, 0) : 0, firstMiss };
  if (r.code !== 0) {
    // The error line, not the tail: a crash ends with a stack and `Node.js vNN`.
    const lines = (r.stderr || r.stdout).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('at ') && !/^Node\.js v/.test(l));
    row.error = (lines.find((l) => /(^|\w)Error\b|^error\b/i.test(l)) ?? lines[lines.length - 1] ?? `exit ${r.code}`).slice(0, 300);
  }
  return row;
}

/** Per-Dockerfile figures; breakers come from `slipway stats --format json` over the whole replay. */
async function summarize(ctx: Ctx, d: Dockerfile, rows: Row[]): Promise<Summary> {
  const ok = rows.filter((r) => r.ok);
  const warm = ok.filter((r) => r.index > 1);
  const sum = (xs: Row[], f: (r: Row) => number) => xs.reduce((a, r) => a + f(r), 0);
  const rateOf = (xs: Row[]) => (sum(xs, (r) => r.steps) ? round(sum(xs, (r) => r.hits) / sum(xs, (r) => r.steps)) : null);
  const st = await slipway(ctx, d, ['stats', '--format', 'json', '--tag', d.tag]);
  let breakers: Summary['breakers'] = [];
  try {
    breakers = (JSON.parse(st.stdout) as { breakers: Summary['breakers'] }).breakers.slice(0, 5);
  } catch { log(`stats for ${d.label} failed: ${st.stderr.trim()}`); }
  return {
    dockerfile: d.label, summary: true, commits: rows.length, failed: rows.length - ok.length,
    hits: sum(ok, (r) => r.hits), steps: sum(ok, (r) => r.steps),
    hitRate: rateOf(ok), warmHitRate: rateOf(warm),
    totalSeconds: round(sum(rows, (r) => r.seconds), 1), coldSeconds: round(rows[0]?.seconds ?? 0, 1),
    warmMeanSeconds: round(sum(warm, (r) => r.seconds) / Math.max(1, warm.length), 2),
    bytesRebuilt: sum(rows, (r) => r.bytesRebuilt), breakers,
  };
}

/**
 * For each commit: check it out into the one context folder (a checkout, not a fresh export, so
 * unchanged files keep their stat identity, as in a developer's tree), then build it with every
 * Dockerfile. The Dockerfile that goes first rotates, so load drift hits all of them alike.
 */
async function replay(ctx: Ctx, dockerfiles: Dockerfile[], commits: Commit[]): Promise<Map<string, Row[]>> {
  const rows = new Map(dockerfiles.map((d) => [d.label, [] as Row[]]));
  for (const [i, c] of commits.entries()) {
    await must('git', ['--git-dir', ctx.gitDir, '--work-tree', ctx.ctxDir, 'checkout', '-q', '-f', '--detach', c.sha]);
    for (let k = 0; k < dockerfiles.length; k++) {
      const d = dockerfiles[(i + k) % dockerfiles.length]!;
      const row = await buildOne(ctx, d, c, i + 1);
      rows.get(d.label)!.push(row);
      process.stdout.write(`${JSON.stringify(row)}\n`);
      log(`${i + 1}/${commits.length} ${c.sha.slice(0, 8)} ${d.label}: ${row.hits}/${row.steps} hits, ${row.seconds.toFixed(1)} s${row.error ? `, FAILED: ${row.error}` : ''}`);
    }
  }
  return rows;
}

// ---- Markdown -------------------------------------------------------------------------------

const mb = (b: number) => (b / 1e6).toFixed(2);
const pct = (r: number | null) => (r === null ? '–' : `${Math.round(r * 100)} %`);
const cell = (s: string) => s.replace(/\|/g, '\\|');

/** Markdown: summary table, per-commit table, the chart. Files on disk are linked as their copies in --out. */
function markdown(title: string, dockerfiles: Dockerfile[], commits: Commit[], rows: Map<string, Row[]>, sums: Summary[]): string {
  const labels = dockerfiles.map((d) => d.label);
  const out = [`# Cache replay: ${title}`, '', dockerfiles.map((d) => `- \`${d.label}\`: ${d.inRepo ? `each commit's \`${d.file}\`` : `[${d.label}.Dockerfile](${d.label}.Dockerfile)`}`).join('\n'), '',
    '| Dockerfile | commits | hit rate | warm hit rate | total build s | cold s | mean warm s | MB rebuilt | top cache breakers |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---|'];
  for (const s of sums) {
    const br = s.breakers.slice(0, 3).map((b) => `${cell(b.input)} (${b.misses})`).join(', ') || '–';
    out.push(`| ${s.dockerfile} | ${s.commits}${s.failed ? ` (${s.failed} failed)` : ''} | ${pct(s.hitRate)} (${s.hits}/${s.steps}) | ${pct(s.warmHitRate)} | ${s.totalSeconds.toFixed(1)} | ${s.coldSeconds.toFixed(1)} | ${s.warmMeanSeconds.toFixed(2)} | ${mb(s.bytesRebuilt)} | ${br} |`);
  }
  out.push('', 'Per commit: hits/steps, build seconds (wall clock of `slipway build`), MB rebuilt (layers of missed steps).', '',
    `| # | commit | subject | files | ${labels.map((l) => `${l} hits | ${l} s | ${l} MB`).join(' | ')} |`,
    `|---:|---|---|---:|${labels.map(() => '---:|---:|---:').join('|')}|`);
  for (const [i, c] of commits.entries()) {
    const cells = labels.map((l) => {
      const r = rows.get(l)![i];
      if (!r) return '– | – | –';
      return r.ok ? `${r.hits}/${r.steps} | ${r.seconds.toFixed(1)} | ${mb(r.bytesRebuilt)}` : `failed | ${r.seconds.toFixed(1)} | –`;
    });
    out.push(`| ${i + 1} | \`${c.sha.slice(0, 8)}\` | ${cell(c.subject.slice(0, 60))} | ${c.changed.length}${c.lockfile ? ' (lockfile)' : ''} | ${cells.join(' | ')} |`);
  }
  out.push('', '![hit rate and build seconds per commit](cache-replay.svg)', '');
  return out.join('\n');
}

// ---- SVG ------------------------------------------------------------------------------------

const COLORS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Round tick step for 0..max with about `n` ticks. */
function tickStep(max: number, n: number): number {
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
}

function marker(shape: number, x: number, y: number, color: string, tip: string): string {
  const t = `<title>${esc(tip)}</title>`;
  const f = `fill="${color}" stroke="#fff" stroke-width="1"`;
  if (shape % 3 === 1) return `<rect x="${(x - 3.5).toFixed(1)}" y="${(y - 3.5).toFixed(1)}" width="7" height="7" ${f}>${t}</rect>`;
  if (shape % 3 === 2) return `<path d="M${x.toFixed(1)} ${(y - 5).toFixed(1)}l5 5-5 5-5-5z" ${f}>${t}</path>`;
  return `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="4" ${f}>${t}</circle>`;
}

/** Two panels sharing the commit axis: hit rate % on top, build seconds below; one line per Dockerfile. */
function svgChart(title: string, commits: Commit[], rows: Map<string, Row[]>, sums: Summary[]): string {
  const lock = commits.some((c) => c.lockfile);
  // Legend entries go three to a row: one per Dockerfile, then the lockfile band's.
  const legendRows = Math.ceil((sums.length + (lock ? 1 : 0)) / 3), at = (k: number) => ({ x: 70 + (k % 3) * 290, y: 50 + Math.floor(k / 3) * 22 });
  const W = 960, L = 70, R = 24, panelH = 200, top1 = 70 + legendRows * 22, top2 = top1 + panelH + 56, H = top2 + panelH + 64;
  const plotW = W - L - R, n = commits.length, pad = Math.min(20, plotW / (2 * Math.max(1, n)));
  // Inset by half a commit's width, so the first and last markers sit inside the axes.
  const xOf = (i: number) => L + (n <= 1 ? plotW / 2 : pad + (i * (plotW - 2 * pad)) / (n - 1));
  const band = n <= 1 ? plotW : (plotW - 2 * pad) / (n - 1);
  const maxS = Math.max(1, ...[...rows.values()].flat().map((r) => r.seconds));
  const sStep = tickStep(maxS, 5), sMax = Math.ceil(maxS / sStep) * sStep;
  const o: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`, `<text x="${L}" y="26" font-size="16" font-weight="bold">${esc(title)}</text>`];
  // Legend: swatch, label, and the Dockerfile's overall figures.
  sums.forEach((s, k) => {
    const { x, y } = at(k), c = COLORS[k % COLORS.length]!;
    o.push(`<line x1="${x}" y1="${y}" x2="${x + 28}" y2="${y}" stroke="${c}" stroke-width="2.5"/>`, marker(k, x + 14, y, c, s.dockerfile),
      `<text x="${x + 36}" y="${y + 4}"><tspan font-weight="bold">${esc(s.dockerfile)}</tspan>: ${pct(s.hitRate)} hits, ${s.totalSeconds.toFixed(0)} s total</text>`);
  });
  if (lock) {
    const { x, y } = at(sums.length);
    o.push(`<rect x="${x}" y="${y - 7}" width="14" height="14" fill="#f0e6c8"/>`, `<text x="${x + 20}" y="${y + 4}">lockfile changed</text>`);
  }
  const panels = [
    { top: top1, label: 'cache hit rate (%)', max: 100, step: 25, val: (r: Row) => (r.hitRate === null ? null : r.hitRate * 100), fmt: (v: number) => `${Math.round(v)} %` },
    { top: top2, label: 'build time (s)', max: sMax, step: sStep, val: (r: Row) => r.seconds, fmt: (v: number) => `${v.toFixed(1)} s` },
  ];
  const xEvery = Math.max(1, Math.ceil(n / 20));
  for (const p of panels) {
    const yOf = (v: number) => p.top + panelH - (v / p.max) * panelH;
    o.push(`<text x="${L}" y="${p.top - 10}" font-weight="bold">${p.label}</text>`);
    commits.forEach((c, i) => {
      if (c.lockfile) o.push(`<rect x="${(xOf(i) - band / 2).toFixed(1)}" y="${p.top}" width="${band.toFixed(1)}" height="${panelH}" fill="#f0e6c8"><title>${esc(`#${i + 1} ${c.sha.slice(0, 8)}: lockfile changed`)}</title></rect>`);
    });
    for (let v = 0; v <= p.max + 1e-9; v += p.step) {
      o.push(`<line x1="${L}" y1="${yOf(v).toFixed(1)}" x2="${W - R}" y2="${yOf(v).toFixed(1)}" stroke="${v === 0 ? '#333' : '#e3e3e3'}"/>`,
        `<text x="${L - 8}" y="${(yOf(v) + 4).toFixed(1)}" text-anchor="end" fill="#333">${p.step < 1 ? v.toFixed(1) : Math.round(v * 10) / 10}</text>`);
    }
    o.push(`<line x1="${L}" y1="${p.top}" x2="${L}" y2="${p.top + panelH}" stroke="#333"/>`);
    for (let i = 0; i < n; i += xEvery) {
      o.push(`<line x1="${xOf(i).toFixed(1)}" y1="${p.top + panelH}" x2="${xOf(i).toFixed(1)}" y2="${p.top + panelH + 5}" stroke="#333"/>`,
        `<text x="${xOf(i).toFixed(1)}" y="${p.top + panelH + 18}" text-anchor="middle" fill="#333">${i + 1}</text>`);
    }
    [...rows.values()].forEach((list, k) => {
      const c = COLORS[k % COLORS.length]!;
      let d = '', pen = 'M';
      const dots: string[] = [];
      list.forEach((r, i) => {
        const v = r.ok ? p.val(r) : null;
        if (v === null) { pen = 'M'; return; } // a failed build breaks the line
        d += `${pen}${xOf(i).toFixed(1)} ${yOf(v).toFixed(1)}`;
        pen = 'L';
        dots.push(marker(k, xOf(i), yOf(v), c, `${r.dockerfile} #${i + 1} ${r.commit.slice(0, 8)} ${r.subject}: ${p.fmt(v)} (${r.hits}/${r.steps} hits, ${mb(r.bytesRebuilt)} MB rebuilt)`));
      });
      o.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="2" stroke-linejoin="round"/>`, ...dots);
    });
  }
  o.push(`<text x="${L + plotW / 2}" y="${H - 16}" text-anchor="middle" fill="#333">commit (oldest → newest; #1 is a cold build)</text>`, '</svg>', '');
  return o.join('\n');
}

// ---- main -----------------------------------------------------------------------------------

const sanitize = (s: string) => s.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '') || 'df';

function parseDockerfiles(specs: string[], work: string): Dockerfile[] {
  const seen = new Set<string>();
  return specs.map((spec, i) => {
    const eq = /^([A-Za-z0-9._-]+)=(.+)$/.exec(spec);
    const where = eq ? eq[2]! : spec;
    const inRepo = where.startsWith('repo:');
    const file = inRepo ? where.slice(5) : path.resolve(where);
    if (!inRepo && !fs.existsSync(file)) throw new Error(`--dockerfile ${spec}: no such file (use repo:PATH for a file inside each commit)`);
    let label = sanitize(eq ? eq[1]! : path.basename(file).replace(/\.?Dockerfile\.?/i, '') || 'dockerfile');
    if (seen.has(label)) label = `${label}-${i + 1}`;
    seen.add(label);
    return { label, file, inRepo, root: path.join(work, 'roots', label), tag: `replay-${label}:latest` };
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    repo: { type: 'string' }, range: { type: 'string' }, dockerfile: { type: 'string', multiple: true }, out: { type: 'string' },
    synthetic: { type: 'string' }, seed: { type: 'string' }, cli: { type: 'string' }, base: { type: 'string' }, load: { type: 'string', multiple: true },
    'first-parent': { type: 'boolean' }, keep: { type: 'boolean' },
  } });
  const here = fileURLToPath(import.meta.url);
  const cli = values.cli ? path.resolve(values.cli) : fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const outDir = path.resolve(values.out ?? 'cache-replay-out');
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'slipway-replay-'));
  const cleanup = async () => {
    if (values.keep) return log(`kept ${work}`);
    await fsp.rm(work, { recursive: true, force: true }).catch((e: Error) => log(`could not remove ${work}: ${e.message}`));
  };
  const onSignal = () => {
    interrupted = true;
    const child = current;
    if (child?.pid !== undefined) {
      child.kill('SIGTERM'); // Slipway stops its sandboxes; then anything left in its group goes
      setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 5000).unref();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let repo: string, title: string, specs: string[], commits: Commit[];
    if (values.repo === undefined) {
      const n = Number(values.synthetic ?? 30), seed = Number(values.seed ?? 1);
      log(`generating a synthetic history of ${n} commits (seed ${seed})`);
      const h = await generateSyntheticHistory({ dir: path.join(work, 'synthetic'), commits: n, seed });
      repo = h.repo;
      title = `synthetic history, ${n} commits, seed ${seed}`;
      specs = values.dockerfile ?? h.dockerfiles.map((d) => `${d.label}=${d.path}`);
      commits = await listCommits(repo, 'HEAD', false);
    } else {
      repo = path.resolve(values.repo);
      const range = values.range ?? 'HEAD~10..HEAD';
      title = `${path.basename(repo)} ${range}`;
      specs = values.dockerfile ?? ['repo:Dockerfile'];
      commits = await listCommits(repo, range, values['first-parent'] ?? false);
    }
    if (commits.length === 0) throw new Error('no commits in the range');
    const dockerfiles = parseDockerfiles(specs, work);
    let baseTar = values.base ? path.resolve(values.base) : undefined;
    if (!baseTar) {
      const script = [path.dirname(cli), path.dirname(here), process.cwd()].map((d) => findUp(d, 'scripts/make-busybox-rootfs.sh')).find(Boolean);
      if (!script) throw new Error('scripts/make-busybox-rootfs.sh not found; pass --base ROOTFS.tar');
      baseTar = path.join(work, 'busybox-rootfs.tar');
      await must('bash', [script, baseTar]);
    }
    // A bare, shared clone: checkouts never touch the user's repository, and the context holds no .git.
    const ctx: Ctx = { work, cli, gitDir: path.join(work, 'clone.git'), ctxDir: path.join(work, 'context') };
    await must('git', ['clone', '-q', '--bare', '--shared', repo, ctx.gitDir]);
    await fsp.mkdir(ctx.ctxDir);
    for (const d of dockerfiles) {
      await must(process.execPath, [cli, '--root', d.root, 'import', '--change', 'CMD ["sh"]', baseTar, 'busybox:latest']);
      for (const tar of values.load ?? []) await must(process.execPath, [cli, '--root', d.root, 'load', '-q', '-i', path.resolve(tar)]);
    }
    log(`${commits.length} commits × ${dockerfiles.length} Dockerfiles (${dockerfiles.map((d) => d.label).join(', ')}), work dir ${work}`);
    const rows = await replay(ctx, dockerfiles, commits);
    const sums: Summary[] = [];
    for (const d of dockerfiles) sums.push(await summarize(ctx, d, rows.get(d.label)!));
    for (const s of sums) process.stdout.write(`${JSON.stringify(s)}\n`);
    const md = markdown(title, dockerfiles, commits, rows, sums);
    process.stdout.write(`\n${md}`);
    await fsp.mkdir(outDir, { recursive: true });
    // The synthetic Dockerfiles live in the temp dir: keep a copy of each with the results.
    for (const d of dockerfiles) if (!d.inRepo) await fsp.copyFile(d.file, path.join(outDir, `${d.label}.Dockerfile`));
    await fsp.writeFile(path.join(outDir, 'cache-replay.jsonl'), [...[...rows.values()].flat(), ...sums].map((x) => JSON.stringify(x)).join('\n') + '\n');
    await fsp.writeFile(path.join(outDir, 'cache-replay.md'), md);
    await fsp.writeFile(path.join(outDir, 'cache-replay.svg'), svgChart(`Cache replay: ${title}`, commits, rows, sums));
    log(`wrote ${path.join(outDir, 'cache-replay.svg')} and ${path.join(outDir, 'cache-replay.md')}`);
    process.stdout.write(`\nchart: ${path.join(outDir, 'cache-replay.svg')}\n`);
  } finally {
    await cleanup();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`cache-replay: ${e.message}\n`);
  process.exitCode = interrupted ? 130 : 1;
});
