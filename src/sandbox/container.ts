/**
 * One container under an OCI runtime: a RUN step, or `slipway run`. The rootfs is the overlay
 * of the image's layer dirs plus a fresh upper dir (or a vfs copy); the shim (native/shim.c)
 * makes the namespaces, the idmapped mounts and the overlay, joins the step's cgroups, and runs
 * crun or runc on a spec from `oci-spec.ts`. Guarantees: when `runContainer` settles, nothing
 * it started is running or mounted, its cgroups are gone, and the upper dir holds only what
 * the command changed, with the image's owners (root's files as uid 0). If this process dies,
 * even by kill -9, the shim and everything below it die with it.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { constants as osConstants } from 'node:os';
import { SlipwayError } from '../errors.js';
import { cleanPath } from '../image-config.js';
import { DEFAULT_PIDS_LIMIT } from './defaults.js';
import { ociSpec, type NetworkMode, type OciSpec, type StepMountSpec } from './oci-spec.js';
import { createStepCgroup, sweepStaleCgroups, cgroupLayout, type StepCgroup, type StepLimits } from './cgroups.js';
import { findRuntime, runtimeArgv, shimPath, type Runtime } from './runtime.js';
import { netdName } from './netd.js';
import { hostIdMapping, type IdMapping } from './userns.js';
import { hostOwner, shiftOwnersBack } from './shift-owners.js';
import { buildInitLayer, copyAttrs, imageDir } from './init-layer.js';
import { containerFiles } from './etc-files.js';
import type { ExtraHost, Ulimit } from './container-flags.js';
import { compiledSeccomp } from './seccomp-bpf.js';
import { prewarmNetwork, takeWarmNetwork, type WarmNetwork } from './warm-network.js';
import { defaultSeccompProfile } from './seccomp.js';
import { consoleSocket, type AttachedIo, type ConsoleSocket } from './console.js';
import { supervise } from './supervise.js';

/** How steps are confined; plain data, so it crosses threads and queues. */
export interface SandboxOptions {
  /** `--runtime PATH`: crun or runc; found on PATH when absent (crun first). */
  runtime?: string;
  /** `private` (default): root in a step is an unprivileged host uid. `host`: no user namespace. */
  userns?: 'private' | 'host';
  limits?: StepLimits;
  /** `--step-timeout`, milliseconds. */
  timeoutMs?: number;
  /** `--add-host`: lines added to the container's /etc/hosts. */
  extraHosts?: ExtraHost[];
  /** `--ulimit`: the process's rlimits. */
  ulimits?: Ulimit[];
  /** `--shm-size`: bytes of /dev/shm (default 64 MiB). */
  shmSize?: number;
}

/** One container to run. */
export interface ContainerRun {
  /** Layer dirs in overlay form, top-most first; ignored with `rootDir`. */
  lowerDirs: string[];
  /** Empty dir that receives the changes (the new layer). */
  upperDir: string;
  /** Private empty dir on the same filesystem as upperDir; the caller deletes it. */
  scratchDir: string;
  /** vfs: a dir holding the whole rootfs (with its mount points), used instead of an overlay. */
  rootDir?: string;
  argv: string[];
  env: string[];
  uid: number;
  gid: number;
  groups?: number[];
  /** Created (root, 0755) when missing, like WORKDIR. */
  cwd: string;
  hostname?: string;
  network: NetworkMode;
  /**
   * Containers with different domains never share a network daemon (netd.ts): a RUN step's is
   * its store's (a farm worker keeps one store per tenant), so one tenant's steps never go
   * through the process that carries another's traffic. Default: one domain.
   */
  netDomain?: string;
  /** Image VOLUME paths: the mount point lands in the layer, writes below it do not. */
  volumes?: string[];
  /** RUN --mount: what is mounted where; each mount point (folder or empty file) lands in the layer. */
  mounts?: ContainerMount[];
  /** RUN --security=insecure: all capabilities, no seccomp (see oci-spec.ts). */
  insecure?: boolean;
  /** `slipway run`: the terminal's stdio, `-t` for a pty, `-i` to pass stdin. */
  interactive?: { tty: boolean; stdin: boolean };
  /** The API's attached container: stdio on pipes (and a relayed pty with `tty`). */
  attach?: AttachedIo;
  onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
  signal?: AbortSignal;
  sandbox?: SandboxOptions;
  /**
   * The caller maps the upper dir's owners back itself, in a walk it makes anyway (a RUN step's
   * pack): the result's `ownersBack` says how. Otherwise this does it before returning.
   */
  deferOwnerShift?: boolean;
}

/**
 * One RUN --mount as the container gets it: a host folder, file or socket (bound through the
 * shim's stage, so the runtime reaches it from inside the user namespace), or a tmpfs.
 */
export type ContainerMount =
  | { kind: 'bind'; target: string; source: string; readonly: boolean; file: boolean }
  | { kind: 'tmpfs'; target: string; size?: number };

/** A limit a container can run into. */
export type Limit = 'memory' | 'pids' | 'timeout';

/** How it ended. `limits` names every limit it ran into, the one that ended it first. */
export interface ContainerResult {
  exitCode: number;
  signal: string | null;
  limits?: Limit[];
  /** With `deferOwnerShift`: the mapping whose host ids the upper dir still holds (see shift-owners.ts). */
  ownersBack?: IdMapping;
}

/**
 * Where the shim mounts the rootfs and binds the /etc files, in a private tmpfs (see the
 * shim's --stage): every directory above what the runtime opens from inside the user namespace
 * must be searchable by the step's unprivileged uid, which a 0700 store folder is not.
 */
export const STAGE = '/run/slipway';

/**
 * Every path a container uses, spelled once: in its scratch dir, or in the stage (the shim's
 * private tmpfs, which only the shim and the runtime see). What only they use lives in the
 * stage: creating and removing inodes on the store's filesystem is a large part of a step's cost.
 */
function scratchPaths(scratch: string) {
  const p = (n: string) => path.join(scratch, n);
  return { bundle: p('bundle'), state: `${STAGE}/state`, ns: `${STAGE}/ns`, links: `${STAGE}/l`, work: p('work'),
    init: p('init'), files: p('files'), volumes: p('vol'), log: p('runtime.log') };
}
type Paths = ReturnType<typeof scratchPaths>;

/** The mapping a run uses, or undefined with `--userns=host`. */
export function mappingFor(o: SandboxOptions | undefined): IdMapping | undefined {
  return (o?.userns ?? 'private') === 'private' ? hostIdMapping() : undefined;
}

/** Prepares the rootfs parts the shim mounts; returns the lower dirs, init layer first. */
function prepareRootfs(run: ContainerRun, p: Paths, m: IdMapping | undefined): string[] {
  if (run.rootDir !== undefined) return [];
  buildInitLayer(p.init, run.lowerDirs);
  // The merged root takes its attributes from the upper dir: make it look like the image's.
  const root = run.lowerDirs[0] === undefined ? undefined : fs.statSync(run.lowerDirs[0]);
  copyAttrs(run.upperDir, root, { withTimes: false, owner: hostOwner(m, root?.uid ?? 0, root?.gid ?? 0) });
  return [p.init, ...run.lowerDirs];
}

/** Upper and work dirs of each volume; the volume's root looks like the image's dir there. */
function prepareVolumes(run: ContainerRun, p: Paths, m: IdMapping | undefined): void {
  for (const [i, vol] of (run.volumes ?? []).entries()) {
    const u = path.join(p.volumes, String(i), 'u');
    fs.mkdirSync(u, { recursive: true });
    fs.mkdirSync(path.join(p.volumes, String(i), 'w'));
    const rel = vol.replace(/^\/+/, '');
    const st = run.rootDir !== undefined
      ? fs.statSync(path.join(run.rootDir, rel), { throwIfNoEntry: false })
      : imageDir(run.lowerDirs, rel);
    const dir = st?.isDirectory() ? st : undefined;
    copyAttrs(u, dir, { withTimes: false, owner: hostOwner(m, dir?.uid ?? 0, dir?.gid ?? 0) });
  }
}

function writeSpec(run: ContainerRun, p: Paths, rt: Runtime, m: IdMapping | undefined, cgroup: StepCgroup | undefined, bpf: string | undefined): void {
  containerFiles(p.files, { hostname: run.hostname ?? '', network: run.network, owner: hostOwner(m, 0, 0), extraHosts: run.sandbox?.extraHosts ?? [] });
  const etc = { hosts: `${STAGE}/files/hosts`, hostname: `${STAGE}/files/hostname`, resolvConf: `${STAGE}/files/resolv.conf` };
  const spec: OciSpec & { linux: { cgroupsPath?: string } } = ociSpec({
    rootfs: `${STAGE}/rootfs`, argv: run.argv, env: run.env, cwd: run.cwd, uid: run.uid, gid: run.gid, groups: run.groups ?? [],
    hostname: run.hostname ?? '', terminal: (run.interactive?.tty || run.attach?.tty) ?? false, network: run.network, etc,
    ...(run.interactive?.tty && process.stdout.rows ? { consoleSize: { height: process.stdout.rows, width: process.stdout.columns } } : {}),
    ...(run.attach?.tty && run.attach.size ? { consoleSize: { height: run.attach.size.rows, width: run.attach.size.cols } } : {}),
    join: { ...(m ? { user: path.join(p.ns, 'user') } : {}), ...(run.network !== 'host' ? { network: path.join(p.ns, 'net') } : {}) },
    ...(m ? { idMappings: m } : {}),
    ...(run.sandbox?.shmSize !== undefined ? { shmSize: run.sandbox.shmSize } : {}),
    ...(run.sandbox?.ulimits?.length ? { ulimits: run.sandbox.ulimits } : {}),
    ...(run.insecure ? { insecure: true } : {}),
    extraMounts: stagedMounts(run.mounts ?? []),
  });
  // runc makes its own cgroup; below ours, our limits still hold (see runtime.ts).
  if (rt.kind === 'runc' && cgroup) spec.linux.cgroupsPath = `${cgroup.relative}/ctr`;
  // crun loads the profile compiled once (seccomp-bpf.ts) instead of compiling it per step.
  if (rt.kind === 'crun' && bpf !== undefined) (spec as OciSpec & { annotations?: Record<string, string> }).annotations = { 'run.oci.seccomp_bpf_data': bpf };
  fs.mkdirSync(p.bundle);
  fs.writeFileSync(path.join(p.bundle, 'config.json'), JSON.stringify(spec));
}

/** The mounts as the runtime sees them: the i-th bind's source is the stage's `m<i>`. */
function stagedMounts(mounts: ContainerMount[]): StepMountSpec[] {
  let i = 0;
  return mounts.map((x) => (x.kind === 'tmpfs' ? { ...x } : { kind: 'bind', target: x.target, source: `${STAGE}/m${i++}`, readonly: x.readonly }));
}

function shimArgv(run: ContainerRun, p: Paths, rt: Runtime, m: IdMapping | undefined, lowers: string[], cgroup: StepCgroup | undefined, warm: WarmNetwork | undefined, netd: string | undefined, console?: ConsoleSocket): string[] {
  const a: string[] = [];
  for (const d of cgroup?.dirs ?? []) a.push('--cgroup', d);
  if (m) a.push('--idmap', `${m.uid.host}:${Math.min(m.uid.count, m.gid.count)}`, '--gidmap', String(m.gid.host));
  if (warm) {
    // Made ahead (warm-network.ts): join them instead of making them now.
    a.push('--join-net', `/proc/${warm.pid}/ns/net`, ...(m ? ['--join-user', `/proc/${warm.pid}/ns/user`] : []));
  } else {
    if (run.network !== 'host') a.push('--netns', run.network === 'default' ? 'slirp' : 'none');
    if (netd !== undefined) a.push('--netd', netd);
  }
  a.push('--nsdir', p.ns, '--stage', STAGE, '--stage-files', p.files);
  if (run.rootDir !== undefined) a.push('--rootdir', run.rootDir);
  for (const l of lowers) a.push('--lower', l);
  if (lowers.length > 0) a.push('--upper', run.upperDir, '--work', p.work, '--links', p.links);
  for (const v of run.volumes ?? []) a.push('--volume', v);
  if ((run.volumes ?? []).length > 0) a.push('--volume-dir', p.volumes);
  for (const x of run.mounts ?? []) if (x.kind === 'bind') a.push('--stage-bind', x.source);
  // The mount points, made as the runtime would make them (a file's is an empty 0755 file).
  for (const x of run.mounts ?? []) a.push(x.kind === 'bind' && x.file ? '--mkfile' : '--mkdir', x.target);
  // Volumes first: a working directory inside a VOLUME is created in the (discarded) volume.
  a.push('--mkdir', run.cwd);
  const pathVar = run.env.filter((e) => e.startsWith('PATH=')).pop()?.slice(5);
  a.push('--exec', run.argv[0] ?? '', '--exec-cwd', run.cwd, ...(pathVar !== undefined ? ['--exec-path', pathVar] : []));
  if (rt.kind === 'crun' && fs.existsSync('/sys/fs/cgroup/unified')) a.push('--hide-cgroup2');
  // The runtime skips copying itself (and its second exec) when its binary is read-only (see the shim).
  a.push('--seal-command');
  a.push('--status-fd', '3', '--', ...runtimeArgv(rt, { stateDir: p.state, bundle: p.bundle, id: `slipway-${crypto.randomBytes(6).toString('hex')}`, logFile: p.log, ...(console ? { consoleSocket: console.socket } : {}) }));
  return a;
}

/** The runtime's own error (from its JSON log), if it reported one. */
function runtimeError(logFile: string): string | undefined {
  let text = '';
  try {
    text = fs.readFileSync(logFile, 'utf8');
  } catch {
    return undefined;
  }
  const errors = text.split('\n').filter(Boolean).map((l) => {
    try {
      return JSON.parse(l) as { level?: string; msg?: string };
    } catch {
      return { level: 'error', msg: l };
    }
  }).filter((e) => e.level === 'error' || e.level === 'fatal');
  return errors.at(-1)?.msg;
}

/** The signal a 128+n status stands for (a shell's convention, and the runtime's). */
function signalName(code: number): string | null {
  if (code <= 128) return null;
  return Object.entries(osConstants.signals).find(([, n]) => n === code - 128)?.[0] ?? null;
}

/**
 * A resident engine's thread, before its first step: the stale-cgroup sweep, the runtime's
 * detection, the network daemon for `domain` (the store's tmp folder, as steps name it) and one
 * prepared network for a step with the default sandbox, so that the first RUN of the first
 * build pays none of them. Failures are left for that step to meet and report.
 */
export async function prewarmThread(domain: string): Promise<void> {
  await sweepOnce();
  try {
    findRuntime(undefined);
    prewarmNetwork(shimPath(), await netdName(domain), mappingFor(undefined));
  } catch { /* the first step reports it */ }
}

let swept: Promise<void> | undefined;
/** Once per process: cgroups of steps whose process was killed (kill -9) are removed. */
function sweepOnce(): Promise<void> {
  swept ??= sweepStaleCgroups(cgroupLayout(), (pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  }).catch(() => undefined);
  return swept;
}

/** Runs a host-side preparation; whatever it throws is a sandbox fault (ERR_SANDBOX), not the user's. */
function setup<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SlipwayError) throw e;
    throw new SlipwayError('ERR_SANDBOX', `sandbox setup failed: ${(e as Error).message}`);
  }
}

function withDefaults(limits: StepLimits | undefined): StepLimits {
  return { ...limits, pids: limits?.pids ?? DEFAULT_PIDS_LIMIT };
}

/**
 * Runs `run.argv` as `uid:gid` in `cwd` with exactly `env`. A command that cannot be found exits
 * 127 with Docker's message on stderr. Rejects with ERR_SANDBOX when the sandbox cannot be set
 * up and ERR_CANCELLED on abort; a timeout or limit resolves with `limits`.
 */
export async function runContainer(given: ContainerRun): Promise<ContainerResult> {
  // The shim and the runtime change directory: every path they get must be absolute.
  const run: ContainerRun = {
    ...given, cwd: cleanPath(given.cwd), lowerDirs: given.lowerDirs.map((d) => path.resolve(d)), upperDir: path.resolve(given.upperDir),
    scratchDir: path.resolve(given.scratchDir), ...(given.rootDir !== undefined ? { rootDir: path.resolve(given.rootDir) } : {}),
  };
  if (run.argv.length === 0) throw new SlipwayError('ERR_SANDBOX', 'no command to run');
  if (!run.cwd.startsWith('/')) throw new SlipwayError('ERR_SANDBOX', `working directory must be absolute: ${run.cwd}`);
  const o = run.sandbox;
  await sweepOnce();
  const rt = findRuntime(o?.runtime);
  const shim = shimPath();
  const m = mappingFor(o);
  let cgroup: StepCgroup | undefined;
  let pty: ConsoleSocket | undefined;
  // The namespaces (and the network) of a step are prepared ahead. The next step's are
  // started once this step's shim has joined its cgroups (a cgroup join waits for forks elsewhere
  // to finish): they come up while this step runs, without blocking this thread (the spawner).
  const prepared = run.network !== 'host' && !run.interactive;
  const netd = run.network === 'default' ? await netdName(run.netDomain ?? '') : undefined;
  const warm = prepared ? await takeWarmNetwork(netd, m) : undefined;
  const prewarm = () => { if (prepared) prewarmNetwork(shim, netd, m); };
  const p = scratchPaths(run.scratchDir);
  try {
    fs.mkdirSync(p.work, { recursive: true });
    const lowers = setup(() => {
      const l = prepareRootfs(run, p, m);
      prepareVolumes(run, p, m);
      return l;
    });
    cgroup = await createStepCgroup(`${process.pid}-${crypto.randomBytes(6).toString('hex')}`, withDefaults(o?.limits), { runtimeNests: rt.kind === 'runc' });
    const bpf = rt.kind === 'crun' && !run.insecure ? await compiledSeccomp(defaultSeccompProfile()) : undefined;
    setup(() => writeSpec(run, p, rt, m, cgroup, bpf));
    if (run.attach?.tty) pty = setup(() => consoleSocket(m));
    const argv = [shim, ...shimArgv(run, p, rt, m, lowers, cgroup, warm, netd, pty)];
    const res = await supervise({ ...run, onStarted: prewarm, ...(o?.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) }, pty ? pty.wrap(argv) : argv);
    const outcome = cgroup ? await cgroup.outcome() : { oomKilled: false, memoryLimitHit: false, pidsLimitHit: false };
    if (res.setupError !== undefined) throw new SlipwayError('ERR_SANDBOX', `sandbox setup failed: ${res.setupError}`);
    const rtError = res.code !== 0 && !res.timedOut ? runtimeError(p.log) : undefined;
    if (rtError !== undefined && !/exec|executable/i.test(rtError)) throw new SlipwayError('ERR_SANDBOX', `${rt.kind}: ${rtError}`);
    const shifts = m !== undefined && run.rootDir === undefined && res.code === 0;
    if (shifts && !run.deferOwnerShift) shiftOwnersBack(run.upperDir, m);
    const result: ContainerResult = { exitCode: res.timedOut ? 137 : res.code, signal: signalName(res.code) };
    if (shifts && run.deferOwnerShift) result.ownersBack = m;
    const limits: Limit[] = [];
    if (res.timedOut) limits.push('timeout');
    // Killed (SIGKILL) at the memory limit: the OOM killer's work, even where v1 hides the count.
    if (res.code !== 0 && (outcome.oomKilled || (res.code === 137 && outcome.memoryLimitHit))) limits.push('memory');
    if (res.code !== 0 && outcome.pidsLimitHit) limits.push('pids');
    if (limits.length > 0) result.limits = limits;
    return result;
  } finally {
    pty?.remove();
    warm?.release();
    prewarm(); // when the shim never got that far (a no-op when it did)
    await cgroup?.remove();
    // Overlay leaves work/work (mode 000) behind; nothing is mounted any more.
    fs.rmSync(p.work, { recursive: true, force: true });
  }
}
