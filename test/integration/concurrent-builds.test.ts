/**
 * Separate `slipway build` processes on one store root: identical builds started at once run
 * each step once (the others wait on the store's lease for the step and take it from the cache)
 * and end with one image id; when the process building a step is killed with -9, a waiting build
 * takes the step over and finishes. Executions are counted by a server on another network
 * namespace that every RUN calls (test/support/count-host.ts), not from Slipway's output.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI, makeContext, slipway, storeWithBusybox } from '../support/cli.js';
import { countHostMissing, startCountHost, type CountHost } from '../support/count-host.js';

const skip = countHostMissing();
if (skip) console.log(`# skipping concurrent build tests: ${skip}`);

let host: CountHost | undefined;
before(async () => {
  if (!skip) host = await startCountHost();
});
after(async () => {
  await host?.stop();
});

/** A `slipway build` process, its output collected. */
function startBuild(root: string, args: string[]): { proc: ChildProcess; done: Promise<{ code: number | null; out: string }>; out: () => string } {
  const proc = spawn(process.execPath, [CLI, '--root', root, 'build', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<{ code: number | null; out: string }>((resolve) => proc.on('close', (code) => resolve({ code, out })));
  return { proc, done, out: () => out };
}

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stepCached(out: string): boolean[] {
  const steps: boolean[] = [];
  for (const line of out.split('\n')) {
    if (/^Step \d+\/\d+ : /.test(line)) steps.push(false);
    else if (line === ' ---> Using cache' && steps.length > 0) steps[steps.length - 1] = true;
  }
  return steps;
}

test('10 identical builds at once on one store: every RUN executes once, one image id', { skip }, async () => {
  const root = await storeWithBusybox();
  const tag = `c${process.pid}`;
  const ctx = await makeContext({
    Dockerfile: `FROM busybox
ARG COUNT
RUN wget -q -O /dev/null "$COUNT/hit/${tag}-one" && sleep 1 && echo one > /one
ENV STAGE=two
RUN wget -q -O /dev/null "$COUNT/hit/${tag}-two" && date +%s%N > /two
`,
  });
  const builds = Array.from({ length: 10 }, (_, i) => startBuild(root, ['-t', `same:${i}`, '--build-arg', `COUNT=${host!.url}`, ctx]));
  const results = await Promise.all(builds.map((b) => b.done));
  for (const r of results) assert.equal(r.code, 0, r.out);
  const counts = await host!.counts();
  assert.equal(counts[`${tag}-one`], 1, `first RUN executed ${counts[`${tag}-one`]} times`);
  assert.equal(counts[`${tag}-two`], 1, `second RUN executed ${counts[`${tag}-two`]} times`);
  const ids = new Set(results.map((r) => /Successfully built ([0-9a-f]{12})/.exec(r.out)?.[1]));
  assert.equal(ids.size, 1, `image ids: ${[...ids].join(' ')}`);
  // Each RUN (steps 3 and 5) was taken from the cache by nine of them (not always the same nine).
  for (const step of [2, 4]) assert.equal(results.filter((r) => stepCached(r.out)[step] === true).length, 9, `step ${step + 1}`);
  assert.deepEqual(await fs.readdir(path.join(root, 'locks', 'steps')), [], 'every lease released');
});

test('the build holding a step is killed with -9: a waiting build takes the step over and finishes', { skip }, async () => {
  const root = await storeWithBusybox();
  const name = `k${process.pid}`;
  // The first execution of the step is told to linger (the server answers "slow" once).
  const ctx = await makeContext({
    Dockerfile: `FROM busybox
ARG COUNT
RUN answer=$(wget -q -O - "$COUNT/hit/${name}"); if [ "$answer" = slow ]; then sleep 120; fi; echo "$answer" > /answer
`,
  });
  const args = ['--build-arg', `COUNT=${host!.url}`, ctx];
  const first = startBuild(root, ['-t', 'killed', ...args]);
  await until('the first build to reach its RUN', async () => (await host!.counts())[name] === 1);
  const second = startBuild(root, ['-t', 'survivor', ...args]);
  await until('the second build to wait for the step', () => /Waiting for process \d+/.test(second.out()));
  first.proc.kill('SIGKILL');
  const r = await second.done;
  assert.equal(r.code, 0, r.out);
  assert.equal((await host!.counts())[name], 2, 'the step ran again, in the surviving build');
  assert.match(r.out, / ---> Running in [0-9a-f]{12}\n/);
  const answer = await slipway(root, ['run', '--rm', 'survivor', 'cat', '/answer']);
  assert.equal(answer.stdout, 'fast\n', answer.stderr);
  assert.deepEqual(await fs.readdir(path.join(root, 'locks', 'steps')), [], 'the dead lease was removed, the new one released');
});
