/**
 * The `POST /build` parameters the docker CLI sends for `--add-host` (`extrahosts`, repeated),
 * `--ulimit` (`ulimits`, a JSON array of `{Name, Soft, Hard}`), `--shm-size` (`shmsize`, bytes),
 * `--cache-from` (`cachefrom`, a JSON array) and `--pull` (`pull`). Bad values are a 400.
 */
import { checkUlimit, parseAddHost, type ExtraHost, type Ulimit } from '../sandbox/container-flags.js';
import { badParameter } from './http-errors.js';
import { boolParam, jsonParam } from './body.js';

/** What these parameters ask for. */
export interface BuildExtrasQuery {
  extraHosts: ExtraHost[];
  ulimits: Ulimit[];
  shmSize?: number;
  cacheFrom: string[];
  pull: boolean;
}

function ulimitsParam(q: URLSearchParams): Ulimit[] {
  const v = jsonParam(q, 'ulimits');
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw badParameter('parameter ulimits must be a JSON array');
  return v.map((u: unknown) => {
    const o = u as { Name?: unknown; Soft?: unknown; Hard?: unknown } | null;
    if (!o || typeof o.Name !== 'string' || typeof o.Soft !== 'number' || typeof o.Hard !== 'number') throw badParameter('parameter ulimits: each entry needs Name, Soft and Hard');
    return checkUlimit({ name: o.Name, soft: o.Soft, hard: o.Hard }, `${o.Name}=${o.Soft}:${o.Hard}`);
  });
}

function cacheFromParam(q: URLSearchParams): string[] {
  const v = jsonParam(q, 'cachefrom');
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw badParameter('parameter cachefrom must be a JSON array of strings');
  return (v as string[]).filter((s) => s !== '');
}

/** Parses the parameters; a user's mistake is a 400 with the CLI flag's wording. */
export function buildExtrasQuery(q: URLSearchParams): BuildExtrasQuery {
  try {
    const out: BuildExtrasQuery = {
      extraHosts: q.getAll('extrahosts').flatMap((v) => v.split(',')).filter((v) => v !== '').map(parseAddHost),
      ulimits: ulimitsParam(q),
      cacheFrom: cacheFromParam(q),
      pull: boolParam(q, 'pull'),
    };
    const shm = q.get('shmsize');
    if (shm !== null && shm !== '' && shm !== '0') {
      if (!/^\d+$/.test(shm)) throw badParameter(`invalid shmsize: ${shm}`);
      out.shmSize = Number(shm);
    }
    return out;
  } catch (e) {
    throw badParameter((e as Error).message);
  }
}
