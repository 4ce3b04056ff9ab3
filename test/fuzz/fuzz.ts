/**
 * The fuzzing pass: random and mutated Dockerfiles (`build`), mutated `save` archives (`load`)
 * and hostile layer tars (`ADD`), each run through the real CLI against a throwaway copy of a
 * store; every case must succeed or fail cleanly (fuzz-runner.ts says what that means).
 *
 *   node dist/test/fuzz/fuzz.js --count 1000 [--seed N] [--concurrency 2] [--keep DIR] [--verbose]
 *
 * `--count N` runs N Dockerfiles and N archives (65 % load, 35 % ADD). Prints one JSON line per
 * failure and a summary; exits 1 when a case failed. `npm test` runs it with a small count.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { busyboxTar, slipway, snapshotTree } from '../support/cli.js';
import { makeTar } from '../support/tar.js';
import { Rng, caseSeed } from '../support/fuzz-random.js';
import { CONTEXT_FILES, fuzzedDockerfile } from '../support/fuzz-dockerfiles.js';
import { hostileLayer, mutateArchive } from '../support/fuzz-archives.js';
import { STACK, judge, resetStore, runCli, type CaseResult } from '../support/fuzz-runner.js';

export interface FuzzOptions { dockerfiles: number; archives: number; seed: number; concurrency: number; timeoutMs: number; keep?: string; verbose?: boolean; log?: (line: string) => void }
export interface FuzzSummary { cases: number; byKind: Record<string, Record<string, number>>; failures: CaseResult[]; ms: number; seed: number }

async function must(root: string, args: string[]): Promise<void> {
  const r = await slipway(root, args);
  if (r.code !== 0) throw new Error(`fuzz setup: slipway ${args.join(' ')}: ${r.stderr}`);
}

/** The template store (busybox, a tiny image and one on it) and the seed archives. */
async function setup(work: string): Promise<{ template: string; seeds: Buffer[] }> {
  const template = path.join(work, 'template');
  await must(template, ['import', '--change', 'CMD ["sh"]', await busyboxTar(), 'busybox:latest']);
  const tiny = path.join(work, 'tiny.tar');
  await fs.writeFile(tiny, await makeTar([{ name: 'etc/', type: 'directory', mode: 0o755 }, { name: 'etc/passwd', body: 'root:x:0:0::/root:/bin/sh\n' }, { name: 'hello', body: 'hello\n' }]));
  await must(template, ['import', '--change', 'CMD ["/hello"]', tiny, 'tiny:latest']);
  const ctx = path.join(work, 'seed-ctx');
  await fs.mkdir(ctx);
  await fs.writeFile(path.join(ctx, 'a.txt'), 'a\n');
  await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM tiny\nCOPY a.txt /a\nENV X=1\nLABEL l=v\nCMD ["x"]\n');
  await must(template, ['build', '-t', 'tiny2:1', ctx]);
  const seeds: Buffer[] = [];
  for (const [name, args] of [['d.tar', ['tiny2:1']], ['o.tar', ['--format', 'oci', 'tiny2:1']], ['t.tar', ['tiny', 'tiny2:1']]] as const) {
    await must(template, ['save', '-o', path.join(work, name), ...args]);
    seeds.push(await fs.readFile(path.join(work, name)));
  }
  await fs.rm(path.join(template, 'builds'), { recursive: true, force: true });
  return { template, seeds };
}

type Kind = 'dockerfile' | 'load' | 'add';

/** Makes and runs case `index` of `kind` in this worker's store and context. */
async function runCase(kind: Kind, index: number, w: { root: string; ctx: string; template: string; before: string[]; seeds: Buffer[] }, o: FuzzOptions): Promise<CaseResult> {
  const rng = new Rng(caseSeed(o.seed + (kind === 'dockerfile' ? 0 : kind === 'load' ? 1 : 2), index));
  await resetStore(w.template, w.root);
  const started = Date.now();
  let args: string[];
  let input: Buffer;
  if (kind === 'dockerfile') {
    input = Buffer.from(fuzzedDockerfile(rng));
    await fs.writeFile(path.join(w.ctx, 'Dockerfile'), input);
    args = ['build', '-t', `fuzz:${index}`, w.ctx];
  } else if (kind === 'load') {
    input = await mutateArchive(rng, rng.pick(w.seeds));
    await fs.writeFile(path.join(w.ctx, 'in.tar'), input);
    args = ['load', '-i', path.join(w.ctx, 'in.tar')];
  } else {
    input = await hostileLayer(rng);
    await fs.writeFile(path.join(w.ctx, 'x.tar'), input);
    await fs.writeFile(path.join(w.ctx, 'Dockerfile'), `FROM ${rng.pick(['tiny', 'busybox'])}\nADD x.tar ${rng.pick(['/d/', '/', '/etc/'])}\n`);
    args = ['build', w.ctx];
  }
  const r = await runCli(w.root, args, o.timeoutMs);
  let verdict = await judge(r, w.root, w.before, kind === 'load' ? 'load' : 'build');
  if (kind === 'load' && verdict.outcome === 'success') verdict = await afterLoad(r.stdout, w, o);
  const result: CaseResult = { kind, index, ...verdict, ms: Date.now() - started };
  if (o.verbose) o.log?.(`${kind} ${index} ${verdict.outcome} ${result.ms}ms ${r.stderr.split('\n')[0]!.slice(0, 150)}`);
  if (verdict.outcome === 'failure') {
    result.stderr = r.stderr.slice(0, 2000);
    if (o.keep) await fs.writeFile(path.join(o.keep, `${kind}-${index}.${kind === 'dockerfile' ? 'Dockerfile' : 'tar'}`), input);
  }
  return result;
}

/** What was loaded must be usable: history, inspect and save of each image work. */
async function afterLoad(stdout: string, w: { root: string; ctx: string }, o: FuzzOptions): Promise<{ outcome: 'success' | 'failure'; reason?: string }> {
  const refs = [...stdout.matchAll(/^Loaded image(?: ID)?: (\S+)$/gm)].map((m) => m[1]!);
  if (refs.length === 0) return { outcome: 'failure', reason: `load succeeded but named no image: ${stdout.slice(0, 200)}` };
  for (const ref of refs) {
    for (const args of [['history', ref], ['inspect', ref], ['save', '-o', path.join(w.ctx, 'out.tar'), ref]]) {
      const r = await runCli(w.root, args, o.timeoutMs);
      if (r.code !== 0 || STACK.test(r.stderr)) return { outcome: 'failure', reason: `after load, ${args[0]} ${ref}: ${r.stderr.slice(0, 300)}` };
    }
  }
  return { outcome: 'success' };
}

/** Runs the fuzzing pass. */
export async function fuzz(o: FuzzOptions): Promise<FuzzSummary> {
  const started = Date.now();
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-fuzz-'));
  try {
    if (o.keep) await fs.mkdir(o.keep, { recursive: true });
    const { template, seeds } = await setup(work);
    const before = await snapshotTree(template);
    const queue: Array<[Kind, number]> = [];
    const loads = Math.round(o.archives * 0.65);
    for (let i = 0; i < Math.max(o.dockerfiles, o.archives); i++) {
      if (i < o.dockerfiles) queue.push(['dockerfile', i]);
      if (i < loads) queue.push(['load', i]);
      else if (i < o.archives) queue.push(['add', i - loads]);
    }
    const results: CaseResult[] = [];
    await Promise.all(Array.from({ length: o.concurrency }, async (_, n) => {
      const ctx = path.join(work, `ctx-${n}`);
      for (const [name, text] of Object.entries(CONTEXT_FILES)) {
        await fs.mkdir(path.dirname(path.join(ctx, name)), { recursive: true });
        await fs.writeFile(path.join(ctx, name), text);
      }
      const w = { root: path.join(work, `store-${n}`), ctx, template, before, seeds };
      for (let job = queue.shift(); job; job = queue.shift()) {
        const r = await runCase(job[0], job[1], w, o);
        results.push(r);
        if (r.outcome === 'failure') o.log?.(JSON.stringify(r));
        if (results.length % 100 === 0) o.log?.(`# ${results.length} cases, ${Math.round((Date.now() - started) / 1000)} s`);
      }
    }));
    const byKind: FuzzSummary['byKind'] = {};
    for (const r of results) (byKind[r.kind] ??= { success: 0, 'clean-error': 0, failure: 0 })[r.outcome]!++;
    return { cases: results.length, byKind, failures: results.filter((r) => r.outcome === 'failure'), ms: Date.now() - started, seed: o.seed };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: 'string' }, dockerfiles: { type: 'string' }, archives: { type: 'string' }, seed: { type: 'string' }, concurrency: { type: 'string' }, timeout: { type: 'string' }, keep: { type: 'string' }, verbose: { type: 'boolean' } } });
  const count = Number(values.count ?? 100);
  const summary = await fuzz({
    dockerfiles: Number(values.dockerfiles ?? count), archives: Number(values.archives ?? count), seed: Number(values.seed ?? Date.now() % 1e9),
    concurrency: Number(values.concurrency ?? 2), timeoutMs: Number(values.timeout ?? 30) * 1000, ...(values.keep ? { keep: values.keep } : {}), verbose: values.verbose ?? false, log: (l) => console.log(l),
  });
  console.log(JSON.stringify({ summary: { cases: summary.cases, byKind: summary.byKind, failures: summary.failures.length, seconds: Math.round(summary.ms / 1000), seed: summary.seed } }));
  console.log(['kind         success  clean-error  failure', ...Object.entries(summary.byKind).map(([k, v]) => `${k.padEnd(12)} ${String(v.success).padStart(7)}  ${String(v['clean-error']).padStart(11)}  ${String(v.failure).padStart(7)}`)].join('\n'));
  process.exitCode = summary.failures.length ? 1 : 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
