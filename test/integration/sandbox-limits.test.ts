/**
 * Containment: a fork bomb, a memory hog and an endless loop each end with a message that names
 * the limit, the host stays responsive, nothing is left running or mounted, and the next build
 * succeeds. The step's host uid, read from the host's /proc while it runs, is never 0.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { makeContext, mountsMentioning, processesMentioning, slipway, storeWithBusybox } from '../support/cli.js';
import { buildIn, buildProbe, canBuildStatic } from '../support/probe.js';

const skip = process.getuid?.() !== 0 ? 'needs root' : !canBuildStatic() ? 'needs gcc -static (libc6-dev)' : false;

let root = '';
let ctx = '';

before(async () => {
  if (skip) return;
  root = await storeWithBusybox();
  ctx = await makeContext({});
  await buildProbe(ctx, 'hog', `
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
int main(void) {
  for (int i = 0; i < 4096; i++) { char *p = malloc(1 << 20); if (!p) return 2; memset(p, 1, 1 << 20); }
  puts("allocated 4 GiB"); return 0;
}`);
});

after(async () => {
  for (const d of [root, ctx]) if (d) await fs.rm(d, { recursive: true, force: true });
});

/** Nothing of the store's is mounted or running, and no step cgroup is left. */
async function assertClean(): Promise<void> {
  assert.deepEqual(await mountsMentioning(root), []);
  assert.deepEqual((await processesMentioning(root)).filter((p) => !p.includes('node')), []);
  // A step cgroup is named after its owner's pid: one whose owner has exited was left behind.
  const left = await fs.readdir('/sys/fs/cgroup/pids/slipway').catch(() => [] as string[]);
  const dead = left.filter((n) => /^\d+-/.test(n)).filter((n) => {
    try { process.kill(Number(n.split('-')[0]), 0); return false; } catch { return true; }
  });
  assert.deepEqual(dead, []);
}

async function nextBuildSucceeds(): Promise<void> {
  const r = await buildIn(root, ctx, 'FROM busybox\nRUN echo still-works > /ok\n');
  assert.equal(r.code, 0, r.out);
}

test('a fork bomb is held by the pids limit; the host stays responsive', { skip }, async () => {
  const building = buildIn(root, ctx, 'FROM busybox\nRUN bomb() { bomb | bomb & }; bomb; sleep 30\n', ['--pids-limit', '200', '--step-timeout', '10s']);
  // Once the step runs (its cgroup exists; a loaded machine may take a while to get there) and
  // the bomb has had a moment, the host still starts processes at once.
  const stepCgroups = async () => (await fs.readdir('/sys/fs/cgroup/pids/slipway').catch(() => [] as string[])).filter((n) => /^\d+-/.test(n));
  let counts: string[] = [];
  for (let i = 0; i < 300 && counts.length === 0; i++) {
    counts = await stepCgroups();
    if (counts.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(counts.length >= 1, 'the step has its pids cgroup');
  await new Promise((r) => setTimeout(r, 1500));
  const t0 = Date.now();
  const probe = spawnSync('sh', ['-c', 'for i in 1 2 3 4 5; do true; done; echo ok'], { encoding: 'utf8', timeout: 5000 });
  const latency = Date.now() - t0;
  assert.equal(probe.stdout.trim(), 'ok');
  assert.ok(latency < 2000, `the host took ${latency} ms to run 5 processes`);
  for (const n of counts) {
    const current = Number(await fs.readFile(path.join('/sys/fs/cgroup/pids/slipway', n, 'pids.current'), 'utf8').catch(() => '0'));
    assert.ok(current <= 200, `${current} processes in the step's cgroup`);
  }
  const r = await building;
  assert.notEqual(r.code, 0);
  assert.match(r.out, /limit of 200 processes \(--pids-limit\)/);
  await assertClean();
  await nextBuildSucceeds();
});

test('a memory hog is killed with a message naming the memory limit', { skip }, async () => {
  const r = await buildIn(root, ctx, 'FROM busybox\nCOPY hog /hog\nRUN /hog\n', ['--memory', '64m']);
  assert.notEqual(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /allocated 4 GiB/);
  assert.match(r.out, /returned a non-zero code: 137: killed: out of memory under the memory limit of 64MiB \(--memory\)/);
  await assertClean();
  await nextBuildSucceeds();
});

test('an endless loop ends at the step timeout', { skip, timeout: 120_000 }, async () => {
  const r = await buildIn(root, ctx, 'FROM busybox\nRUN while true; do :; done\n', ['--step-timeout', '2s']);
  assert.notEqual(r.code, 0);
  assert.match(r.out, /ran longer than the step timeout of 2s \(--step-timeout\)/);
  await assertClean();
  await nextBuildSucceeds();
});

test('root in a step is an unprivileged host uid; its files are uid 0 in the layer and in save output', { skip }, async () => {
  const marker = `3.${String(process.pid).padStart(7, '0')}`; // an argument no other process has
  const building = buildIn(root, ctx, `FROM busybox\nRUN touch /made-by-root && mkdir /made-dir && sleep ${marker}\n`, ['-t', 'owned']);
  let hostUid: number | undefined;
  for (let i = 0; i < 100 && hostUid === undefined; i++) {
    await new Promise((r) => setTimeout(r, 50));
    for (const p of await processesMentioning(marker)) {
      const status = await fs.readFile(`/proc/${p.split(':')[0]}/status`, 'utf8').catch(() => '');
      const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
      if (uid !== undefined) hostUid = Number(uid);
    }
  }
  const r = await building;
  assert.equal(r.code, 0, r.out);
  assert.notEqual(hostUid, undefined, 'the step was seen running');
  assert.notEqual(hostUid, 0, "root in the step is not the host's root");
  const tar = path.join(ctx, 'owned.tar');
  assert.equal((await slipway(root, ['save', '-o', tar, 'owned'])).code, 0);
  const listing = spawnSync('sh', ['-c', `mkdir -p "${ctx}/x" && tar -xf "${tar}" -C "${ctx}/x" && for l in "${ctx}"/x/*/layer.tar; do tar -tvf "$l" --numeric-owner; done`], { encoding: 'utf8' }).stdout;
  assert.match(listing, /^-\S+ 0\/0 .* made-by-root$/m, listing);
  assert.match(listing, /^d\S+ 0\/0 .* made-dir\/$/m, listing);
  await fs.rm(path.join(ctx, 'x'), { recursive: true, force: true });
  await fs.rm(tar, { force: true });
});

test('--userns=host opts out: the step runs as the host root', { skip }, async () => {
  const r = await buildIn(root, ctx, 'FROM busybox\nRUN cat /proc/self/uid_map\n', ['--userns', 'host']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^\s+0\s+0\s+4294967295$/m);
  const d = await buildIn(root, ctx, 'FROM busybox\nRUN cat /proc/self/uid_map\n');
  assert.doesNotMatch(d.out, /^\s+0\s+0\s+4294967295$/m);
});

test('bad limit values are refused before anything runs', { skip }, async () => {
  for (const [flags, msg] of [
    [['--memory', 'lots'], /invalid argument "lots" for "--memory" flag/],
    [['--memory', '1m'], /Minimum memory limit allowed is 6MB/],
    [['--memory-swap', '1g'], /always set the Memory limit/],
    [['--step-timeout', 'soon'], /invalid argument "soon" for "--step-timeout"/],
    [['--userns', 'maybe'], /invalid --userns "maybe"/],
  ] as const) {
    const r = await buildIn(root, ctx, 'FROM busybox\nRUN true\n', [...flags]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, msg);
    assert.doesNotMatch(r.out, /^\s+at /m);
  }
});

const hasRunc = spawnSync('sh', ['-c', 'command -v runc']).status === 0;
test('runc runs steps too: a user namespace, the image\'s owners, limits, no network', { skip: skip || (!hasRunc && 'needs runc') }, async () => {
  const r = await buildIn(root, ctx, 'FROM busybox\nRUN cat /proc/self/uid_map && touch /by-runc && (nc -w 2 10.0.2.2 1 </dev/null || echo no-""net)\n',
    ['--runtime', 'runc', '--memory', '64m', '--network', 'none', '-t', 'runc-made']);
  assert.equal(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /^\s+0\s+0\s+4294967295$/m);
  assert.match(r.out, /^no-net$/m);
  const hog = await buildIn(root, ctx, 'FROM busybox\nCOPY hog /hog\nRUN /hog\n', ['--runtime', 'runc', '--memory', '64m']);
  assert.match(hog.out, /memory limit of 64MiB \(--memory\)/);
  await assertClean();
});
