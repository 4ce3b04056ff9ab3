/**
 * `slipway run` as `docker run`: `-t` gives a real pty (seen through tmux), stdin reaches the
 * container only with `-i`, SIGTERM and SIGINT are forwarded so the container's trap fires,
 * and stdout and stderr keep their order.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { CLI, slipway, storeWithBusybox } from '../support/cli.js';

const hasTmux = spawnSync('tmux', ['-V']).status === 0;
const skip = process.getuid?.() !== 0 ? 'needs root' : false;
let root = '';

before(async () => {
  if (!skip) root = await storeWithBusybox();
});

after(async () => {
  if (root) await fs.rm(root, { recursive: true, force: true });
});

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end && !cond()) await new Promise((r) => setTimeout(r, 50));
  return cond();
}

test('-i -t: a real pty in a terminal (tmux), its exit status passes through', { skip: skip || (!hasTmux && 'needs tmux') }, async () => {
  const session = `slipway-run-${process.pid}`;
  const tmux = (...a: string[]) => execFileSync('tmux', a, { encoding: 'utf8' });
  tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '25',
    `"${process.execPath}" "${CLI}" --root "${root}" run -i -t busybox sh; echo "EXIT=$?"; sleep 60`);
  try {
    const screen = () => tmux('capture-pane', '-t', session, '-p');
    assert.ok(await until(() => screen().includes('/ #'), 10_000), screen());
    tmux('send-keys', '-t', session, 'tty; echo "term=$TERM"; stty size', 'Enter');
    assert.ok(await until(() => /term=xterm/.test(screen()), 5000), screen());
    tmux('resize-window', '-t', session, '-x', '80', '-y', '20');
    await new Promise((r) => setTimeout(r, 500));
    tmux('send-keys', '-t', session, 'echo "size=$(stty size)"', 'Enter');
    assert.ok(await until(() => /^size=20 80$/m.test(screen()), 5000), `a resize reaches the container:\n${screen()}`);
    tmux('send-keys', '-t', session, 'exit 7', 'Enter');
    assert.ok(await until(() => screen().includes('EXIT=7'), 5000), screen());
    const out = screen();
    assert.match(out, /^\/dev\/pts\/0$/m);
    assert.match(out, /^25 100$/m, 'the pty has the terminal\'s size');
  } finally {
    tmux('kill-session', '-t', session);
  }
});

test('stdin reaches the container only with -i', { skip }, async () => {
  const without = await slipway(root, ['run', 'busybox', 'sh', '-c', 'cat; echo "[eof]"'], { input: 'secret-input\n' });
  assert.equal(without.stdout, '[eof]\n');
  const withI = await slipway(root, ['run', '-i', 'busybox', 'sh', '-c', 'cat; echo "[eof]"'], { input: 'hello-in\n' });
  assert.equal(withI.stdout, 'hello-in\n[eof]\n');
});

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  test(`${sig} to slipway run reaches the container's trap`, { skip }, async () => {
    const child = spawn(process.execPath, [CLI, '--root', root, 'run', 'busybox', 'sh', '-c',
      `trap 'echo "caught ${sig}"; exit 3' ${sig.slice(3)}; echo ready; while :; do sleep 0.1; done`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    assert.ok(await until(() => out.includes('ready'), 10_000), out);
    child.kill(sig);
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 3);
    assert.match(out, new RegExp(`caught ${sig}`));
  });
}

test('stdout and stderr keep their order on one pipe', { skip }, async () => {
  const r = spawnSync(process.execPath, [CLI, '--root', root, 'run', 'busybox', 'sh', '-c', 'for i in 1 2 3; do echo out$i; echo err$i >&2; done'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'out1\nout2\nout3\n');
  assert.equal(r.stderr, 'err1\nerr2\nerr3\n');
  const merged = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" --root "${root}" run busybox sh -c 'for i in 1 2 3; do echo out$i; echo err$i >&2; done' 2>&1`], { encoding: 'utf8' });
  assert.equal(merged.stdout, 'out1\nerr1\nout2\nerr2\nout3\nerr3\n');
});
