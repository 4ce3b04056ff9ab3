import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runInSandbox, withMountedRootfs, type RunSpec } from '../../src/snapshot/sandbox.js';

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p));
const skip = process.getuid?.() !== 0 || BUSYBOX === undefined ? 'needs root and a static busybox' : false;
const SANDBOX_JS = fileURLToPath(new URL('../../src/snapshot/sandbox.js', import.meta.url));

let tmp = '';
let image = ''; // a busybox rootfs: the single lower dir
let n = 0;

before(() => {
  if (skip) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-sandbox-'));
  image = path.join(tmp, 'image');
  fs.mkdirSync(path.join(image, 'bin'), { recursive: true });
  fs.copyFileSync(BUSYBOX as string, path.join(image, 'bin/busybox'));
  fs.chmodSync(path.join(image, 'bin/busybox'), 0o755);
  const applets = spawnSync(BUSYBOX as string, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'busybox') fs.symlinkSync('busybox', path.join(image, 'bin', a));
  fs.mkdirSync(path.join(image, 'etc'));
  fs.chmodSync(path.join(image, 'etc'), 0o751); // the init layer must copy this, not invent 0755
  fs.mkdirSync(path.join(image, 'd'));
  fs.writeFileSync(path.join(image, 'd/f'), 'old');
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** A fresh upper + scratch pair for one run. */
function dirs(): { upperDir: string; scratchDir: string } {
  n += 1;
  const upperDir = path.join(tmp, `upper${n}`);
  const scratchDir = path.join(tmp, `scratch${n}`);
  fs.mkdirSync(upperDir);
  fs.mkdirSync(scratchDir);
  return { upperDir, scratchDir };
}

async function run(argv: string[], extra: Partial<RunSpec> = {}) {
  const d = dirs();
  let stdout = '';
  let stderr = '';
  const res = await runInSandbox({
    lowerDirs: [image], ...d, argv, env: ['PATH=/bin'], uid: 0, gid: 0, cwd: '/', network: 'host',
    onOutput: (b, s) => {
      if (s === 'stdout') stdout += b.toString();
      else stderr += b.toString();
    },
    ...extra,
  });
  return { ...res, stdout, stderr, ...d };
}

function listUpper(upper: string): string[] {
  return (fs.readdirSync(upper, { recursive: true }) as string[]).sort();
}

/** Every mount, in every process's namespace, that mentions `p`. */
function mountsMentioning(p: string): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      for (const line of fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n')) {
        if (line.includes(p)) found.push(`${pid}: ${line}`);
      }
    } catch {
      // process gone
    }
  }
  return found;
}

function pgrep(pattern: string): string {
  return spawnSync('pgrep', ['-af', pattern], { encoding: 'utf8' }).stdout.trim();
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

test('touch /x puts only x in upper', { skip }, async () => {
  const r = await run(['touch', '/x']);
  assert.equal(r.exitCode, 0);
  assert.deepEqual(listUpper(r.upperDir), ['x']);
  assert.deepEqual(fs.readdirSync(r.scratchDir).includes('work'), false, 'work dir removed');
});

test('output streams through onOutput', { skip }, async () => {
  const r = await run(['echo', 'hi']);
  assert.equal(r.stdout, 'hi\n');
  const e = await run(['sh', '-c', 'echo oops >&2']);
  assert.equal(e.stderr, 'oops\n');
});

test('exit status passes through; a signal reports 128+n', { skip }, async () => {
  assert.equal((await run(['sh', '-c', 'exit 3'])).exitCode, 3);
  // The command is pid 1 of its namespace, as in Docker: only a signal from outside kills it.
  const killer = setInterval(() => spawnSync('pkill', ['-KILL', '-f', 'sleep 4346']), 100);
  try {
    const k = await run(['sleep', '4346']);
    assert.deepEqual([k.exitCode, k.signal], [137, 'SIGKILL']);
  } finally {
    clearInterval(killer);
  }
});

test('a missing command exits 127 with a clear message', { skip }, async () => {
  const r = await run(['no-such-command']);
  assert.equal(r.exitCode, 127);
  assert.match(r.stderr, /"no-such-command": executable file not found in \$PATH/);
  const abs = await run(['/nope/cmd']);
  assert.equal(abs.exitCode, 127);
  assert.match(abs.stderr, /no such file or directory/);
});

test('the command inherits only stdin, stdout and stderr', { skip }, async () => {
  // From a background child: busybox runs a foreground `ls` inside the shell itself.
  const r = await run(['sh', '-c', 'ls /proc/$$/fd & wait']);
  assert.deepEqual(r.stdout.trim().split(/\s+/), ['0', '1', '2']);
});

test('env is exactly the given list and cwd is applied', { skip }, async () => {
  const e = await run(['env'], { env: ['PATH=/bin', 'FOO=bar baz'] });
  // HOME, when not given, comes from the image's passwd (none here: /), as runc and crun do.
  assert.deepEqual(e.stdout.trim().split('\n').sort(), ['FOO=bar baz', 'HOME=/', 'PATH=/bin']);
  const p = await run(['pwd'], { cwd: '/bin' });
  assert.equal(p.stdout, '/bin\n');
});

test('uid, gid and supplementary groups apply', { skip }, async () => {
  const r = await run(['sh', '-c', 'id -u; id -g; id -G'], { uid: 65534, gid: 65533, groups: [65533, 10] });
  assert.deepEqual(r.stdout.trim().split('\n'), ['65534', '65533', '65533 10']);
  const denied = await run(['touch', '/etc/nope'], { uid: 65534, gid: 65534 });
  assert.notEqual(denied.exitCode, 0, 'an unprivileged user cannot write to /etc');
});

test('a missing cwd is created (root, 0755) and lands in upper', { skip }, async () => {
  const r = await run(['pwd'], { cwd: '/work/deep' });
  assert.equal(r.stdout, '/work/deep\n');
  assert.deepEqual(listUpper(r.upperDir), ['work', 'work/deep']);
  const st = fs.statSync(path.join(r.upperDir, 'work/deep'));
  assert.equal(st.mode & 0o7777, 0o755);
  assert.equal(st.uid, 0);
});

test('deleting a file records a 0/0 whiteout', { skip }, async () => {
  const r = await run(['rm', '/bin/ls']);
  assert.equal(r.exitCode, 0);
  const st = fs.lstatSync(path.join(r.upperDir, 'bin/ls'));
  assert.ok(st.isCharacterDevice());
  assert.equal(st.rdev, 0);
});

test('replacing a directory makes it opaque', { skip }, async () => {
  const r = await run(['sh', '-c', 'rm -rf /d && mkdir /d && touch /d/new']);
  assert.equal(r.exitCode, 0);
  const x = spawnSync('getfattr', ['-n', 'trusted.overlay.opaque', '--only-values', path.join(r.upperDir, 'd')], { encoding: 'utf8' });
  assert.equal(x.stdout, 'y');
  assert.deepEqual(listUpper(r.upperDir), ['d', 'd/new']);
});

test('network none sees only lo', { skip }, async () => {
  const r = await run(['cat', '/proc/net/dev'], { network: 'none' });
  const ifaces = r.stdout.split('\n').slice(2).filter(Boolean).map((l) => l.split(':')[0]?.trim());
  assert.deepEqual(ifaces, ['lo']);
});

test('the sandbox leaves nothing of its own in upper', { skip }, async () => {
  const r = await run(['true']);
  assert.deepEqual(listUpper(r.upperDir), []);
  const h = await run(['sh', '-c', 'cat /etc/hostname /etc/hosts /etc/resolv.conf >/dev/null; ls /dev /proc >/dev/null; hostname'], {
    hostname: 'abcdef012345',
  });
  assert.equal(h.stdout, 'abcdef012345\n');
  assert.deepEqual(listUpper(h.upperDir), []);
  // A write in /etc copies up the image's /etc, with the image's mode, not the init layer's.
  const w = await run(['touch', '/etc/new']);
  assert.deepEqual(listUpper(w.upperDir), ['etc', 'etc/new']);
  assert.equal(fs.statSync(path.join(w.upperDir, 'etc')).mode & 0o7777, 0o751);
});

test('a minimal /dev, /etc/hosts and the hostname are there', { skip }, async () => {
  const r = await run(['sh', '-c', 'echo x >/dev/null && head -c 4 /dev/urandom | wc -c && ls /dev/pts && cat /etc/hosts'], {
    hostname: '0123456789ab',
  });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /^4\n/);
  assert.match(r.stdout, /127\.0\.0\.1\s+localhost 0123456789ab/);
});

test('its own pid namespace: only the sandbox processes are visible', { skip }, async () => {
  const r = await run(['sh', '-c', 'echo $$; ls /proc | grep -E "^[0-9]+$"']);
  const [self, ...pids] = r.stdout.trim().split('\n').map(Number);
  // pid 1 is the entry; the setup helpers (mount, mknod) used up a few dozen pids before us.
  assert.ok(self !== undefined && self < 100, `pid ${self}`);
  assert.equal(pids[0], 1);
  assert.ok(pids.length <= 4 && pids.every((p) => p < 100), `pids ${pids.join(',')}`);
  assert.ok(pids.includes(self), 'the shell sees itself');
});

test('volumes: the mount point lands in upper, what is written there does not', { skip }, async () => {
  const r = await run(['sh', '-c', 'echo data >/vol/a/file && cat /vol/a/file'], { volumes: ['/vol/a'] });
  assert.equal(r.stdout, 'data\n');
  assert.deepEqual(listUpper(r.upperDir), ['vol', 'vol/a']);
});

test('100 lower dirs (99 empty layers + busybox) mount', { skip }, async () => {
  const layers: string[] = [];
  for (let i = 0; i < 99; i++) {
    const l = path.join(tmp, 'many-layers-with-a-rather-long-folder-name', `layer-${String(i).padStart(3, '0')}-${'x'.repeat(30)}`);
    fs.mkdirSync(l, { recursive: true });
    layers.push(l);
  }
  assert.ok(layers.join(':').length > 4096, 'absolute paths alone would not fit in a page');
  const r = await run(['echo', 'ok'], { lowerDirs: [...layers, image] });
  assert.equal(r.stdout, 'ok\n');
});

test('FROM scratch (no lower dirs): the sandbox still sets up, the exec fails with 127', { skip }, async () => {
  const r = await run(['sh'], { lowerDirs: [] });
  assert.equal(r.exitCode, 127);
  assert.deepEqual(listUpper(r.upperDir), []);
});

test('setup failures reject with ERR_SANDBOX', { skip }, async () => {
  await assert.rejects(run(['true'], { cwd: '/bin/busybox/sub' }), { code: 'ERR_SANDBOX', message: /not a directory/ });
  const d = dirs();
  await assert.rejects(run(['true'], { upperDir: path.join(d.upperDir, 'missing') }), { code: 'ERR_SANDBOX' });
});

test('a timeout kills the whole namespace within a second', { skip }, async () => {
  const d = dirs();
  const t0 = Date.now();
  const r = await runInSandbox({ lowerDirs: [image], ...d, argv: ['sleep', '4343'], env: ['PATH=/bin'], uid: 0, gid: 0, cwd: '/', network: 'none', sandbox: { timeoutMs: 300 } });
  assert.deepEqual([r.exitCode, r.limits], [137, ['timeout']]);
  assert.ok(Date.now() - t0 < 1300, `took ${Date.now() - t0} ms`);
  assert.equal(pgrep('sleep 4343'), '');
  assert.deepEqual(mountsMentioning(d.scratchDir), []);
});

test('an abort kills the namespace and rejects with ERR_CANCELLED', { skip }, async () => {
  const d = dirs();
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  await assert.rejects(
    runInSandbox({ lowerDirs: [image], ...d, argv: ['sleep', '4344'], env: ['PATH=/bin'], uid: 0, gid: 0, cwd: '/', network: 'host', signal: ac.signal }),
    { code: 'ERR_CANCELLED' },
  );
  assert.equal(pgrep('sleep 4344'), '');
  assert.deepEqual(mountsMentioning(d.scratchDir), []);
});

test('kill -9 of the Node parent leaves no process and no mount', { skip }, async () => {
  const d = dirs();
  const script = path.join(tmp, 'parent.mjs');
  fs.writeFileSync(
    script,
    `import { runInSandbox } from ${JSON.stringify(SANDBOX_JS)};
     await runInSandbox({ lowerDirs: [${JSON.stringify(image)}], upperDir: ${JSON.stringify(d.upperDir)},
       scratchDir: ${JSON.stringify(d.scratchDir)}, argv: ['sh', '-c', 'echo ready; exec sleep 4345'],
       env: ['PATH=/bin'], uid: 0, gid: 0, cwd: '/', network: 'none',
       onOutput: (b) => process.stdout.write(b) });`,
  );
  const parent = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    parent.stdout.on('data', (b: Buffer) => b.toString().includes('ready') && resolve());
    parent.once('exit', () => reject(new Error('parent exited early')));
  });
  assert.ok(await until(() => pgrep('sleep 4345') !== '', 2000), 'sleep is running');
  assert.notDeepEqual(mountsMentioning(d.scratchDir), [], 'the overlay is mounted in the sandbox');
  parent.kill('SIGKILL');
  assert.ok(await until(() => pgrep('sleep 4345') === '', 3000), `still running: ${pgrep('sleep 4345')}`);
  assert.ok(await until(() => mountsMentioning(d.scratchDir).length === 0, 3000), mountsMentioning(d.scratchDir).join('\n'));
});

test('withMountedRootfs with fromLowerDirs: the source image is its merged view, read-only, in the same namespace; then nothing is mounted', { skip }, async () => {
  const d = dirs();
  // A top layer over busybox: a new file, and a whiteout that deletes /bin/vi.
  const top = fs.mkdtempSync(path.join(tmp, 'from-top-'));
  fs.mkdirSync(path.join(top, 'bin'));
  fs.writeFileSync(path.join(top, 'top.txt'), 'from the top layer');
  execFileSync('mknod', [path.join(top, 'bin', 'vi'), 'c', '0', '0']);
  const seen = await withMountedRootfs({ lowerDirs: [image], fromLowerDirs: [top, image], ...d }, async (merged, from) => {
    assert.ok(from !== undefined && from.startsWith(merged.slice(0, merged.indexOf('/root/') + 6)), `${from} is in the namespace of ${merged}`);
    let write = '';
    try { fs.writeFileSync(path.join(from, 'new.txt'), 'x'); } catch (e) { write = (e as NodeJS.ErrnoException).code ?? ''; }
    return { top: fs.readFileSync(path.join(from, 'top.txt'), 'utf8'), busybox: fs.existsSync(path.join(from, 'bin/busybox')), vi: fs.existsSync(path.join(from, 'bin/vi')), write };
  });
  assert.deepEqual(seen, { top: 'from the top layer', busybox: true, vi: false, write: 'EROFS' });
  assert.deepEqual(listUpper(d.upperDir), [], 'nothing reached the step\'s layer');
  assert.deepEqual(mountsMentioning(d.scratchDir), []);
  assert.deepEqual(mountsMentioning(top), []);
});

test('withMountedRootfs: this process writes through the held namespace into upper; then nothing is mounted or running', { skip }, async () => {
  const d = dirs();
  let held: number | undefined;
  const res = await withMountedRootfs({ lowerDirs: [image], ...d }, async (merged) => {
    held = Number(/^\/proc\/(\d+)\/root\//.exec(merged)?.[1]);
    assert.notDeepEqual(mountsMentioning(d.scratchDir), [], 'the overlay is mounted, in the shim\'s namespace only');
    fs.writeFileSync(path.join(merged, 'hello.txt'), 'copied');
    return fs.existsSync(path.join(merged, 'bin/busybox'));
  });
  assert.equal(res, true);
  assert.deepEqual(listUpper(d.upperDir), ['hello.txt']);
  assert.equal(fs.readFileSync(path.join(d.upperDir, 'hello.txt'), 'utf8'), 'copied');
  assert.deepEqual(mountsMentioning(d.scratchDir), []);
  assert.ok(held !== undefined && !fs.existsSync(`/proc/${held}`), 'the namespace holder is gone');
});

test('withMountedRootfs: what fn throws comes back as it is, and the namespace goes', { skip }, async () => {
  const d = dirs();
  await assert.rejects(withMountedRootfs({ lowerDirs: [], ...d }, async () => {
    throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
  }), { message: 'disk full', code: 'ENOSPC' });
  assert.deepEqual(mountsMentioning(d.scratchDir), []);
});
