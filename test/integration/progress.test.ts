/**
 * `build --progress=tty|plain|rawjson|auto`. The tty view is read from a real terminal (tmux,
 * capture-pane) while two stages run at once: each RUN waits for a gate (an HTTP path on a
 * loopback server the test opens, reached with `--network host`), so what the screen shows at
 * each capture is decided by the test, not by timing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { spawnSync, execFileSync } from 'node:child_process';
import { CLI, makeContext, slipway, storeWithBusybox } from '../support/cli.js';

const hasTmux = spawnSync('tmux', ['-V']).status === 0;
const skip = process.getuid?.() !== 0 ? 'needs root' : false;
let root = '';
const open = new Set<string>();
let server: http.Server;
let port = 0;

before(async () => {
  if (skip) return;
  root = await storeWithBusybox();
  server = http.createServer((req, res) => {
    res.statusCode = open.has(req.url ?? '') ? 200 : 404;
    res.end('gate\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server?.close();
  if (root) await fs.rm(root, { recursive: true, force: true });
});

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end && !cond()) await new Promise((r) => setTimeout(r, 100));
  return cond();
}

/** Two stages whose RUNs wait for the gates /NONCE-a and /NONCE-b, and a third that copies from both. */
function gatedDockerfile(nonce: string): string {
  const wait = (g: string) => `echo ${g}-started-${nonce}; until wget -q -O /dev/null http://127.0.0.1:${port}/${nonce}-${g} 2>/dev/null; do sleep 0.2; done; echo ${g}-released`;
  return [
    'FROM busybox AS a', `RUN ${wait('a')}`,
    'FROM busybox AS b', `RUN ${wait('b')}`,
    'FROM busybox', 'COPY --from=a /etc/passwd /a', 'COPY --from=b /etc/passwd /b', 'RUN echo final-step',
  ].join('\n');
}

test('tty: parallel stages side by side, redrawn in place, then a summary with per-step times', { skip: skip || (!hasTmux && 'needs tmux') }, async () => {
  const nonce = crypto.randomBytes(4).toString('hex');
  const ctx = await makeContext({ Dockerfile: gatedDockerfile(nonce) });
  const session = `slipway-progress-${process.pid}`;
  const tmux = (...a: string[]) => execFileSync('tmux', a, { encoding: 'utf8' });
  tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '40',
    `"${process.execPath}" "${CLI}" --root "${root}" build --progress=tty --network host -t gated "${ctx}"; echo "EXIT=$?"; sleep 120`);
  const screen = () => tmux('capture-pane', '-t', session, '-p');
  try {
    // Both RUNs are running at once: one row holds both, each column with its time, reason and output.
    const both = () => screen().split('\n').some((l) => /\[a 2\/2\] RUN .*\d+\.\ds .*│.*\[b 2\/2\] RUN .*\d+\.\ds/.test(l));
    assert.ok(await until(() => both() && screen().includes(`a-started-${nonce}`) && screen().includes(`b-started-${nonce}`), 60_000), screen());
    const s1 = screen();
    assert.match(s1, /miss: no earlier build of this step/);
    assert.equal(s1.match(/\[\+\] Building/g)?.length, 1, `one frame, redrawn in place:\n${s1}`);
    assert.match(s1, /^ => \[a 1\/2\] FROM busybox AS a +\d+\.\ds$/m);
    // The clock runs while the steps wait.
    const time = (s: string) => /\[\+\] Building (\d+\.\d)s/.exec(s)?.[1];
    assert.ok(await until(() => time(screen()) !== time(s1), 5000), screen());

    open.add(`/${nonce}-a`);
    // a is finished (one line with its time), b still runs and shows its output (its wait loop is
    // quiet, so its first line stays in the view however long it has run).
    assert.ok(await until(() => /^ => \[a 2\/2\] RUN .* \d+\.\ds$/m.test(screen()), 30_000), screen());
    assert.match(screen(), new RegExp(`\\[b 2/2\\] RUN[^\\n]*\\n(.*\\n)* > b-started-${nonce}`));
    assert.doesNotMatch(screen(), /^ => \[b 2\/2\]/m);

    open.add(`/${nonce}-b`);
    assert.ok(await until(() => screen().includes('EXIT=0'), 60_000), screen());
    const end = screen();
    assert.match(end, /\[\+\] Building \d+\.\ds \(8\/8 steps, 8 in the Dockerfile\) FINISHED/);
    for (const label of ['a 1/2', 'a 2/2', 'b 1/2', 'b 2/2', 'stage-2 1/4', 'stage-2 2/4', 'stage-2 3/4', 'stage-2 4/4']) {
      assert.match(end, new RegExp(`^ => \\[${label}\\] .* \\d+\\.\\ds$`, 'm'), `${label} in\n${end}`);
    }
    assert.match(end, /Successfully tagged gated:latest/);
    assert.match(end, /Cache: 0\/5 steps/);
  } finally {
    spawnSync('tmux', ['kill-session', '-t', session]);
    await fs.rm(ctx, { recursive: true, force: true });
  }
});

test('tty: the output of a RUN cannot move the cursor or clear the screen', { skip: skip || (!hasTmux && 'needs tmux') }, async () => {
  const nonce = crypto.randomBytes(4).toString('hex');
  const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN printf 'top-${nonce}\\n\\033[2J\\033[H\\033[31mafter-${nonce}\\n'; until wget -q -O /dev/null http://127.0.0.1:${port}/${nonce}; do sleep 0.2; done\n` });
  const session = `slipway-progress-esc-${process.pid}`;
  const tmux = (...a: string[]) => execFileSync('tmux', a, { encoding: 'utf8' });
  tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30',
    `echo marker-above-${nonce}; "${process.execPath}" "${CLI}" --root "${root}" build --progress=tty --network host "${ctx}"; echo "EXIT=$?"; sleep 120`);
  const screen = () => tmux('capture-pane', '-t', session, '-p');
  try {
    assert.ok(await until(() => screen().includes(`> after-${nonce}`), 60_000), screen());
    assert.match(screen(), new RegExp(`marker-above-${nonce}`), 'nothing was cleared');
    assert.match(screen(), new RegExp(`> top-${nonce}`));
    open.add(`/${nonce}`);
    assert.ok(await until(() => screen().includes('EXIT=0'), 60_000), screen());
  } finally {
    spawnSync('tmux', ['kill-session', '-t', session]);
    await fs.rm(ctx, { recursive: true, force: true });
  }
});

test('plain: BuildKit\'s form, with CACHED on the second build', { skip }, async () => {
  const nonce = crypto.randomBytes(4).toString('hex');
  const ctx = await makeContext({ Dockerfile: `FROM busybox AS a\nRUN echo one-${nonce}\nFROM busybox\nCOPY --from=a /etc/passwd /p\nRUN echo two-${nonce}\n` });
  try {
    const r = await slipway(root, ['build', '--progress=plain', '-t', `plain-${nonce}`, ctx]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '', 'plain writes to stderr, as BuildKit does');
    assert.match(r.stderr, /^#1 \[a 1\/2\] FROM busybox AS a$/m);
    assert.match(r.stderr, /^#2 \[a 2\/2\] RUN echo one-/m);
    assert.match(r.stderr, new RegExp(`^#2 \\d+\\.\\d{3} one-${nonce}$`, 'm'));
    assert.match(r.stderr, /^#2 DONE \d+\.\ds$/m);
    assert.match(r.stderr, /^#4 \[stage-1 2\/3\] COPY --from=a \/etc\/passwd \/p$/m);
    assert.match(r.stderr, new RegExp(`^#6 naming to plain-${nonce}:latest done$`, 'm'));
    const again = await slipway(root, ['build', '--progress=plain', '-t', `plain-${nonce}`, ctx]);
    assert.equal(again.code, 0, again.stderr);
    for (const n of [2, 4, 5]) assert.match(again.stderr, new RegExp(`^#${n} CACHED$`, 'm'));
    assert.doesNotMatch(again.stderr, /^#2 DONE/m);
    // A failing step: ERROR with Docker's message.
    await fs.writeFile(`${ctx}/Dockerfile`, 'FROM busybox\nRUN exit 3\n');
    const bad = await slipway(root, ['build', '--progress=plain', ctx]);
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /^#2 ERROR: The command '\/bin\/sh -c exit 3' returned a non-zero code: 3$/m);
  } finally {
    await fs.rm(ctx, { recursive: true, force: true });
  }
});

test('rawjson: one JSON event per line, from plan to end', { skip }, async () => {
  const nonce = crypto.randomBytes(4).toString('hex');
  const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN echo raw-${nonce}\n` });
  try {
    const r = await slipway(root, ['build', '--progress=rawjson', '-t', `raw-${nonce}`, ctx]);
    assert.equal(r.code, 0, r.stderr);
    const events = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(events.map((e) => e['type']), ['plan', 'step', 'done', 'step', 'miss', 'output', 'done', 'built', 'tagged', 'summary', 'end']);
    assert.deepEqual(events[0], { type: 'plan', stages: [{ index: 0, name: null, steps: 2 }], total: 2, time: events[0]!['time'] });
    assert.deepEqual({ ...events[3], time: 0 }, { type: 'step', step: 2, stage: 0, label: '[2/2]', text: `RUN echo raw-${nonce}`, time: 0 });
    assert.equal(events[4]!['reason'], 'no earlier build of this step');
    assert.equal(events[5]!['text'], `raw-${nonce}\n`);
    assert.match(String(events[6]!['image']), /^sha256:[0-9a-f]{64}$/);
    assert.equal(events[10]!['ok'], true);
    for (const e of events) assert.ok(!Number.isNaN(Date.parse(String(e['time']))));
    const again = await slipway(root, ['build', '--progress=rawjson', ctx]);
    assert.ok(again.stderr.split('\n').some((l) => l.startsWith('{"type":"cached","step":2,"source":"local"')), again.stderr);
  } finally {
    await fs.rm(ctx, { recursive: true, force: true });
  }
});

test('auto is legacy off a terminal; bad values and combinations are refused in one line', { skip }, async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\n' });
  try {
    const auto = await slipway(root, ['build', '--progress=auto', ctx]);
    assert.equal(auto.code, 0, auto.stderr);
    assert.match(auto.stdout, /^Step 1\/1 : FROM busybox\n ---> [0-9a-f]{12}\nSuccessfully built/);
    const env = await slipway(root, ['build', ctx], { env: { SLIPWAY_PROGRESS: 'plain' } });
    assert.match(env.stderr, /^#1 \[1\/1\] FROM busybox$/m);
    for (const [args, msg] of [
      [['--progress=fancy'], 'invalid --progress "fancy": auto, legacy, tty, plain or rawjson\n'],
      [['--progress=tty', '--plan'], '--plan prints its prediction in the legacy form only: leave out --progress or use --progress=legacy\n'],
      [['--progress=plain', '-q'], '--quiet and --progress cannot be used together\n'],
    ] as const) {
      const r = await slipway(root, ['build', ...args, ctx]);
      assert.equal(r.code === 0, false);
      assert.equal(r.stderr, msg);
    }
  } finally {
    await fs.rm(ctx, { recursive: true, force: true });
  }
});
