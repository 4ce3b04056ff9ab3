import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { slipway, storeWithBusybox, makeContext } from '../support/cli.js';

/**
 * A step's layer is on disk before it is registered. Steps mount their overlays `volatile`, so
 * the container's end no longer syncs the filesystem; the layer is synced beside its pack
 * instead. Checked from outside the engine with cachestat(2): once the build has returned, no
 * page of a layer's files is dirty or under writeback (the kernel's own writeback would wait
 * 30 s). A control file written by the test itself shows that the check sees dirty pages.
 */

const CACHESTAT_C = `
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
struct range { unsigned long long off, len; };
struct stat5 { unsigned long long cache, dirty, writeback, evicted, recently_evicted; };
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    int fd = open(argv[i], O_RDONLY);
    struct range r = {0, 0};
    struct stat5 s;
    if (fd < 0) { perror(argv[i]); return 1; }
    if (syscall(451, fd, &r, &s, 0) != 0) { perror("cachestat"); return errno == ENOSYS ? 2 : 1; }
    printf("%s %llu %llu\\n", argv[i], s.dirty, s.writeback);
    close(fd);
  }
  return 0;
}
`;

/** Dirty plus writeback pages of each file, by cachestat(2) (Linux 6.5+). */
function unwritten(tool: string, files: string[]): Record<string, number> {
  const out = execFileSync(tool, files).toString().trim().split('\n');
  return Object.fromEntries(out.map((l) => { const [f, d, w] = l.split(' '); return [path.basename(f!), Number(d) + Number(w)]; }));
}

/** The control file's unwritten pages, or undefined when the kernel has no cachestat(2). */
function cachestatWorks(tool: string, control: string): number | undefined {
  try {
    return unwritten(tool, [control])['control.bin'];
  } catch (e) {
    if ((e as { status?: number }).status === 2) return undefined;
    throw e;
  }
}

/**
 * Runs `fn` with a store holding busybox and the cachestat tool, once a control file in the store
 * shows the tool sees dirty pages; skips the test (with the reason) when it cannot tell. Both are
 * removed after.
 */
async function withCachestat(t: { skip(why: string): void }, fn: (tool: string, root: string) => Promise<void>): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-durable-'));
  const root = await storeWithBusybox();
  try {
    const tool = path.join(tmp, 'cachestat');
    fs.writeFileSync(`${tool}.c`, CACHESTAT_C);
    execFileSync('cc', ['-O2', '-o', tool, `${tool}.c`]);
    const control = path.join(root, 'control.bin');
    fs.writeFileSync(control, crypto.randomBytes(4 << 20));
    const seen = cachestatWorks(tool, control);
    if (seen === undefined) t.skip('this kernel has no cachestat(2) (Linux 6.5+)');
    else if (seen === 0) t.skip('this machine writes dirty pages back at once: nothing to tell a synced layer from');
    else await fn(tool, root);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.rmSync(root, { recursive: true, force: true });
  }
}

test('a step\'s layer is written to disk before the build returns, whichever packer packed it', (t) => withCachestat(t, async (tool, root) => {
  // A layer of 202 entries (the native packer) and one of a single file (the JavaScript pack).
  // (RUN layers: without the sync, a COPY's file was already clean when the build returned,
  // written back by something later in the build, so it could not tell.)
  const ctx = await makeContext({
    'Dockerfile': 'FROM busybox\nRUN dd if=/dev/urandom of=/r.bin bs=1M count=8 2>/dev/null && for i in $(seq 200); do echo $i > /f$i; done\nRUN dd if=/dev/urandom of=/s.bin bs=1M count=2 2>/dev/null\n',
  });
  const r = await slipway(root, ['build', '-t', 'durable', ctx]);
  assert.equal(r.code, 0, r.stderr);
  const history = await slipway(root, ['history', '-q', '--no-trunc', 'durable']);
  const [smallId, bigId] = history.stdout.trim().split('\n').map((l) => l.replace(/^sha256:/, ''));
  const layer = (id: string | undefined) => path.join(root, 'graph', id!, 'layer');
  assert.ok(fs.existsSync(path.join(layer(bigId), 'r.bin')) && fs.existsSync(path.join(layer(smallId), 's.bin')), history.stdout);
  const files = [path.join(layer(bigId), 'r.bin'), path.join(layer(bigId), 'f200'), path.join(layer(smallId), 's.bin')];
  assert.deepEqual(unwritten(tool, files), { 'r.bin': 0, 'f200': 0, 's.bin': 0 });
}));

/**
 * While a long RUN runs, its worker syncs the layer's filesystem (every 100 ms, while 4 MiB or
 * more is dirty), so the data it wrote is on disk before the step ends. Seen from outside: while
 * the RUN waits (before it makes /done), the file it wrote first has no dirty page left in its
 * step's folder. Without the flush it stays dirty until the sync after the RUN, when /done is there
 * (checked: it fails so; another process's sync meanwhile could hide that).
 *
 * The RUN waits at a gate, a file of an earlier COPY layer that the test opens by writing it in
 * place (the container reads the lower file itself): as soon as the file is seen clean, or after
 * 20 s, well before the kernel's own writeback of a 30 s old page. A sync can take seconds on a busy
 * disk, so a fixed sleep made this fail where the machine was loaded (seen in CI with `sleep 3`).
 */
test('a long RUN\'s writes reach the disk while it runs, not only after it', (t) => withCachestat(t, async (tool, root) => {
  const ctx = await makeContext({
    'gate': 'shut\n',
    'Dockerfile': 'FROM busybox\nCOPY gate /gate\n'
      + 'RUN dd if=/dev/urandom of=/big.bin bs=1M count=16 2>/dev/null && i=0 && while [ "$(cat /gate)" = shut ] && [ $i -lt 250 ]; do sleep 0.1; i=$((i+1)); done; touch /done\n',
  });
  let settled = false;
  const build = slipway(root, ['build', '-t', 'flush', ctx]).finally(() => { settled = true; });
  const tmpDir = path.join(root, 'graph', '_tmp');
  const deadline = Date.now() + 20_000;
  let cleanWhileRunning = false;
  let seenWhole = false;
  while (!settled && !cleanWhileRunning && Date.now() < deadline) {
    for (const step of fs.existsSync(tmpDir) ? fs.readdirSync(tmpDir).filter((n) => n.includes('-step-')) : []) {
      const big = path.join(tmpDir, step, 'layer', 'big.bin');
      const st = fs.statSync(big, { throwIfNoEntry: false });
      if (st?.size !== 16 << 20 || fs.existsSync(path.join(tmpDir, step, 'layer', 'done'))) continue;
      seenWhole = true;
      try {
        if (unwritten(tool, [big])['big.bin'] === 0 && !fs.existsSync(path.join(tmpDir, step, 'layer', 'done'))) cleanWhileRunning = true;
      } catch {
        // the step's folder moved on meanwhile
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  openGate(root);
  const r = await build;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(seenWhole, 'the RUN\'s 16 MiB file was seen in its step folder while it waited');
  assert.ok(cleanWhileRunning, 'the file was on disk while the RUN still ran');
}));

/** Lets the RUN above go on: its gate, in the COPY layer under it, now says "open" (same inode). */
function openGate(root: string): void {
  const graph = path.join(root, 'graph');
  for (const id of fs.readdirSync(graph)) {
    const gate = path.join(graph, id, 'layer', 'gate');
    if (id !== '_tmp' && fs.existsSync(gate)) fs.writeFileSync(gate, 'open\n', { flag: 'r+' });
  }
}
