/**
 * `--add-host`, `--ulimit` and `--shm-size` with Docker's syntax and checks. They shape a RUN
 * step's container (its /etc/hosts, its process rlimits, its /dev/shm) and never the image or
 * the cache key, as in Docker.
 */
import net from 'node:net';
import { SlipwayError } from '../errors.js';

/** One `/etc/hosts` line added to a step's hosts file. */
export interface ExtraHost { host: string; ip: string }
/** One rlimit of a step's processes (OCI `process.rlimits`); -1 is unlimited. */
export interface Ulimit { name: string; soft: number; hard: number }

function usage(msg: string): SlipwayError {
  return new SlipwayError('ERR_INVALID_OPTION', msg);
}

/** `HOST:IP` or `HOST=IP` (IPv6 addresses keep their colons: the first separator splits). */
export function parseAddHost(v: string): ExtraHost {
  const eq = v.indexOf('=');
  const colon = v.indexOf(':');
  const at = eq >= 0 && (colon < 0 || eq < colon) ? eq : colon;
  if (at <= 0) throw usage(`invalid argument "${v}" for "--add-host" flag: bad format for add-host: "${v}"`);
  const host = v.slice(0, at);
  const ip = v.slice(at + 1).replace(/^\[(.*)\]$/, '$1');
  if (ip === 'host-gateway') throw usage(`--add-host ${v}: host-gateway is not supported: a step cannot reach the host (its network is user-mode, libslirp, without the host's loopback)`);
  if (!/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/.test(host)) throw usage(`invalid argument "${v}" for "--add-host" flag: invalid hostname "${host}"`);
  if (net.isIP(ip) === 0) throw usage(`invalid argument "${v}" for "--add-host" flag: invalid IP address in add-host: "${ip}"`);
  return { host, ip };
}

/** Docker's ulimit names and the OCI rlimit each one is. */
const ULIMITS: Record<string, string> = {
  core: 'RLIMIT_CORE', cpu: 'RLIMIT_CPU', data: 'RLIMIT_DATA', fsize: 'RLIMIT_FSIZE', locks: 'RLIMIT_LOCKS', memlock: 'RLIMIT_MEMLOCK',
  msgqueue: 'RLIMIT_MSGQUEUE', nice: 'RLIMIT_NICE', nofile: 'RLIMIT_NOFILE', nproc: 'RLIMIT_NPROC', rss: 'RLIMIT_RSS', rtprio: 'RLIMIT_RTPRIO',
  rttime: 'RLIMIT_RTTIME', sigpending: 'RLIMIT_SIGPENDING', stack: 'RLIMIT_STACK',
};

/** The OCI name of a Docker ulimit name. */
export function rlimitType(name: string): string {
  return ULIMITS[name]!;
}

/** Checks one ulimit (names, numbers, soft not above hard), as docker's go-units does. */
export function checkUlimit(u: Ulimit, text: string): Ulimit {
  const bad = (why: string) => usage(`invalid argument "${text}" for "--ulimit" flag: ${why}`);
  if (!(u.name in ULIMITS)) throw bad(`invalid ulimit type: ${u.name}`);
  for (const n of [u.soft, u.hard]) if (!Number.isSafeInteger(n) || n < -1) throw bad('invalid ulimit value');
  if (u.hard !== -1 && (u.soft === -1 || u.soft > u.hard)) throw bad(`ulimit soft limit must be less than or equal to hard limit: ${u.soft} > ${u.hard}`);
  return u;
}

/** `NAME=SOFT[:HARD]` (hard defaults to soft; -1 is unlimited). */
export function parseUlimit(v: string): Ulimit {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(v);
  if (!m) throw usage(`invalid argument "${v}" for "--ulimit" flag: invalid ulimit argument: ${v}`);
  const soft = Number(m[2]);
  return checkUlimit({ name: m[1]!, soft, hard: m[3] !== undefined ? Number(m[3]) : soft }, v);
}

/** The hosts file lines for extra hosts, after the defaults (as Docker appends them). */
export function extraHostLines(hosts: readonly ExtraHost[]): string {
  return hosts.map((h) => `${h.ip}\t${h.host}\n`).join('');
}
