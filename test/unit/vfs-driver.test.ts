import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runStep, type StepTask, type StepResult, type StorageDriver } from '../../src/snapshot/run-step.js';
import { detectStorageDriver } from '../../src/snapshot/storage-driver.js';
import type { CopyOp } from '../../src/snapshot/copy-in-root.js';
import { slipway, busyboxTar, makeContext, mountsMentioning } from '../support/cli.js';
import { normalizeImage } from '../support/normalize.js';

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p));
const skip = process.getuid?.() !== 0 || BUSYBOX === undefined ? 'needs root and a static busybox' : false;
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const DRIVER_JS = fileURLToPath(new URL('../../src/snapshot/storage-driver.js', import.meta.url));
const T0 = 1_600_000_000; // fixed mtimes in the image, so "kept the mtime" is checkable

let tmp = '';
let image = ''; // busybox plus fixtures: the bottom layer
let top = ''; // a layer in overlay form over `image`: whiteouts, opaque dir, type changes

function sh(cmd: string, cwd: string): void {
  const r = spawnSync('sh', ['-c', cmd], { cwd, encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd}: ${r.stderr}`);
}

before(() => {
  if (skip) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-vfs-'));
  image = path.join(tmp, 'image');
  fs.mkdirSync(path.join(image, 'bin'), { recursive: true });
  fs.copyFileSync(BUSYBOX as string, path.join(image, 'bin/busybox'));
  fs.chmodSync(path.join(image, 'bin/busybox'), 0o755);
  const applets = spawnSync(BUSYBOX as string, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'busybox') fs.symlinkSync('busybox', path.join(image, 'bin', a));
  sh(['mkdir -p etc d/sub o rep tmp', 'chmod 0751 etc', 'chmod 1777 tmp', 'echo old > d/f', 'echo x > d/sub/x',
    'echo a > a', 'ln -s a s', 'echo o > o/old', 'echo r > rep/child', 'echo f2 > f2',
    'echo linked > h1', 'ln h1 h2', 'echo suid > su', 'chown 7:8 su', 'chmod 4750 su',
    'echo own > owned', 'chown 1000:1000 owned', 'mknod nul c 1 3', 'mkfifo fifo',
    `find . -path ./bin -prune -o -exec touch -h -d @${T0} {} +`].join(' && '), image);
  top = path.join(tmp, 'top');
  fs.mkdirSync(top);
  sh(['mkdir -p d o f2', 'mknod d/f c 0 0', 'echo new > o/new', 'setfattr -n trusted.overlay.opaque -v y o',
    'echo now-a-file > rep', 'echo inside > f2/in', 'mkdir -m 2775 sg', 'chown 5:6 sg', 'chmod 2775 sg', 'ln -s /nowhere dangling',
    'echo t1 > t1', 'ln t1 t2', 'mknod tty c 5 0', `touch -d @${T0 + 5} d o f2 rep`, `touch -h -d @${T0} .`].join(' && '), top);
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** One layer entry: what packing would record, minus mtimes (those differ run to run). */
interface Entry { path: string; type: string; mode: string; uid: number; gid: number; size?: number; sha256?: string; link?: string; rdev?: string; opaque?: true; sameInodeAs?: string }

function describeLayer(dir: string): Entry[] {
  const x = spawnSync('getfattr', ['-R', '-h', '--absolute-names', '-n', 'trusted.overlay.opaque', '-e', 'text', dir], { encoding: 'utf8' }).stdout;
  const opaque = new Set(x.split('\n').filter((l) => l.startsWith('# file: ')).map((l) => path.relative(dir, l.slice(8))));
  const inodes = new Map<number, string>();
  const out: Entry[] = [];
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = path.join(dir, r);
      const st = fs.lstatSync(p);
      const e: Entry = { path: r, type: '?', mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid };
      if (st.isDirectory()) e.type = 'dir';
      else if (st.isCharacterDevice() && st.rdev === 0) e.type = 'whiteout';
      else if (st.isFile()) Object.assign(e, { type: 'file', size: st.size, sha256: crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex') });
      else if (st.isSymbolicLink()) Object.assign(e, { type: 'symlink', link: fs.readlinkSync(p) });
      else if (st.isCharacterDevice() || st.isBlockDevice()) Object.assign(e, { type: st.isCharacterDevice() ? 'char' : 'block', rdev: String(st.rdev) });
      else if (st.isFIFO()) e.type = 'fifo';
      if (opaque.has(r)) e.opaque = true;
      if (st.isFile() && st.nlink > 1) {
        const first = inodes.get(st.ino);
        if (first !== undefined) e.sameInodeAs = first;
        else inodes.set(st.ino, r);
      }
      out.push(e);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

type Ok = Extract<StepResult, { ok: true }>;
type TaskIn = StepTask extends infer T ? (T extends StepTask ? Omit<T, 'tmpRoot' | 'driver'> : never) : never;

async function step(driver: StorageDriver, task: TaskIn): Promise<Ok> {
  const res = await runStep({ ...task, tmpRoot: path.join(tmp, 'steps'), driver } as StepTask);
  assert.ok(res.ok, `${driver}: ${JSON.stringify(res)}`);
  return res;
}

function runTask(script: string, lowerDirs: string[], cwd = '/', volumes: string[] = []): TaskIn {
  return { type: 'run', lowerDirs, argv: ['sh', '-c', script], env: ['PATH=/bin'], uid: 0, gid: 0, groups: [], cwd, network: 'none', volumes, hostname: 'vfs-test' };
}

/** Runs the same RUN with both drivers; asserts equal layers and returns them. */
async function both(script: string, lowerDirs = [image], cwd = '/', volumes: string[] = []): Promise<{ entries: Entry[]; overlay: Ok; vfs: Ok }> {
  const overlay = await step('overlay', runTask(script, lowerDirs, cwd, volumes));
  const vfs = await step('vfs', runTask(script, lowerDirs, cwd, volumes));
  const entries = describeLayer(overlay.layerDir);
  assert.deepEqual(describeLayer(vfs.layerDir), entries, `layers differ for: ${script}`);
  assert.deepEqual([vfs.empty, vfs.size], [overlay.empty, overlay.size]);
  // Of the step, only the layer and its scratch folder are left (the step's taker removes the
  // step's folder, scratch and all, once the layer has moved out): the vfs rootfs copy is gone,
  // and nothing stays mounted.
  assert.deepEqual(fs.readdirSync(path.dirname(vfs.layerDir)).sort(), ['layer', 'scratch']);
  assert.deepEqual(await mountsMentioning(path.dirname(vfs.layerDir)), []);
  return { entries, overlay, vfs };
}

const paths = (entries: Entry[]): string[] => entries.map((e) => `${e.path}:${e.type}${e.opaque ? ':opaque' : ''}`);

test('create a file', { skip }, async () => {
  const { entries } = await both('echo hi > /d/new');
  assert.deepEqual(paths(entries), ['d:dir', 'd/new:file']);
});

test('modify content: the parent comes along as in a copy-up', { skip }, async () => {
  const { entries } = await both('echo more >> /d/sub/x');
  assert.deepEqual(paths(entries), ['d:dir', 'd/sub:dir', 'd/sub/x:file']);
});

test('chmod only and chown only: the entry is recorded, its mtime kept', { skip }, async () => {
  for (const cmd of ['chmod 600 /d/f', 'chown 65534:65534 /d/f', 'touch -d @1600000999 /d/f']) {
    const { entries, vfs } = await both(cmd);
    assert.deepEqual(paths(entries), ['d:dir', 'd/f:file'], cmd);
    const mtime = fs.statSync(path.join(vfs.layerDir, 'd/f')).mtimeMs / 1000;
    assert.equal(mtime, cmd.startsWith('touch') ? 1600000999 : T0, cmd);
    assert.equal(fs.statSync(path.join(vfs.layerDir, 'd')).mtimeMs / 1000, T0, 'the copied-up parent keeps its mtime');
  }
});

test('delete a file, delete a dir: whiteouts', { skip }, async () => {
  assert.deepEqual(paths((await both('rm /d/f')).entries), ['d:dir', 'd/f:whiteout']);
  assert.deepEqual(paths((await both('rm -rf /d')).entries), ['d:whiteout']);
});

test('delete and recreate a dir: opaque, nothing below is whited out', { skip }, async () => {
  const { entries } = await both('rm -rf /d && mkdir /d && echo n > /d/new');
  assert.deepEqual(paths(entries), ['d:dir:opaque', 'd/new:file']);
  // A file turned into a directory is opaque too; a directory turned into a file is plain.
  assert.deepEqual(paths((await both('rm /a && mkdir /a && touch /a/x; rm -rf /o && echo > /o')).entries), ['a:dir:opaque', 'a/x:file', 'o:file']);
});

test('symlinks: create and replace', { skip }, async () => {
  const { entries } = await both('ln -s /d/f /newlink && ln -sfn /bin /s');
  assert.deepEqual(entries.filter((e) => e.type === 'symlink').map((e) => `${e.path}->${e.link}`), ['newlink->/d/f', 's->/bin']);
});

test('hard links: to a lower file (copied up) and between new files', { skip }, async () => {
  const { entries } = await both('ln /d/f /d/h && echo n > /n1 && ln /n1 /n2');
  assert.deepEqual(paths(entries), ['d:dir', 'd/f:file', 'd/h:file', 'n1:file', 'n2:file']);
  assert.deepEqual(entries.filter((e) => e.sameInodeAs).map((e) => `${e.path}=${e.sameInodeAs}`), ['d/h=d/f', 'n2=n1']);
});

test('hard-linked lower files: unlinking or linking one does not record its siblings', { skip }, async () => {
  // vfs shares their inode in the rootfs, so all of them see the new link count and ctime.
  assert.deepEqual(paths((await both('rm /h1')).entries), ['h1:whiteout']);
  const { entries } = await both('ln /h1 /h3');
  assert.deepEqual(entries.map((e) => `${e.path}${e.sameInodeAs ? `=${e.sameInodeAs}` : ''}`), ['h1', 'h3=h1']);
});

// Device nodes cannot be made in a step (no CAP_MKNOD: without a device cgroup a node could
// reach the host's disks); layers still carry them from imported and pulled images.
test('fifo, setuid and sticky survive', { skip }, async () => {
  const { entries } = await both('mkfifo /d/p && chmod 4711 /d/f && mkdir -m 1777 /st');
  assert.deepEqual(entries.map((e) => `${e.path}:${e.type}:${e.mode}`), ['d:dir:755', 'd/f:file:4711', 'd/p:fifo:644', 'st:dir:1777']);
});

test('a RUN that changes nothing gives an empty layer; mount points stay out', { skip }, async () => {
  const r = await both('cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && ls /dev /proc /sys >/dev/null && echo x > /dev/null');
  assert.deepEqual(r.entries, []);
  assert.equal(r.vfs.empty, true);
  // A write in /etc brings /etc (the image's mode), never the mount points.
  const w = await both('touch /etc/new');
  assert.deepEqual(paths(w.entries), ['etc:dir', 'etc/new:file']);
  assert.equal(w.entries[0]?.mode, '751');
  // A missing cwd is created in both; a VOLUME's mount point lands in the layer, its content does not.
  assert.deepEqual(paths((await both('true', [image], '/work/deep')).entries), ['work:dir', 'work/deep:dir']);
  assert.deepEqual(paths((await both('echo x > /vol/a/f && echo y > /d/sub/y', [image], '/', ['/vol/a'])).entries),
    ['d:dir', 'd/sub:dir', 'd/sub/y:file', 'vol:dir', 'vol/a:dir']);
});

test('assembly applies whiteouts, opaque dirs and type changes like overlay', { skip }, async () => {
  // Directory sizes depend on the history of the directory file, so they are left out.
  const list = 'cd / && find . -path ./proc -prune -o -path ./dev -prune -o -path ./sys -prune -o -print'
    + ' | grep -v -e "^\\.$" -e "^./etc/h" -e "^./etc/resolv" -e "^./listing" | sort | while read -r p; do'
    + ' if [ -d "$p" ] && [ ! -L "$p" ]; then stat -c "%n %F %a %u:%g %Y" "$p"; else stat -c "%n %F %a %u:%g %s %Y %t:%T %N" "$p"; fi; done';
  const o = spawnLines(await step('overlay', runTask(`${list} > /listing`, [top, image])));
  const v = spawnLines(await step('vfs', runTask(`${list} > /listing`, [top, image])));
  assert.deepEqual(v, o);
  const text = o.join('\n');
  assert.doesNotMatch(text, /\.\/d\/f |\.\/o\/old |\.\/rep\/child /, 'whited out, hidden by opaque, replaced');
  assert.match(text, /\.\/o\/new regular file/);
  assert.match(text, /\.\/sg directory 2775 5:6/);
  assert.match(text, /\.\/su regular file 4750 7:8/);
  assert.match(text, /\.\/tmp directory 1777/);
  // And a step over the two layers gives the same layer with both drivers.
  await both('rm /o/new /t1 && echo x >> /f2/in && rm -rf /rep && mkdir /rep', [top, image]);
});

function spawnLines(res: Ok): string[] {
  return fs.readFileSync(path.join(res.layerDir, 'listing'), 'utf8').trim().split('\n');
}

test('COPY, ADD-style MKDIR and an empty rootfs through runStep', { skip }, async () => {
  const ctx = path.join(tmp, 'ctx');
  fs.mkdirSync(ctx, { recursive: true });
  sh('mkdir -p dir && echo one > one && echo two > dir/two && chmod 640 one && ln -s one l', ctx);
  const op: CopyOp = {
    kind: 'COPY', sources: [{ abs: path.join(ctx, 'one'), rel: 'one' }, { abs: path.join(ctx, 'dir'), rel: 'dir' }, { abs: path.join(ctx, 'l'), rel: 'l' }],
    dest: '/d/app/', uid: 1000, gid: 1000, chownGiven: true, chmod: undefined, keepSpecialBits: true,
  };
  const layers: Entry[][] = [];
  for (const driver of ['overlay', 'vfs'] as const) layers.push(describeLayer((await step(driver, { type: 'copy', lowerDirs: [top, image], op })).layerDir));
  assert.deepEqual(layers[1], layers[0]);
  assert.ok((layers[0] ?? []).some((e) => e.path === 'd/app/one' && e.uid === 1000));
  const mk: CopyOp = { kind: 'MKDIR', sources: [], dest: '/m/n', uid: 0, gid: 0, chownGiven: false, chmod: undefined, keepSpecialBits: false };
  for (const lowerDirs of [[image], []]) {
    const o = describeLayer((await step('overlay', { type: 'copy', lowerDirs, op: mk })).layerDir);
    assert.deepEqual(describeLayer((await step('vfs', { type: 'copy', lowerDirs, op: mk })).layerDir), o);
  }
});

test('detectStorageDriver: overlay where it mounts, once per process', { skip }, async () => {
  const p = detectStorageDriver(tmp);
  assert.equal(p, detectStorageDriver(tmp));
  assert.deepEqual(await p, { driver: 'overlay' });
  assert.deepEqual(fs.readdirSync(tmp).filter((n) => n.includes('overlay-probe')), []);
});

test('detectStorageDriver: vfs with a reason where the folder is on overlayfs', { skip }, () => {
  // overlayfs refuses to be an upper dir: mount one in a private namespace and probe inside it.
  const d = fs.mkdtempSync(path.join(tmp, 'ovl-'));
  const script = `import { detectStorageDriver } from ${JSON.stringify(DRIVER_JS)};
    process.stdout.write(JSON.stringify(await detectStorageDriver(process.argv[1])));`;
  const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c',
    'mkdir l u w m && mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w m && mkdir m/store && exec "$0" --input-type=module -e "$1" m/store',
    process.execPath, script], { cwd: d, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const choice = JSON.parse(r.stdout) as { driver: string; reason?: string };
  assert.equal(choice.driver, 'vfs');
  assert.match(choice.reason ?? '', /mount/);
});

test('slipway build --storage-driver vfs gives the default driver\'s image', { skip }, async () => {
  const base = process.env['BASE_TAR'] ?? (await busyboxTar());
  const ctx = await makeContext({
    Dockerfile: 'FROM busybox:latest\nRUN mkdir /app && echo hi > /app/a && rm /bin/ls && chmod 4755 /app/a\nCOPY f.txt dir /app/\n'
      + 'WORKDIR /w\nRUN rm -rf /app && mkdir /app && echo new > /app/b && ln -s /app/b /lnk && mkfifo /p && touch /etc/x\n'
      + 'ENV A=1\nRUN true\nUSER nobody\nCMD ["sh"]\n',
    'f.txt': 'hello\n',
    'dir/x': 'x\n',
  });
  const images = [];
  for (const args of [[], ['--storage-driver', 'vfs']]) {
    const root = fs.mkdtempSync(path.join(tmp, 'store-'));
    const env = { SLIPWAY_STORAGE_DRIVER: undefined };
    assert.equal((await slipway(root, ['import', '--change', 'CMD ["sh"]', base, 'busybox:latest'], { env })).code, 0);
    const b = await slipway(root, ['build', ...args, '-t', 'img', ctx], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.doesNotMatch(b.stderr, /WARNING/);
    const out = path.join(root, 'img.tar');
    assert.equal((await slipway(root, ['save', '-o', out, 'img'], { env })).code, 0);
    images.push(await normalizeImage(out, 1));
  }
  fs.rmSync(ctx, { recursive: true, force: true });
  assert.deepEqual(images[1], images[0]);
  assert.equal(images[0]?.layers.length, 4); // RUN true adds an empty layer, which save leaves out
});

test('slipway build falls back to vfs with one warning where overlay cannot mount', { skip }, async () => {
  const base = process.env['BASE_TAR'] ?? (await busyboxTar());
  // No deletions: a 0/0 whiteout device cannot be created on overlayfs (see the report's limits).
  const ctx = await makeContext({ Dockerfile: 'FROM busybox:latest\nRUN echo hi > /hi\nCOPY f.txt /\nRUN cat /hi /f.txt\n', 'f.txt': 'f\n' });
  const d = fs.mkdtempSync(path.join(tmp, 'ovl-'));
  const cli = `"${process.execPath}" "${CLI}" --root m/store`;
  const env = { ...process.env };
  delete env['SLIPWAY_STORAGE_DRIVER'];
  const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c',
    `mkdir l u w m && mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w m && ${cli} import "${base}" busybox:latest >/dev/null`
    + ` && ${cli} build -t x "${ctx}"`],
  { cwd: d, encoding: 'utf8', env });
  fs.rmSync(ctx, { recursive: true, force: true });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  assert.equal(r.stderr.match(/WARNING: overlayfs cannot be mounted here \(.*\); using --storage-driver vfs\n/g)?.length, 1, r.stderr);
  assert.match(r.stdout, /\nhi\nf\n/);
  assert.match(r.stdout, /Successfully tagged x:latest/);
});
