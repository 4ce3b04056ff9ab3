/**
 * The OCI runtime spec (`config.json`) of one step or `slipway run` container, built as plain
 * data from what the step needs. Nothing here touches the filesystem: the caller writes the
 * result into a bundle and hands it to crun or runc. Docker's defaults are the model: its
 * default capabilities, masked and read-only paths, device set and mounts.
 */
import { defaultSeccompProfile, type SeccompProfile } from './seccomp.js';
import { rlimitType, type Ulimit } from './container-flags.js';

/** How a step reaches the network. */
export type NetworkMode = 'default' | 'none' | 'host';

/** What one container needs; every path is a host path as the runtime sees it. */
export interface ContainerSpec {
  /** The mounted root filesystem (overlay or vfs copy). */
  rootfs: string;
  argv: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  groups: number[];
  hostname: string;
  /** A pseudo-terminal for the process (`slipway run -t`), of this size when known. */
  terminal: boolean;
  consoleSize?: { height: number; width: number };
  network: NetworkMode;
  /** Namespaces made beforehand and joined by path (the shim binds them there). */
  join: { user?: string; network?: string };
  /** The joined user namespace's mapping (runc wants it stated even when it joins one). */
  idMappings?: { uid: { host: number; count: number }; gid: { host: number; count: number } };
  /** Files bind-mounted over /etc/hosts, /etc/hostname and /etc/resolv.conf. */
  etc: { hosts: string; hostname: string; resolvConf: string };
  /** Size of /dev/shm in bytes (Docker's default is 64 MiB). */
  shmSize?: number;
  /** `--ulimit`: rlimits of the container's processes (-1 is unlimited). */
  ulimits?: readonly Ulimit[];
  /** Overrides Docker's default capabilities (names without the CAP_ prefix). */
  capabilities?: readonly string[];
  /** false drops the seccomp filter (never by default). */
  seccomp?: boolean;
  /**
   * `RUN --security=insecure` (an operator's entitlement): every capability, no seccomp filter,
   * no masked or read-only /proc paths, as BuildKit's insecure mode. Still inside the step's
   * user namespace unless the operator chose --userns=host.
   */
  insecure?: boolean;
  /** RUN --mount: binds (sources as the runtime sees them) and tmpfs, after the standard mounts. */
  extraMounts?: readonly StepMountSpec[];
}

/** One RUN --mount as the runtime mounts it. */
export type StepMountSpec =
  | { kind: 'bind'; target: string; source: string; readonly: boolean }
  | { kind: 'tmpfs'; target: string; size?: number };

/** The parts of the runtime-spec config this module writes. */
export interface OciMount { destination: string; type: string; source: string; options?: string[] }
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    consoleSize?: { height: number; width: number };
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: Record<'bounding' | 'effective' | 'permitted', string[]>;
    noNewPrivileges: boolean;
    rlimits?: Array<{ type: string; hard: number; soft: number }>;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    namespaces: Array<{ type: string; path?: string }>;
    devices: Array<{ path: string; type: 'c'; major: number; minor: number; fileMode: number; uid: number; gid: number }>;
    maskedPaths: string[];
    readonlyPaths: string[];
    seccomp?: SeccompProfile;
    resources: { devices: DeviceRule[] };
    uidMappings?: Array<{ containerID: number; hostID: number; size: number }>;
    gidMappings?: Array<{ containerID: number; hostID: number; size: number }>;
  };
}

/** Docker's default capability set (`docker run` without --cap-add/--cap-drop). */
export const DOCKER_DEFAULT_CAPABILITIES: readonly string[] = [
  'CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP', 'SETPCAP',
  'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE',
];

/** Every capability of a 6.x kernel (BuildKit's insecure mode grants them all). */
export const ALL_CAPABILITIES: readonly string[] = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
  'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
  'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
];

/** Paths Docker hides (an empty read-only file or directory over them). */
export const MASKED_PATHS: readonly string[] = [
  '/proc/asound', '/proc/acpi', '/proc/interrupts', '/proc/kcore', '/proc/keys', '/proc/latency_stats',
  '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** Paths Docker makes read-only, /proc/sys (kernel settings) among them. */
export const READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** A device cgroup rule (used by a runtime that manages the devices cgroup, as runc does). */
export interface DeviceRule { allow: boolean; type?: 'a' | 'b' | 'c'; major?: number; minor?: number; access: string }

/**
 * Docker's device rules: nothing but mknod in general, read/write on the minimal /dev, the pty
 * slaves (136:*) and /dev/pts/ptmx (5:2), and /dev/net/tun (10:200).
 */
const DEVICE_RULES: readonly DeviceRule[] = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', access: 'm' },
  { allow: true, type: 'b', access: 'm' },
  ...([[1, 3], [1, 5], [1, 7], [1, 8], [1, 9], [5, 0], [5, 2], [10, 200]] as const).map(([major, minor]): DeviceRule => ({ allow: true, type: 'c', major, minor, access: 'rwm' })),
  { allow: true, type: 'c', major: 136, access: 'rwm' },
];

/** The character devices of a minimal /dev (as Docker's default device list). */
const DEVICES: ReadonlyArray<[string, number, number]> = [
  ['/dev/null', 1, 3], ['/dev/zero', 1, 5], ['/dev/full', 1, 7], ['/dev/random', 1, 8], ['/dev/urandom', 1, 9], ['/dev/tty', 5, 0],
];

const DEFAULT_SHM = 64 * 1024 * 1024;

function mounts(c: ContainerSpec): OciMount[] {
  const sysfs: OciMount = c.network === 'host' && c.join.user !== undefined
    // sysfs can only be mounted by the owner of the network namespace: with the host's network
    // inside a user namespace, a read-only bind of the host's /sys stands in (as Docker does).
    ? { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] }
    : { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] };
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    sysfs,
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${c.shmSize ?? DEFAULT_SHM}`] },
    { destination: '/etc/resolv.conf', type: 'bind', source: c.etc.resolvConf, options: ['rbind', 'rprivate'] },
    { destination: '/etc/hostname', type: 'bind', source: c.etc.hostname, options: ['rbind', 'rprivate'] },
    { destination: '/etc/hosts', type: 'bind', source: c.etc.hosts, options: ['rbind', 'rprivate'] },
    ...(c.extraMounts ?? []).map(stepMount),
  ];
}

/** A RUN --mount: a bind (read-only unless asked) or a tmpfs (BuildKit's options for each). */
function stepMount(m: StepMountSpec): OciMount {
  if (m.kind === 'tmpfs') {
    return { destination: m.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', ...(m.size !== undefined ? [`size=${m.size}`] : [])] };
  }
  return { destination: m.target, type: 'bind', source: m.source, options: ['rbind', 'rprivate', 'nosuid', 'nodev', ...(m.readonly ? ['ro'] : [])] };
}

function namespaces(c: ContainerSpec): OciSpec['linux']['namespaces'] {
  const ns: OciSpec['linux']['namespaces'] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (c.join.user !== undefined) ns.push({ type: 'user', path: c.join.user });
  if (c.network !== 'host') {
    // A network namespace is always the step's own: made (with the network daemon's tap, or loopback only)
    // before the runtime starts, so the runtime only joins it.
    if (c.join.network === undefined) throw new Error('a step without the host network needs its network namespace');
    ns.push({ type: 'network', path: c.join.network });
  }
  return ns;
}

/** The runtime spec for `c`. Pure: the same input gives the same object. */
export function ociSpec(c: ContainerSpec): OciSpec {
  const caps = (c.insecure ? ALL_CAPABILITIES : c.capabilities ?? DOCKER_DEFAULT_CAPABILITIES).map((n) => `CAP_${n}`);
  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: c.terminal,
      ...(c.terminal && c.consoleSize ? { consoleSize: { ...c.consoleSize } } : {}),
      user: { uid: c.uid, gid: c.gid, ...(c.groups.length > 0 ? { additionalGids: [...c.groups] } : {}) },
      args: [...c.argv],
      env: [...c.env],
      cwd: c.cwd,
      // No inheritable or ambient set: a non-root user gets no capabilities across exec (as Docker).
      capabilities: { bounding: caps, effective: [...caps], permitted: [...caps] },
      noNewPrivileges: false,
    },
    root: { path: c.rootfs, readonly: false },
    hostname: c.hostname,
    mounts: mounts(c),
    linux: {
      namespaces: namespaces(c),
      devices: DEVICES.map(([p, major, minor]) => ({ path: p, type: 'c', major, minor, fileMode: 0o666, uid: 0, gid: 0 })),
      maskedPaths: c.insecure ? [] : [...MASKED_PATHS],
      readonlyPaths: c.insecure ? [] : [...READONLY_PATHS],
      resources: { devices: DEVICE_RULES.map((r) => ({ ...r })) },
    },
  };
  if (c.ulimits?.length) {
    // -1 (unlimited) is RLIM_INFINITY, which the runtime spec writes as the largest uint64.
    const n = (v: number) => (v < 0 ? Number.MAX_SAFE_INTEGER : v);
    spec.process.rlimits = c.ulimits.map((u) => ({ type: rlimitType(u.name), hard: n(u.hard), soft: n(u.soft) }));
  }
  if (c.seccomp !== false && !c.insecure) spec.linux.seccomp = defaultSeccompProfile();
  if (c.join.user !== undefined && c.idMappings) {
    spec.linux.uidMappings = [{ containerID: 0, hostID: c.idMappings.uid.host, size: c.idMappings.uid.count }];
    spec.linux.gidMappings = [{ containerID: 0, hostID: c.idMappings.gid.host, size: c.idMappings.gid.count }];
  }
  return spec;
}
