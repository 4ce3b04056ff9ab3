/**
 * Per-step cgroups: memory, pids and CPU limits, and afterwards what the kernel did about them
 * (an OOM kill, a refused fork). Works on cgroup v1, v2 and the hybrid layout (v1 controllers
 * beside a v2 hierarchy): each controller is used where the host has it. A step's cgroup is
 * `/slipway/<name>` in each hierarchy it needs, so that a runtime that makes its own cgroup
 * (runc) can nest `<that>/ctr` at the same relative path everywhere.
 */
import fs from 'node:fs/promises';
import { mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../errors.js';

/** Docker's resource flags, in the units the kernel takes. */
export interface StepLimits {
  /** --memory, bytes. */
  memory?: number;
  /** --memory-swap, bytes of memory plus swap; -1 for unlimited swap. */
  memorySwap?: number;
  /** --cpu-shares (relative weight, default 1024). */
  cpuShares?: number;
  /** --cpu-period, microseconds. */
  cpuPeriod?: number;
  /** --cpu-quota, microseconds per period. */
  cpuQuota?: number;
  /** --cpuset-cpus, e.g. "0-1,3". */
  cpusetCpus?: string;
  /** --pids-limit; 0 or -1 for none. */
  pids?: number;
}

/** Controllers a step may use. */
type Controller = 'memory' | 'pids' | 'cpu' | 'cpuset';

/** Where one controller lives. */
interface Placement { version: 1 | 2; mount: string }

/** The host's cgroup layout, read once from mountinfo. */
export interface CgroupLayout {
  controllers: Partial<Record<Controller, Placement>>;
  /** The v2 mount, when there is one (controllers may still all be on v1). */
  unified?: string;
  /** Every v1 hierarchy's mount, whichever controllers it has. */
  all: string[];
}

/** Every cgroup hierarchy's mount point (v1 ones and the v2 one). */
function allMounts(layout: CgroupLayout): string[] {
  return [...new Set([...layout.all, ...(layout.unified ? [layout.unified] : [])])];
}

/** Reads the layout from `/proc/self/mountinfo` text (a parameter, so tests can give their own). */
export function parseCgroupLayout(mountinfo: string, v2Controllers: (mount: string) => string[]): CgroupLayout {
  const layout: CgroupLayout = { controllers: {}, all: [] };
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const mount = left.split(' ')[4];
    const [fstype, , superOpts = ''] = right.split(' ');
    if (mount === undefined) continue;
    if (fstype === 'cgroup') {
      layout.all.push(mount);
      for (const opt of superOpts.split(',')) {
        if (opt === 'memory' || opt === 'pids' || opt === 'cpu' || opt === 'cpuset') layout.controllers[opt] ??= { version: 1, mount };
      }
    } else if (fstype === 'cgroup2') {
      layout.unified ??= mount;
    }
  }
  if (layout.unified !== undefined) {
    for (const c of v2Controllers(layout.unified)) {
      if ((c === 'memory' || c === 'pids' || c === 'cpu' || c === 'cpuset') && layout.controllers[c] === undefined) {
        layout.controllers[c] = { version: 2, mount: layout.unified };
      }
    }
  }
  return layout;
}

let hostLayout: CgroupLayout | undefined;
/** This host's layout (read once per process). */
export function cgroupLayout(): CgroupLayout {
  hostLayout ??= parseCgroupLayout(readFileSync('/proc/self/mountinfo', 'utf8'), (m) => {
    try {
      return readFileSync(path.join(m, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
    } catch {
      return [];
    }
  });
  return hostLayout;
}

/** The controllers a step with `limits` needs. */
function neededControllers(limits: StepLimits): Controller[] {
  const need: Controller[] = [];
  if (limits.memory !== undefined || limits.memorySwap !== undefined) need.push('memory');
  if (limits.pids !== undefined && limits.pids > 0) need.push('pids');
  if (limits.cpuShares !== undefined || limits.cpuPeriod !== undefined || limits.cpuQuota !== undefined) need.push('cpu');
  if (limits.cpusetCpus !== undefined) need.push('cpuset');
  return need;
}

/** The files to write, in order, for one hierarchy. */
export function limitFiles(version: 1 | 2, controllers: Controller[], l: StepLimits): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const has = (c: Controller) => controllers.includes(c);
  if (version === 1) {
    if (has('memory') && l.memory !== undefined) out.push(['memory.limit_in_bytes', String(l.memory)]);
    if (has('memory') && l.memorySwap !== undefined) out.push(['memory.memsw.limit_in_bytes', String(l.memorySwap)]);
    if (has('pids') && l.pids !== undefined) out.push(['pids.max', String(l.pids)]);
    if (has('cpu') && l.cpuShares !== undefined) out.push(['cpu.shares', String(l.cpuShares)]);
    if (has('cpu') && l.cpuPeriod !== undefined) out.push(['cpu.cfs_period_us', String(l.cpuPeriod)]);
    if (has('cpu') && l.cpuQuota !== undefined) out.push(['cpu.cfs_quota_us', String(l.cpuQuota)]);
    if (has('cpuset') && l.cpusetCpus !== undefined) out.push(['cpuset.cpus', l.cpusetCpus]);
    return out;
  }
  if (has('memory') && l.memory !== undefined) out.push(['memory.max', String(l.memory)]);
  if (has('memory') && l.memorySwap !== undefined) {
    // v2 counts swap alone; Docker's --memory-swap is memory plus swap.
    out.push(['memory.swap.max', l.memorySwap < 0 ? 'max' : String(Math.max(0, l.memorySwap - (l.memory ?? 0)))]);
  }
  if (has('pids') && l.pids !== undefined) out.push(['pids.max', String(l.pids)]);
  if (has('cpu') && l.cpuShares !== undefined) {
    // The conversion runc and crun use from v1 shares (2..262144) to v2 weight (1..10000).
    out.push(['cpu.weight', String(1 + Math.floor(((l.cpuShares - 2) * 9999) / 262142))]);
  }
  if (has('cpu') && (l.cpuQuota !== undefined || l.cpuPeriod !== undefined)) {
    out.push(['cpu.max', `${l.cpuQuota !== undefined && l.cpuQuota > 0 ? l.cpuQuota : 'max'} ${l.cpuPeriod ?? 100000}`]);
  }
  if (has('cpuset') && l.cpusetCpus !== undefined) out.push(['cpuset.cpus', l.cpusetCpus]);
  return out;
}

/**
 * What the kernel did to a step, read from its cgroup after it ended. `memoryLimitHit`: usage
 * reached the limit at least once. v1 counts an OOM kill in the victim's own cgroup only, so
 * when a runtime nests the container one level down (runc) only this is seen from ours.
 */
export interface CgroupOutcome { oomKilled: boolean; memoryLimitHit: boolean; pidsLimitHit: boolean }

/** A step's cgroups: join them (`dirs`), then read the outcome, then remove them. */
export interface StepCgroup {
  /** One directory per hierarchy; the shim writes itself into each `cgroup.procs`. */
  dirs: string[];
  /** The path relative to every hierarchy's root (runc nests its own cgroup below it). */
  relative: string;
  outcome(): Promise<CgroupOutcome>;
  remove(): Promise<void>;
}

const SLICE = 'slipway';

/*
 * A step's own cgroup files are read and written synchronously: cgroupfs lives in memory, and a
 * trip through the thread pool per file costs more than the call (several per step).
 */
function writeIn(dir: string, file: string, value: string): void {
  try {
    writeFileSync(path.join(dir, file), value);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SlipwayError('ERR_SANDBOX', `cannot set ${file}=${value} for the step's cgroup (${code ?? (e as Error).message})`);
  }
}

/** Makes the `/slipway` parent in a hierarchy, ready for children (controllers enabled, cpuset filled in). */
function ensureParent(p: Placement, controllers: Controller[]): string {
  const parent = path.join(p.mount, SLICE);
  mkdirSync(parent, { recursive: true });
  if (p.version === 2) {
    for (const dir of [p.mount, parent]) {
      const enabled = readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8').split(/\s+/);
      const missing = controllers.filter((c) => !enabled.includes(c));
      if (missing.length > 0) writeIn(dir, 'cgroup.subtree_control', missing.map((c) => `+${c}`).join(' '));
    }
  } else if (controllers.includes('cpuset')) {
    inheritCpuset(parent);
  }
  return parent;
}

/** v1 cpuset: a new cgroup starts with no cpus and no mems, and takes no task until they are set. */
function inheritCpuset(dir: string): void {
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    const mine = readFileSync(path.join(dir, f), 'utf8').trim();
    if (mine === '') writeIn(dir, f, readFileSync(path.join(path.dirname(dir), f), 'utf8').trim());
  }
}

/**
 * Creates the step's cgroup `name` in every hierarchy its limits need, with the limits set.
 * `runtimeNests`: the runtime makes its own cgroup below it (runc), in every hierarchy.
 * Returns undefined when no limit applies. Fails with ERR_SANDBOX when a limit is asked for
 * and the host has no such controller.
 */
export async function createStepCgroup(name: string, limits: StepLimits, o: { runtimeNests?: boolean } = {}, layout: CgroupLayout = cgroupLayout()): Promise<StepCgroup | undefined> {
  const need = neededControllers(limits);
  if (need.length === 0) return undefined;
  const byMount = new Map<string, { p: Placement; controllers: Controller[] }>();
  for (const c of need) {
    const p = layout.controllers[c];
    if (p === undefined) throw new SlipwayError('ERR_SANDBOX', `this host has no ${c} cgroup controller for the limit asked for`);
    const entry = byMount.get(p.mount) ?? { p, controllers: [] };
    entry.controllers.push(c);
    byMount.set(p.mount, entry);
  }
  const dirs: string[] = [];
  const relative = `/${SLICE}/${name}`;
  // A runtime that makes its own cgroup (runc) makes `<relative>/ctr` in every hierarchy, ours or
  // not; otherwise (crun, told to manage none) there is nothing beyond the ones made here.
  const everywhere = o.runtimeNests ? allMounts(layout).map((m) => path.join(m, relative)) : dirs;
  const cg: StepCgroup = { dirs, relative, outcome: () => readOutcome([...byMount.values()], relative), remove: () => removeDirs(everywhere) };
  try {
    for (const { p, controllers } of byMount.values()) {
      ensureParent(p, controllers);
      const dir = path.join(p.mount, relative);
      mkdirSync(dir);
      dirs.push(dir);
      if (p.version === 1 && controllers.includes('cpuset')) inheritCpuset(dir);
      for (const [file, value] of limitFiles(p.version, controllers, limits)) writeIn(dir, file, value);
    }
  } catch (e) {
    await removeDirs(everywhere);
    if (e instanceof SlipwayError) throw e;
    throw new SlipwayError('ERR_SANDBOX', `cannot create the step's cgroup: ${(e as Error).message}`);
  }
  return cg;
}

/** A counter from a flat-keyed cgroup file (`oom_kill 1`, `max 3`); 0 when absent. */
export function counter(text: string, key: string): number {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function readOutcome(entries: Array<{ p: Placement; controllers: Controller[] }>, relative: string): Promise<CgroupOutcome> {
  const out: CgroupOutcome = { oomKilled: false, memoryLimitHit: false, pidsLimitHit: false };
  const read = (f: string) => {
    try {
      return readFileSync(f, 'utf8');
    } catch {
      return '';
    }
  };
  for (const { p, controllers } of entries) {
    const dir = path.join(p.mount, relative);
    if (controllers.includes('memory')) {
      const text = read(path.join(dir, p.version === 1 ? 'memory.oom_control' : 'memory.events'));
      out.oomKilled ||= counter(text, 'oom_kill') > 0;
      const hits = p.version === 1 ? Number(read(path.join(dir, 'memory.failcnt')).trim() || 0) : counter(text, 'max');
      out.memoryLimitHit ||= hits > 0;
    }
    if (controllers.includes('pids')) out.pidsLimitHit ||= counter(read(path.join(dir, 'pids.events')), 'max') > 0;
  }
  return out;
}

/** rmdir, children first (a runtime may have nested its own); retried while tasks are still leaving. */
async function removeTree(dir: string): Promise<void> {
  let entries: Dirent[] = [];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    // gone already
  }
  for (const e of entries) if (e.isDirectory()) await removeTree(path.join(dir, e.name));
  for (let attempt = 0; ; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 50) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function removeDirs(dirs: string[]): Promise<void> {
  for (const d of dirs) await removeTree(d).catch(() => undefined);
}

/**
 * Removes step cgroups left by processes that died (kill -9): they hold no task any more,
 * only directories. Names are `<pid>-<random>`; a live pid's are left alone.
 */
export async function sweepStaleCgroups(layout: CgroupLayout = cgroupLayout(), alive: (pid: number) => boolean): Promise<void> {
  for (const mount of allMounts(layout)) {
    const parent = path.join(mount, SLICE);
    for (const name of await fs.readdir(parent).catch(() => [] as string[])) {
      const pid = Number(/^(\d+)-/.exec(name)?.[1]);
      if (Number.isInteger(pid) && !alive(pid)) await removeTree(path.join(parent, name)).catch(() => undefined);
    }
  }
}
