import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import util from 'node:util';
import { execFileSync } from 'node:child_process';
import { slipway, storeWithBusybox, makeContext, snapshotTree, mountsMentioning, processesMentioning } from '../support/cli.js';

const METADATA_DOCKERFILE = `FROM busybox
ENV APP_HOME=/srv/app GREETING="hello world"
LABEL maintainer="slipway" version=1
WORKDIR $APP_HOME
CMD ["sh", "-c", "echo $GREETING"]
EXPOSE 8080 53/udp
USER nobody
`;

function stepLines(out: string): Array<{ n: number; cached: boolean }> {
  const steps: Array<{ n: number; cached: boolean }> = [];
  for (const line of out.split('\n')) {
    const m = /^Step (\d+)\/(\d+) : /.exec(line);
    if (m) steps.push({ n: Number(m[1]), cached: false });
    else if (line === ' ---> Using cache' && steps.length) steps[steps.length - 1]!.cached = true;
  }
  return steps;
}

test('metadata-only build: a parent chain, then every step from the cache with the same id', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: METADATA_DOCKERFILE });
  const first = await slipway(root, ['build', '-t', 'meta:1', ctx]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^Step 1\/7 : FROM busybox\n ---> [0-9a-f]{12}\nStep 2\/7 : ENV APP_HOME=\/srv\/app GREETING="hello world"\n ---> Cache miss: no earlier build of this step\n ---> Running in [0-9a-f]{12}\nRemoving intermediate container [0-9a-f]{12}\n ---> [0-9a-f]{12}\n/);
  const id = /Successfully built ([0-9a-f]{12})/.exec(first.stdout)![1]!;
  assert.match(first.stdout, /Successfully tagged meta:1\nCache: 0\/6 steps \(0 %\), 0\.0 s saved\n$/);
  const second = await slipway(root, ['build', '-t', 'meta:1', ctx]);
  assert.equal(second.code, 0);
  assert.deepEqual(stepLines(second.stdout).map((s) => s.cached), [false, true, true, true, true, true, true]);
  assert.equal(/Successfully built ([0-9a-f]{12})/.exec(second.stdout)![1], id);

  // graph/<id>/json names the previous step's id as parent, down to busybox.
  const repos = JSON.parse(await fs.readFile(path.join(root, 'repositories'), 'utf8'));
  const busybox = repos.Repositories.busybox.latest as string;
  let cur = repos.Repositories.meta['1'] as string;
  assert.ok(cur.startsWith(id));
  const chain: string[] = [];
  while (cur !== busybox) {
    const json = JSON.parse(await fs.readFile(path.join(root, 'graph', cur, 'json'), 'utf8'));
    assert.equal(json.id, cur);
    assert.ok(json.parent, `${cur} has a parent`);
    assert.equal(await fs.readFile(path.join(root, 'graph', cur, 'layersize'), 'utf8'), String(json.Size));
    chain.push(cur);
    cur = json.parent;
  }
  assert.equal(chain.length, 6);
  const top = JSON.parse(await fs.readFile(path.join(root, 'graph', chain[0]!, 'json'), 'utf8'));
  assert.equal(top.config.User, 'nobody');
  assert.equal(top.config.WorkingDir, '/srv/app');
  assert.deepEqual(top.config.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'APP_HOME=/srv/app', 'GREETING=hello world']);
  assert.deepEqual(top.config.ExposedPorts, { '53/udp': {}, '8080/tcp': {} });
  assert.deepEqual(top.config.Labels, { maintainer: 'slipway', version: '1' });
  assert.deepEqual(top.container_config.Cmd, ['/bin/sh', '-c', '#(nop) ', 'USER nobody']);
});

test('images, tag, history, inspect and rmi behave as the seed shows', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN touch scooby_snacks.txt\n' });
  const b = await slipway(root, ['build', '-t', 'scooby_snacks', ctx]);
  assert.equal(b.code, 0, b.stderr);
  const id12 = /Successfully built ([0-9a-f]{12})/.exec(b.stdout)![1]!;
  assert.equal((await slipway(root, ['tag', 'scooby_snacks', 'thoward/scooby_snacks'])).code, 0);
  const images = await slipway(root, ['images']);
  const lines = images.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
  const rows = lines.slice(1).map((l) => l.split(/\s{3,}/));
  const scooby = rows.filter((r) => r[2] === id12);
  assert.deepEqual(scooby.map((r) => r[0]).sort(), ['scooby_snacks', 'thoward/scooby_snacks']);
  for (const r of scooby) assert.match(r[4]!, /^\d+(\.\d+)? (B|kB|MB) \(virtual 1\.98\d MB\)$/);
  assert.ok(rows.some((r) => r[0] === 'busybox' && r[1] === 'latest'));

  const hist = await slipway(root, ['history', 'thoward/scooby_snacks']);
  assert.match(hist.stdout, /^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT\n/);
  assert.match(hist.stdout, new RegExp(`^${id12}\\s+.*ago\\s+/bin/sh -c touch scooby_snacks.txt\\s+0 B`, 'm'));
  assert.match(hist.stdout, /Imported from -/);

  const insp = JSON.parse((await slipway(root, ['inspect', 'scooby_snacks'])).stdout);
  assert.equal(insp.length, 1);
  assert.ok(insp[0].Id.startsWith(`sha256:${id12}`));
  assert.deepEqual(insp[0].RepoTags, ['scooby_snacks:latest', 'thoward/scooby_snacks:latest']);
  assert.equal(insp[0].RootFS.Layers.length, 2);
  assert.equal(insp[0].RootFS.Layers[0], 'sha256:a216177828693b9634f2498386919beb30298fe565d06ad8c7216777cede5d7c');

  const rmi1 = await slipway(root, ['rmi', 'scooby_snacks']);
  assert.equal(rmi1.stdout, 'Untagged: scooby_snacks:latest\n');
  const rmi2 = await slipway(root, ['rmi', 'thoward/scooby_snacks']);
  assert.match(rmi2.stdout, new RegExp(`^Untagged: thoward/scooby_snacks:latest\nDeleted: sha256:${id12}[0-9a-f]{52}\n$`));
  const after = await slipway(root, ['images']);
  assert.doesNotMatch(after.stdout, /scooby/);
  const gone = await slipway(root, ['inspect', id12]);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /No such image/);
});

test('the seed: layer holds scooby_snacks.txt, its json names busybox as parent; save passes skopeo and loads back', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN touch scooby_snacks.txt\n' });
  assert.equal((await slipway(root, ['build', '-t', 'scooby_snacks', ctx])).code, 0);
  const repos = JSON.parse(await fs.readFile(path.join(root, 'repositories'), 'utf8'));
  const id = repos.Repositories.scooby_snacks.latest as string;
  const json = JSON.parse(await fs.readFile(path.join(root, 'graph', id, 'json'), 'utf8'));
  assert.equal(json.parent, repos.Repositories.busybox.latest);
  assert.deepEqual(await fs.readdir(path.join(root, 'graph', id, 'layer')), ['scooby_snacks.txt']);
  const out = path.join(ctx, 'saved.tar');
  assert.equal((await slipway(root, ['save', '-o', out, 'scooby_snacks'])).code, 0);
  let skopeo: string | undefined;
  try {
    skopeo = execFileSync('skopeo', ['inspect', `docker-archive:${out}`], { encoding: 'utf8' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (skopeo === undefined) {
    test.skip?.('skopeo is not installed');
  } else {
    const doc = JSON.parse(skopeo);
    assert.deepEqual(doc.Layers.length, 2);
    assert.equal(doc.Layers[0], 'sha256:a216177828693b9634f2498386919beb30298fe565d06ad8c7216777cede5d7c');
  }
  const root2 = await storeWithBusybox();
  const loaded = await slipway(root2, ['load', '-i', out]);
  assert.equal(loaded.code, 0, loaded.stderr);
  assert.equal(loaded.stdout, 'Loaded image: scooby_snacks:latest\n');
  const run = await slipway(root2, ['run', '--rm', 'scooby_snacks', 'ls', '/scooby_snacks.txt']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, '/scooby_snacks.txt\n');
});

test('a bad Dockerfile fails with its line and leaves the store byte-identical', async () => {
  const root = await storeWithBusybox();
  const good = await makeContext({ Dockerfile: 'FROM busybox\nENV A=1\n' });
  assert.equal((await slipway(root, ['build', '-t', 'ok', good])).code, 0);
  const before = await snapshotTree(root);
  const cases: Array<[string, RegExp]> = [
    ['FROM busybox\nENV B=2\nFROBNICATE now\n', /^Error: Dockerfile:3: unknown instruction: FROBNICATE$/m],
    ['FROM busybox\nENV B=2\nENV A=${B\n', /^Error: Dockerfile:3: failed to process/m],
    ['FROM busybox\nRUN touch /x\nFROM nosuchimage\n', /Dockerfile:3: pull access denied for nosuchimage/],
    ['FROM busybox AS a\nRUN touch /x\nFROM busybox\nCOPY --from=5 /x /x\n', /index out of bounds/],
    ['FROM busybox\nHEALTHCHECK --interval=1x CMD true\n', /Dockerfile:2: time: invalid duration "1x"/],
  ];
  for (const [text, want] of cases) {
    const ctx = await makeContext({ Dockerfile: text });
    const r = await slipway(root, ['build', '-t', 'bad', ctx]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, want);
    assert.deepEqual(await snapshotTree(root), before, `store unchanged after: ${text}`);
  }
});

test('a failing RUN: Docker\'s message and status, earlier steps stay cached, nothing left mounted or running', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo kept > /kept\nRUN echo about to fail && sleep 0.2 && exit 3\n' });
  const r = await slipway(root, ['build', '-t', 'fails', ctx]);
  assert.equal(r.code, 3);
  assert.match(r.stdout, /about to fail\n/);
  assert.match(r.stderr, /The command '\/bin\/sh -c echo about to fail && sleep 0.2 && exit 3' returned a non-zero code: 3/);
  assert.deepEqual(await mountsMentioning(root), []);
  assert.deepEqual(await processesMentioning(root), []);
  const again = await slipway(root, ['build', '-t', 'fails', ctx]);
  assert.equal(again.code, 3);
  assert.deepEqual(stepLines(again.stdout).map((s) => s.cached), [false, true, false]);
  assert.deepEqual(await fs.readdir(path.join(root, 'graph', '_tmp')), []);
});

test('a build killed with SIGKILL mid-RUN leaves no mount, no process, and _tmp is swept by the next build', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo started && sleep 30\n' });
  const { spawn } = await import('node:child_process');
  const { CLI } = await import('../support/cli.js');
  const child = spawn(process.execPath, [CLI, '--root', root, 'build', ctx], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('started')) resolve(); }));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  // The sandbox notices its parent is gone and takes its namespace down.
  for (let i = 0; i < 50 && (await processesMentioning('sleep 30')).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await processesMentioning('sleep 30'), []);
  assert.deepEqual(await mountsMentioning(root), []);
  const ok = await makeContext({ Dockerfile: 'FROM busybox\nENV X=1\n' });
  assert.equal((await slipway(root, ['build', ok])).code, 0);
  assert.deepEqual(await fs.readdir(path.join(root, 'graph', '_tmp')), []);
});

test('a build killed with SIGKILL mid-COPY leaves no mount, no process, and _tmp is swept by the next build', async () => {
  const root = await storeWithBusybox();
  // 240 MB in 240 files: the COPY takes long enough to be caught in the middle.
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nCOPY big/ /big/\n' });
  const mb = Buffer.alloc(1 << 20, 7);
  for (let i = 0; i < 240; i++) {
    await fs.mkdir(path.join(ctx, 'big', String(i % 8)), { recursive: true });
    await fs.writeFile(path.join(ctx, 'big', String(i % 8), `f${i}`), mb);
  }
  const { spawn } = await import('node:child_process');
  const { CLI } = await import('../support/cli.js');
  const child = spawn(process.execPath, [CLI, '--root', root, 'build', ctx], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  // The COPY is under way once the step's layer has files in it (the shim mounted it, the copy writes).
  // Each poll notes the processes first, so the kill follows the sighting with nothing in between.
  const copied = async () => (await fs.readdir(path.join(root, 'graph', '_tmp')).catch(() => [])).length > 0 &&
    (await mountsMentioning(root)).some((m) => m.includes('overlay'));
  const holdersNow = async () => {
    const holders = (await processesMentioning(root)).map((l) => Number(l.split(':')[0]));
    const kids = await Promise.all(holders.map((pid) => fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')));
    return [...holders, ...kids.join(' ').split(/\s+/).filter(Boolean).map(Number)];
  };
  let all: number[] = [];
  let seen = false;
  for (let i = 0; i < 600 && !seen; i++) {
    all = await holdersNow();
    seen = await copied();
    if (!seen) await new Promise((r) => setTimeout(r, 10));
  }
  child.kill('SIGKILL');
  const [code, signal] = await new Promise<[number | null, string | null]>((r) => child.once('close', (c, s) => r([c, s])));
  assert.deepEqual([code, signal], [null, 'SIGKILL'], `the build ended before the kill: ${out}`);
  assert.ok(seen, 'the COPY step was seen running');
  // Killed in the middle: the COPY step never finished (its output may not even be printed yet).
  const after = out.includes('Step 2/2') ? out.slice(out.indexOf('Step 2/2')) : '';
  assert.doesNotMatch(after, /---> [0-9a-f]{12}\n/, 'the COPY finished before the kill');
  assert.doesNotMatch(out, /Successfully built/);
  // A zombie waiting for init to reap it holds nothing: it counts as gone.
  const state = (pid: number) => fs.readFile(`/proc/${pid}/stat`, 'utf8').then((s) => s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3), () => 'gone');
  const alive = async () => (await Promise.all(all.map(async (pid) => [pid, await state(pid)] as const))).filter(([, st]) => st !== 'gone' && st !== 'Z');
  const leftovers = async () => ({ alive: await alive(), processes: await processesMentioning(root), mounts: await mountsMentioning(root) });
  const none = { alive: [], processes: [], mounts: [] };
  for (let i = 0; i < 50 && !util.isDeepStrictEqual(await leftovers(), none); i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await leftovers(), none, 'the shim, the process holding its namespace and its mounts are gone');
  const ok = await makeContext({ Dockerfile: 'FROM busybox\nENV X=1\n' });
  const next = await slipway(root, ['build', ok]);
  assert.equal(next.code, 0, next.stderr);
  assert.deepEqual(await fs.readdir(path.join(root, 'graph', '_tmp')), [], 'the next build sweeps _tmp');
});

test('a 100-step Dockerfile builds, and no layer holds the sandbox\'s own files', async () => {
  const root = await storeWithBusybox();
  const lines = ['FROM busybox'];
  for (let i = 0; i < 99; i++) lines.push(i % 3 === 0 ? `RUN echo ${i} > /f${i}` : i % 3 === 1 ? `ENV V${i}=${i}` : `RUN test "$V${i - 1}" = ${i - 1} && echo ok${i} >> /log`);
  const ctx = await makeContext({ Dockerfile: `${lines.join('\n')}\n` });
  const r = await slipway(root, ['build', '-t', 'hundred', ctx]);
  assert.equal(r.code, 0, r.stderr.slice(-2000));
  assert.match(r.stdout, /Step 100\/100 : /);
  const run = await slipway(root, ['run', 'hundred', 'sh', '-c', 'cat /f96 && wc -l < /log']);
  assert.equal(run.stdout, '96\n33\n');
  for (const id of await fs.readdir(path.join(root, 'graph'))) {
    if (id === '_tmp') continue;
    const layer = path.join(root, 'graph', id, 'layer');
    const json = JSON.parse(await fs.readFile(path.join(root, 'graph', id, 'json'), 'utf8'));
    if (json.comment === 'Imported from -') continue;
    for (const p of ['etc/hosts', 'etc/resolv.conf', 'etc/hostname', 'dev', 'proc', 'sys']) {
      await assert.rejects(fs.lstat(path.join(layer, p)), `layer ${id} has ${p}`);
    }
  }
});

test('run passes the exit status through and uses the image\'s Cmd', async () => {
  const root = await storeWithBusybox();
  assert.equal((await slipway(root, ['run', '--rm', 'busybox', 'sh', '-c', 'exit 7'])).code, 7);
  const echo = await slipway(root, ['run', '-e', 'X=from-e', 'busybox', 'sh', '-c', 'echo $X; pwd; id -u']);
  assert.equal(echo.stdout, 'from-e\n/\n0\n');
  const viaCmd = await slipway(root, ['run', '-i', 'busybox'], { input: 'echo from-stdin\n' });
  assert.equal(viaCmd.stdout, 'from-stdin\n');
});

test('unknown flags and missing arguments are errors, --help works on every verb', async () => {
  const root = await storeWithBusybox();
  const bad = await slipway(root, ['images', '--frobnicate']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /frobnicate/);
  for (const verb of ['build', 'images', 'tag', 'rmi', 'history', 'inspect', 'import', 'save', 'load', 'run']) {
    const h = await slipway(root, [verb, '--help']);
    assert.equal(h.code, 0, verb);
    assert.match(h.stdout, new RegExp(`^Usage:  slipway ${verb} `));
  }
  assert.notEqual((await slipway(root, ['tag', 'busybox'])).code, 0);
});

test('a RUN cannot mount or make device nodes (no CAP_SYS_ADMIN, no CAP_MKNOD), but root keeps chown', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN mkdir /m && if mount -t tmpfs none /m; then echo MOUNTED; fi; if mknod /sda b 8 0; then echo MKNOD; fi; chown 1:1 /m && echo chown-ok\n' });
  const r = await slipway(root, ['build', ctx]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /chown-ok/);
  assert.doesNotMatch(r.stdout, /^(MOUNTED|MKNOD)$/m);
  assert.match(r.stdout, /^mknod: \/sda: Operation not permitted$/m);
});
