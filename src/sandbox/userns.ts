/**
 * The host ids a step's user namespace maps to. Root in a step is host uid `uid.host` (never 0),
 * uid 1 is `uid.host + 1`, and so on for `count` ids. The range is the `slipway` entry of
 * /etc/subuid and /etc/subgid (what `usermod --add-subuids` writes), or a built-in default
 * that the setup script registers there so that nothing else is given it.
 */
import { readFileSync } from 'node:fs';
import { SlipwayError } from '../errors.js';

/** One direction of the mapping: container ids 0..count-1 are host ids host..host+count-1. */
export interface IdRange { host: number; count: number }

/** The mapping of uids and gids. */
export interface IdMapping { uid: IdRange; gid: IdRange }

/** The owner /etc/subuid and /etc/subgid name the range by. */
export const SUBID_OWNER = 'slipway';
/** Used when /etc/subuid has no `slipway` line: far above the ranges useradd hands out (from 100000). */
export const DEFAULT_MAPPING: IdMapping = { uid: { host: 1_000_000_000, count: 65536 }, gid: { host: 1_000_000_000, count: 65536 } };

/** The range of `owner` in a subid file's text, if it has one. */
export function subidRange(text: string, owner: string): IdRange | undefined {
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (name !== owner || start === undefined || count === undefined) continue;
    const host = Number(start);
    const n = Number(count);
    if (Number.isInteger(host) && Number.isInteger(n) && host > 0 && n > 0) return { host, count: n };
  }
  return undefined;
}

function readOr(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The mapping steps use on this host. */
export function hostIdMapping(files = { subuid: '/etc/subuid', subgid: '/etc/subgid' }): IdMapping {
  const uid = subidRange(readOr(files.subuid), SUBID_OWNER);
  const gid = subidRange(readOr(files.subgid), SUBID_OWNER);
  if (uid === undefined && gid === undefined) return DEFAULT_MAPPING;
  if (uid === undefined || gid === undefined) {
    throw new SlipwayError('ERR_SANDBOX', `${files.subuid} and ${files.subgid} must both have a "${SUBID_OWNER}" line (or neither)`);
  }
  const count = Math.min(uid.count, gid.count);
  if (count < 65536) {
    throw new SlipwayError('ERR_SANDBOX', `the "${SUBID_OWNER}" range in ${files.subuid}/${files.subgid} has ${count} ids; steps need 65536`);
  }
  return { uid: { host: uid.host, count }, gid: { host: gid.host, count } };
}

/** A container id as the host sees it (ids outside the range have no host id). */
export function toHost(r: IdRange, id: number): number {
  if (id < 0 || id >= r.count) throw new SlipwayError('ERR_SANDBOX', `id ${id} is outside the step's user namespace (0-${r.count - 1})`);
  return r.host + id;
}
