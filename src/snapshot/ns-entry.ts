/**
 * The program that runs inside a sandbox's namespaces. `sandbox.ts` starts it under
 * `unshare --mount --pid --fork --kill-child …`, so it is pid 1 of a fresh pid namespace and
 * the only user of a private mount namespace. It connects back to the host over a Unix socket
 * in the scratch dir (CLOEXEC, so the command never inherits it), reads one JSON request
 * (never argv or env: the env may hold secrets), mounts the overlay rootfs, then either runs a
 * RUN command chrooted into it or runs a COPY/ADD script module against it, and answers with
 * one JSON line. If the host goes away, even by kill -9, the socket closes and this process
 * exits: the kernel then kills the whole pid namespace and drops the mount namespace, so
 * nothing stays mounted or running.
 */
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { constants as osConstants } from 'node:os';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { resolveInRoot } from './resolve-in-root.js';

/** The overlay parts of a request; every path is absolute. */
export interface NsRootfs {
  lowerDirs: string[];
  upperDir: string;
  scratchDir: string;
  /**
   * vfs driver: an assembled rootfs, bind-mounted as the merged dir instead of an overlay
   * (lowerDirs and upperDir are then unused). For RUN its mount points must exist already.
   */
  rootDir?: string;
}

/** Run a command chrooted into the rootfs (RUN, `slipway run`). */
export interface NsRunRequest {
  mode: 'run';
  rootfs: NsRootfs;
  argv: string[];
  env: string[];
  uid: number;
  gid: number;
  groups: number[];
  cwd: string;
  hostname: string;
  network: 'host' | 'none';
  volumes: string[];
}

/** Run `default(mergedDir, args)` of a compiled ESM module with the rootfs mounted (COPY/ADD). */
export interface NsScriptRequest {
  mode: 'script';
  rootfs: NsRootfs;
  scriptModule: string;
  args: unknown;
}

export type NsRequest = NsRunRequest | NsScriptRequest;

/** An error as plain data: class and prototype do not survive a process boundary. */
export interface NsErrorData {
  message: string;
  code?: string;
  line?: number;
  file?: string;
  exitCode?: number;
}

/** The one line the entry answers with. */
export type NsReply =
  | { type: 'exit'; exitCode: number; signal: string | null }
  | { type: 'result'; value?: unknown }
  | { type: 'error'; error: NsErrorData };

/** Env var that tells the entry its scratch dir (not secret; the request comes over the socket). */
export const NS_DIR_ENV = 'SLIPWAY_NS_DIR';

/** Every path this sandbox uses inside the caller's scratch dir, spelled once. */
export function scratchLayout(scratchDir: string) {
  return {
    socketName: 'c.sock',
    socket: path.join(scratchDir, 'c.sock'),
    links: path.join(scratchDir, 'l'), // short names for the overlay option string
    work: path.join(scratchDir, 'work'),
    merged: path.join(scratchDir, 'merged'),
    init: path.join(scratchDir, 'init'),
    empty: path.join(scratchDir, 'empty'),
    files: path.join(scratchDir, 'files'),
    volumes: path.join(scratchDir, 'vol'),
  };
}
type Layout = ReturnType<typeof scratchLayout>;

class SetupError extends Error {
  readonly code = 'ERR_SANDBOX';
}

/** Runs a setup step; whatever it throws is a sandbox fault (ERR_SANDBOX), not the user's. */
async function setup<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof SetupError) throw e;
    throw new SetupError(`sandbox setup failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Files in /etc the RUN sandbox bind-mounts over (mount points, never part of a layer). */
export const HOST_FILES = ['hosts', 'hostname', 'resolv.conf'] as const;
/** Top-level directories the RUN sandbox mounts on or into. */
export const INIT_DIRS = ['etc', 'proc', 'dev', 'sys'] as const;

// Mounts that make the merged tree a usable root. Runs once in a shell (one spawn instead of
// fifteen); paths arrive as positional parameters, never spliced into the script.
const SETUP_SCRIPT = `set -e
m=$1 files=$2 net=$3
mount -t proc -o nosuid,nodev,noexec proc "$m/proc"
mount -t tmpfs -o nosuid,mode=0755,size=65536k tmpfs "$m/dev"
cd "$m/dev"
mknod -m 0666 null c 1 3; mknod -m 0666 zero c 1 5; mknod -m 0666 full c 1 7
mknod -m 0666 random c 1 8; mknod -m 0666 urandom c 1 9; mknod -m 0666 tty c 5 0
mkdir -m 0755 pts; mkdir -m 1777 shm
ln -s /proc/self/fd fd; ln -s /proc/self/fd/0 stdin; ln -s /proc/self/fd/1 stdout
ln -s /proc/self/fd/2 stderr; ln -s pts/ptmx ptmx
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts pts
mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=65536k shm shm
cd /
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$m/sys" 2>/dev/null || true
for f in hosts hostname resolv.conf; do mount --bind -o ro "$files/$f" "$m/etc/$f"; done
if [ "$net" = none ]; then ip link set lo up 2>/dev/null || true; fi
`;

function runTool(cmd: string, args: string[], cwd?: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) throw new SetupError(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new SetupError(`${cmd} ${args[0] ?? ''} failed: ${(r.stderr || r.stdout).trim()}`);
}

/** What a step's processes may keep (the bounding set): Docker's defaults without mknod. */
const STEP_CAPABILITIES = ['chown', 'dac_override', 'fowner', 'fsetid', 'kill', 'setgid', 'setuid', 'setpcap', 'net_bind_service', 'net_raw', 'sys_chroot', 'audit_write', 'setfcap'];

function hostBinary(name: string): string {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir || '.', name);
    if (fs.existsSync(p)) return p;
  }
  throw new SetupError(`${name} not found on the host`);
}

function isWhiteout(st: fs.Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/** The image's own top-level directory `name`, looking top-down through the layers. */
function imageDir(lowerDirs: string[], name: string): fs.Stats | undefined {
  for (const dir of lowerDirs) {
    const st = fs.lstatSync(path.join(dir, name), { throwIfNoEntry: false });
    if (st === undefined) continue;
    return st.isDirectory() && !isWhiteout(st) ? st : undefined; // a whiteout or a file hides it
  }
  return undefined;
}

function copyAttrs(target: string, st: fs.Stats | undefined, withTimes: boolean): void {
  fs.chmodSync(target, st ? st.mode & 0o7777 : 0o755);
  fs.chownSync(target, st?.uid ?? 0, st?.gid ?? 0);
  if (st && withTimes) fs.utimesSync(target, st.atimeMs / 1000, st.mtimeMs / 1000);
}

/**
 * The init layer holds the mount points the sandbox needs, as the top-most lower dir, so they
 * are never copied up into the step's layer. Its dirs copy the image's attributes, so a copy-up
 * of `/etc` (when the command writes there) records the image's mode/owner, not ours.
 */
function buildInitLayer(init: string, lowerDirs: string[]): void {
  fs.rmSync(init, { recursive: true, force: true });
  fs.mkdirSync(init);
  for (const d of INIT_DIRS) fs.mkdirSync(path.join(init, d));
  for (const f of HOST_FILES) fs.writeFileSync(path.join(init, 'etc', f), '', { mode: 0o644 });
  // Attributes last: creating the files above bumped the mtime of etc.
  for (const d of INIT_DIRS) copyAttrs(path.join(init, d), imageDir(lowerDirs, d), true);
}

function mountOverlay(layout: Layout, lowers: string[], upperDir: string): void {
  fs.rmSync(layout.links, { recursive: true, force: true });
  for (const d of [layout.links, layout.work, layout.merged]) fs.mkdirSync(d, { recursive: true });
  // The kernel caps mount options at one page: relative one-number names keep 500 layers short.
  lowers.forEach((dir, i) => fs.symlinkSync(dir, path.join(layout.links, String(i))));
  fs.symlinkSync(upperDir, path.join(layout.links, 'u'));
  const base = `lowerdir=${lowers.map((_, i) => i).join(':')},upperdir=u,workdir=../work`;
  // index/redirect_dir/metacopy would make the upper dir depend on the lower dirs; a layer
  // must stand alone. Older kernels reject unknown options, so fall back to the defaults.
  const attempts = [`${base},index=off,redirect_dir=off,metacopy=off`, `${base},index=off`, base];
  let lastError: unknown;
  for (const opts of attempts) {
    try {
      runTool('mount', ['-t', 'overlay', 'overlay', '-o', opts, layout.merged], layout.links);
      return;
    } catch (e) {
      lastError = e;
    }
  }
  throw lastError;
}

/** Mounts the overlay (plus, for RUN, the init layer); gives the merged root the image's mode. */
function prepareRootfs(layout: Layout, rootfs: NsRootfs, withInit: boolean): void {
  if (rootfs.rootDir !== undefined) {
    // vfs: the caller assembled the rootfs and made the mount points before taking its
    // snapshot (vfs.ts), so the init-layer files are part of the baseline, never of the diff.
    fs.mkdirSync(layout.merged, { recursive: true });
    runTool('mount', ['--bind', rootfs.rootDir, layout.merged]);
    return;
  }
  const lowers = [...rootfs.lowerDirs];
  const rootStat = lowers[0] === undefined ? undefined : fs.statSync(lowers[0]);
  if (withInit) {
    buildInitLayer(layout.init, lowers);
    lowers.unshift(layout.init);
  }
  if (lowers.length === 0) {
    fs.mkdirSync(layout.empty, { recursive: true });
    lowers.push(layout.empty);
  }
  // The merged root takes its attributes from the upper dir: make it look like the image's.
  copyAttrs(rootfs.upperDir, rootStat, false);
  mountOverlay(layout, lowers, rootfs.upperDir);
}

/** Creates `p` inside `root` (chroot semantics) as root-owned 0755 dirs; returns the host path. */
async function mkdirInRoot(root: string, p: string): Promise<string> {
  const target = await resolveInRoot(root, p);
  let cur = root;
  for (const part of path.relative(root, target).split('/').filter(Boolean)) {
    cur = path.join(cur, part);
    const st = fs.lstatSync(cur, { throwIfNoEntry: false });
    if (st === undefined) {
      fs.mkdirSync(cur);
      fs.chmodSync(cur, 0o755);
    } else if (!st.isDirectory()) {
      throw new SetupError(`cannot create ${p}: ${path.relative(root, cur)} is not a directory`);
    }
  }
  return target;
}

async function setUpRunRoot(layout: Layout, req: NsRunRequest): Promise<void> {
  prepareRootfs(layout, req.rootfs, true);
  fs.mkdirSync(layout.files, { recursive: true });
  const hosts = `127.0.0.1\tlocalhost ${req.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  let resolv = '';
  try {
    resolv = fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    // no resolver configured on the host: an empty file, as Docker does
  }
  fs.writeFileSync(path.join(layout.files, 'hosts'), hosts);
  fs.writeFileSync(path.join(layout.files, 'hostname'), `${req.hostname}\n`);
  fs.writeFileSync(path.join(layout.files, 'resolv.conf'), resolv);
  runTool('/bin/sh', ['-c', SETUP_SCRIPT, 'sh', layout.merged, layout.files, req.network]);
  // Per-UTS-namespace: this names only our namespace (the --uts unshare made it ours).
  fs.writeFileSync('/proc/sys/kernel/hostname', req.hostname);
  // Volumes before cwd, so a WORKDIR inside a VOLUME is created in the (discarded) volume.
  for (const [i, vol] of req.volumes.entries()) {
    const mountPoint = await mkdirInRoot(layout.merged, vol);
    const tmp = path.join(layout.volumes, String(i));
    fs.mkdirSync(tmp, { recursive: true });
    // Like Docker, a fresh volume starts as a copy of the image's content at that path.
    runTool('cp', ['-a', `${mountPoint}/.`, `${tmp}/`]);
    runTool('mount', ['--bind', tmp, mountPoint]);
  }
  await mkdirInRoot(layout.merged, req.cwd);
}

/** Docker's exec failure for a command that is not there; undefined when it can be run. */
async function execProblem(merged: string, req: NsRunRequest): Promise<string | undefined> {
  const cmd = req.argv[0] ?? '';
  const isFile = async (p: string) => fs.statSync(await resolveInRoot(merged, p), { throwIfNoEntry: false })?.isFile() === true;
  if (cmd.includes('/')) {
    return (await isFile(path.posix.resolve(req.cwd, cmd))) ? undefined : `exec: "${cmd}": stat ${cmd}: no such file or directory`;
  }
  const pathVar = req.env.filter((e) => e.startsWith('PATH=')).pop()?.slice(5) ?? '/bin:/usr/bin';
  for (const dir of pathVar.split(':')) {
    if (await isFile(path.posix.resolve(req.cwd, dir, cmd))) return undefined;
  }
  return `exec: "${cmd}": executable file not found in $PATH`;
}

function envObject(env: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env) {
    const eq = e.indexOf('=');
    if (eq > 0) out[e.slice(0, eq)] = e.slice(eq + 1);
  }
  return out;
}

let command: ChildProcess | undefined;
let finished = false;

async function runCommand(layout: Layout, req: NsRunRequest, reply: (r: NsReply) => void): Promise<void> {
  await setup(() => setUpRunRoot(layout, req));
  const problem = await setup(() => execProblem(layout.merged, req));
  if (problem !== undefined) {
    process.stderr.write(`slipway: ${problem}\n`);
    reply({ type: 'exit', exitCode: 127, signal: null });
    return;
  }
  const unshare = hostBinary('unshare');
  // Groups and gid are set here, while we are still root: `unshare --setgid` would clear the
  // supplementary groups. `unshare --root` then chroots, chdirs and drops to the uid.
  process.setgroups?.(req.groups);
  process.setgid?.(req.gid);
  const args = ['--root', layout.merged, '--wd', req.cwd, '--setuid', String(req.uid), '--', ...req.argv];
  // Docker's default capabilities minus MKNOD (there is no device cgroup here to make device
  // nodes harmless): without CAP_SYS_ADMIN a RUN cannot mount, and so cannot leave its chroot.
  const bounding = ['-all', ...STEP_CAPABILITIES.map((c) => `+${c}`)].join(',');
  command = spawn(hostBinary('setpriv'), ['--bounding-set', bounding, '--', unshare, ...args], { env: envObject(req.env), stdio: 'inherit' });
  command.on('error', (e) => reply({ type: 'error', error: { message: `cannot start command: ${e.message}`, code: 'ERR_SANDBOX' } }));
  command.on('exit', (code, signal) => {
    const signo = signal === null ? 0 : (osConstants.signals[signal] ?? 0);
    reply({ type: 'exit', exitCode: code ?? 128 + signo, signal });
  });
}

async function runScript(layout: Layout, req: NsScriptRequest, reply: (r: NsReply) => void): Promise<void> {
  await setup(() => prepareRootfs(layout, req.rootfs, false));
  const mod = (await import(pathToFileURL(req.scriptModule).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') throw new Error(`${req.scriptModule} has no default export function`);
  const fn = mod.default as (merged: string, args: unknown) => Promise<unknown>;
  reply({ type: 'result', value: await fn(layout.merged, req.args) });
}

function errorData(e: unknown): NsErrorData {
  const d: NsErrorData = { message: e instanceof Error ? e.message : String(e) };
  const o = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
  if (typeof o.code === 'string') d.code = o.code;
  if (typeof o.line === 'number') d.line = o.line;
  if (typeof o.file === 'string') d.file = o.file;
  if (typeof o.exitCode === 'number') d.exitCode = o.exitCode;
  return d;
}

/**
 * Closes descriptors we inherited by accident (a parent's fd without CLOEXEC travels through
 * Node's spawn and unshare): the command must see only 0, 1 and 2. Node's own fds are all
 * CLOEXEC, so only foreign ones match.
 */
function closeInheritedFds(): void {
  for (const name of fs.readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd <= 2) continue;
    let info: string;
    try {
      info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // the readdir's own fd, gone already
    }
    const flags = /^flags:\s*([0-7]+)/m.exec(info)?.[1];
    if (flags !== undefined && (Number.parseInt(flags, 8) & 0o2000000) === 0) fs.closeSync(fd);
  }
}

/** Entry point: connect, read the request, do it, answer, exit (which ends the namespace). */
async function main(): Promise<void> {
  const scratch = process.env[NS_DIR_ENV];
  if (scratch === undefined) throw new Error(`${NS_DIR_ENV} is not set`);
  delete process.env[NS_DIR_ENV];
  closeInheritedFds();
  process.umask(0o022);
  const layout = scratchLayout(scratch);
  process.chdir(scratch); // a relative socket path dodges the 108-byte sun_path limit
  const sock = net.connect(layout.socketName);
  const reply = (r: NsReply) => {
    if (finished) return;
    finished = true;
    sock.end(`${JSON.stringify(r)}\n`, () => process.exit(0));
  };
  const hostGone = () => {
    // The host closed the socket (done, aborted, or killed): take everything down with us.
    command?.kill('SIGKILL');
    process.exit(finished ? 0 : 137);
  };
  sock.on('error', hostGone);
  sock.on('close', hostGone);
  let buf = '';
  sock.setEncoding('utf8');
  const req = await new Promise<NsRequest>((resolve) => {
    const onData = (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      sock.off('data', onData);
      sock.resume(); // keep reading so that a close is noticed
      resolve(JSON.parse(buf.slice(0, nl)) as NsRequest);
    };
    sock.on('data', onData);
  });
  try {
    if (req.mode === 'run') await runCommand(layout, req, reply);
    else await runScript(layout, req, reply);
  } catch (e) {
    reply({ type: 'error', error: errorData(e) });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    process.stderr.write(`slipway sandbox: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(125);
  });
}
