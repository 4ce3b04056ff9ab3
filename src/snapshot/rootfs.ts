import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import { LayerView } from './layer-view.js';

/**
 * Reads a file of an image without mounting it, as the overlay would show it (`LayerView`): the
 * top-most layer that has the path wins; a whiteout on the path, an opaque folder above it or a
 * non-folder parent hides it in the layers below. In place (synchronous): every RUN step looks
 * up /etc/passwd through all of its layers, and most of them lack it.
 */
export async function readFileFromLayers(lowerDirs: string[], rel: string): Promise<string | undefined> {
  const top = new LayerView(lowerDirs).find(rel);
  return top?.st.isFile() ? readFileSync(top.dir, 'utf8') : undefined;
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

function parsePasswd(text: string | undefined): PasswdEntry[] {
  return (text ?? '').split('\n').map((l) => l.split(':')).filter((f) => f.length >= 4 && f[0] !== '' && !f[0]!.startsWith('#'))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '' }));
}

function parseGroup(text: string | undefined): GroupEntry[] {
  return (text ?? '').split('\n').map((l) => l.split(':')).filter((f) => f.length >= 3 && f[0] !== '' && !f[0]!.startsWith('#'))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }));
}

/** A resolved identity; `home` is what runc sets HOME to when the environment has none. */
export interface Identity { uid: number; gid: number; groups: number[]; home: string }

/**
 * Resolves `USER` (`name`, `uid`, `name:group`, `uid:gid`) in the image's own /etc/passwd and
 * /etc/group, as runc does: a name must exist; a numeric uid need not (gid 0 then); the
 * supplementary groups are those listing the user. The home folder is that of the first
 * passwd entry with the resolved uid (runc looks the numeric `uid:gid` up again), else `/`.
 */
export async function resolveUser(lowerDirs: string[], spec: string): Promise<Identity> {
  const passwd = parsePasswd(await readFileFromLayers(lowerDirs, 'etc/passwd'));
  const homeOf = (uid: number): string => passwd.find((p) => p.uid === uid)?.home || '/';
  if (spec === '') return { uid: 0, gid: 0, groups: [], home: homeOf(0) };
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const groups = parseGroup(await readFileFromLayers(lowerDirs, 'etc/group'));
  let uid: number;
  let gid = 0;
  let name: string | undefined;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    const e = passwd.find((p) => p.uid === uid);
    if (e) { gid = e.gid; name = e.name; }
  } else {
    const e = passwd.find((p) => p.name === u);
    if (!e) throw new SlipwayError('ERR_NO_SUCH_USER', `unable to find user ${u}: no matching entries in passwd file`);
    uid = e.uid; gid = e.gid; name = e.name;
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const ge = groups.find((x) => x.name === g);
      if (!ge) throw new SlipwayError('ERR_NO_SUCH_USER', `unable to find group ${g}: no matching entries in group file`);
      gid = ge.gid;
    }
  }
  const extra = name ? groups.filter((x) => x.members.includes(name!)).map((x) => x.gid) : [];
  return { uid, gid, groups: [...new Set([gid, ...extra])], home: homeOf(uid) };
}

/**
 * Resolves `COPY --chown` as Docker's legacy builder does: a lone user name takes the group of
 * the same name (not the user's primary group), a lone uid takes gid = uid.
 */
export async function resolveChown(lowerDirs: string[], spec: string): Promise<{ uid: number; gid: number }> {
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const passwd = parsePasswd(await readFileFromLayers(lowerDirs, 'etc/passwd'));
  const groups = parseGroup(await readFileFromLayers(lowerDirs, 'etc/group'));
  const fail = (what: string, n: string) =>
    new SlipwayError('ERR_NO_SUCH_USER', `unable to convert uid/gid chown string to host mapping: can't find ${what} for ${what === 'uid' ? 'user' : 'group'} ${n}: no such ${what === 'uid' ? 'user' : 'group'}: ${n}`);
  const uidOf = (n: string): number => {
    if (/^\d+$/.test(n)) return Number(n);
    const e = passwd.find((p) => p.name === n);
    if (!e) throw fail('uid', n);
    return e.uid;
  };
  const gidOf = (n: string): number => {
    if (/^\d+$/.test(n)) return Number(n);
    const e = groups.find((x) => x.name === n);
    if (!e) throw fail('gid', n);
    return e.gid;
  };
  const uid = uidOf(u);
  return { uid, gid: gidOf(g ?? u) };
}

/**
 * WORKDIR without a sandbox: creates the folder's missing components in `upperDir` as overlay
 * would (existing parents copied up with their mode, owner and times; new ones 0755 root).
 * Returns false when a component is a symlink or a file, which needs the real rootfs.
 */
export async function mkdirInUpper(lowerDirs: string[], upperDir: string, dir: string): Promise<boolean> {
  const parts = dir.split('/').filter((p) => p !== '' && p !== '.');
  const plan: Array<{ rel: string; st: import('node:fs').Stats | undefined }> = [];
  const view = new LayerView(lowerDirs);
  for (let i = 1; i <= parts.length; i++) {
    const rel = parts.slice(0, i).join('/');
    // What the overlay would show: a whiteout deletes, an opaque folder hides what lies below.
    const st = view.lstat(rel);
    if (st === undefined) {
      for (let j = i; j <= parts.length; j++) plan.push({ rel: parts.slice(0, j).join('/'), st: undefined });
      break;
    }
    if (!st.isDirectory()) return false;
    plan.push({ rel, st });
  }
  if (plan.every((p) => p.st !== undefined)) return true; // it exists: nothing changes
  const now = new Date();
  for (const p of plan) {
    const host = path.join(upperDir, ...p.rel.split('/'));
    await fs.mkdir(host);
    await fs.chmod(host, p.st ? p.st.mode & 0o7777 : 0o755);
    await fs.lchown(host, p.st?.uid ?? 0, p.st?.gid ?? 0);
  }
  // Times last, children first: creating a child bumps its parent's mtime, as in the overlay.
  for (const p of [...plan].reverse()) {
    const host = path.join(upperDir, ...p.rel.split('/'));
    await fs.utimes(host, now, now);
  }
  return true;
}
