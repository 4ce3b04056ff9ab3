import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build, type BuildOptions, type StepExecutor } from '../../src/scheduler/build.js';
import type { BuildEvent } from '../../src/scheduler/progress.js';
import type { StepResult, StepTask } from '../../src/snapshot/run-step.js';
import { finishLayer } from '../../src/snapshot/finish-layer.js';
import { StoreLayout } from '../../src/store/layout.js';
import { readImage, resolveImage } from '../../src/store/graph.js';
import { SlipwayError } from '../../src/errors.js';

/**
 * The scheduler driven by a fake executor: no sandbox, no worker threads. A RUN "runs" by
 * writing one file named after its command into a fresh layer folder; `fail N` exits N. The
 * executor counts what it was asked to run, so hits and misses are measured outside the
 * scheduler's own report.
 */
class FakeExecutor implements StepExecutor {
  readonly ran: string[] = [];
  active = 0;
  maxActive = 0;
  /** Called while a RUN "runs"; a test can hold steps there. */
  during: (cmd: string) => Promise<void> = async () => undefined;

  async runStep(task: StepTask): Promise<StepResult> {
    if (task.type !== 'run') throw new Error(`the fake runs RUN steps only, not ${task.type}`);
    const cmd = task.argv[task.argv.length - 1]!;
    this.ran.push(cmd);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await this.during(cmd);
    } finally {
      this.active--;
    }
    const m = /^fail (\d+)$/.exec(cmd);
    if (m) return { ok: false, exitCode: Number(m[1]), error: { code: 'ERR_STEP_FAILED', message: `returned a non-zero code: ${m[1]}` } };
    const dir = await fs.mkdtemp(path.join(task.tmpRoot, 'fake-'));
    const layer = path.join(dir, 'layer');
    await fs.mkdir(layer);
    await fs.writeFile(path.join(layer, cmd.replace(/[^a-z0-9]+/gi, '_')), `${cmd}\n`);
    return { ok: true, ...(await finishLayer(layer, task)) };
  }

  digest<T>(): Promise<T> {
    return Promise.reject(new Error('the fake digests nothing'));
  }
}

async function setup(dockerfile: string): Promise<{ layout: StoreLayout; ctx: string; exec: FakeExecutor; events: BuildEvent[]; opts: (o?: Partial<BuildOptions>) => BuildOptions }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-sched-'));
  const ctx = path.join(dir, 'ctx');
  await fs.mkdir(ctx);
  await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  const layout = new StoreLayout(path.join(dir, 'root'));
  const exec = new FakeExecutor();
  const events: BuildEvent[] = [];
  const opts = (o: Partial<BuildOptions> = {}): BuildOptions => ({ layout, contextDir: ctx, executor: exec, onEvent: (e) => events.push(e), ...o });
  return { layout, ctx, exec, events, opts };
}

const kinds = (events: BuildEvent[]) => events.filter((e) => e.type === 'cache-hit' || e.type === 'cache-miss').map((e) => e.type);

test('a miss runs in the executor and is committed; the same build again is all hits and runs nothing', async () => {
  const t = await setup('FROM scratch\nENV A=1\nRUN one\nRUN two\n');
  const first = await build(t.opts({ tags: ['x:1'] }));
  assert.deepEqual(t.exec.ran, ['one', 'two']);
  assert.deepEqual(kinds(t.events), ['cache-miss', 'cache-miss', 'cache-miss']);
  assert.equal(await resolveImage(t.layout, 'x:1'), first.id);
  const json = await readImage(t.layout, first.id);
  assert.ok(json.config?.Env?.includes('A=1'), 'the config carries the ENV');
  assert.ok(json.parent, 'the RUN image has its parent');
  t.events.length = 0;
  const second = await build(t.opts());
  assert.equal(second.id, first.id);
  assert.deepEqual(t.exec.ran, ['one', 'two'], 'nothing ran again');
  assert.deepEqual(kinds(t.events), ['cache-hit', 'cache-hit', 'cache-hit']);
});

test('a failing step fails the build with Docker\'s message and its line, and commits nothing after it', async () => {
  const t = await setup('FROM scratch\nRUN one\nRUN fail 3\nRUN never\n');
  await assert.rejects(build(t.opts({ tags: ['y:1'] })), (e: unknown) => {
    assert.ok(e instanceof SlipwayError);
    assert.equal(e.code, 'ERR_STEP_FAILED');
    assert.equal(e.exitCode, 3);
    assert.equal(e.line, 3);
    assert.match(e.message, /^The command '.*fail 3' returned a non-zero code: 3$/);
    return true;
  });
  assert.deepEqual(t.exec.ran, ['one', 'fail 3']);
  await assert.rejects(resolveImage(t.layout, 'y:1'), /No such image/);
  // The step before the failure is cached: the next build starts from it.
  t.exec.ran.length = 0;
  await assert.rejects(build(t.opts()));
  assert.deepEqual(t.exec.ran, ['fail 3']);
});

test('independent stages run at the same time in the executor', async () => {
  const t = await setup('FROM scratch AS a\nRUN stage-a\nFROM scratch AS b\nRUN stage-b\nFROM scratch\nRUN last\n');
  // Each of the first two steps waits until the other has started; run one after the other, they would time out.
  let started = 0;
  let release!: () => void;
  const both = new Promise<void>((r) => { release = r; });
  t.exec.during = async (cmd) => {
    if (cmd === 'last') return;
    if (++started === 2) release();
    await Promise.race([both, new Promise((_r, reject) => setTimeout(() => reject(new Error(`${cmd} ran alone`)), 5000))]);
  };
  await build(t.opts());
  // The last stage (FROM scratch) is independent too: it may run beside them.
  assert.ok(t.exec.maxActive >= 2, `two stages were in the executor at once (at most ${t.exec.maxActive})`);
  assert.deepEqual([...t.exec.ran].sort(), ['last', 'stage-a', 'stage-b']);
});

test('--plan predicts from the cache and runs and writes nothing', async () => {
  const t = await setup('FROM scratch\nRUN one\nRUN two\n');
  await build(t.opts());
  await fs.writeFile(path.join(t.ctx, 'Dockerfile'), 'FROM scratch\nRUN one\nRUN changed\nRUN three\n');
  const before = await fs.readdir(t.layout.graph);
  t.events.length = 0;
  t.exec.ran.length = 0;
  await build(t.opts({ plan: true }));
  assert.deepEqual(t.exec.ran, [], 'a plan runs nothing');
  assert.deepEqual(await fs.readdir(t.layout.graph), before, 'a plan writes no image');
  const predictions = t.events.filter((e): e is Extract<BuildEvent, { type: 'predict' }> => e.type === 'predict');
  assert.deepEqual(predictions.map((p) => p.hit), [true, false, false]);
  assert.match(predictions[2]!.reason ?? '', /parent rebuilt \(step 3\)/);
});

test('the store lease: two builds of the same steps at once run each step once; the second takes it from the cache', async () => {
  const t = await setup('FROM scratch\nRUN slow\nRUN after\n');
  let releaseSlow!: () => void;
  const slowGate = new Promise<void>((r) => { releaseSlow = r; });
  t.exec.during = async (cmd) => { if (cmd === 'slow') await slowGate; };
  const a = build(t.opts());
  // The first build is inside `slow` before the second starts.
  while (!t.exec.ran.includes('slow')) await new Promise((r) => setTimeout(r, 10));
  const b = build(t.opts());
  while (!t.events.some((e) => e.type === 'lease-wait')) await new Promise((r) => setTimeout(r, 10));
  releaseSlow();
  const [ra, rb] = await Promise.all([a, b]);
  assert.equal(ra.id, rb.id);
  assert.deepEqual(t.exec.ran, ['slow', 'after'], 'each step ran once');
  // The second build waited for `slow` (and, depending on how the two interleave, for `after` too).
  assert.ok(t.events.filter((e) => e.type === 'lease-wait').length >= 1);
});
