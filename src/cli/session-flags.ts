/**
 * `--secret` and `--ssh`, as `docker buildx build` takes them:
 *
 *   --secret id=ID,src=FILE      (also source=, type=file)   the file's bytes
 *   --secret id=ID,env=VAR       (also type=env,src=VAR)      an environment variable's value
 *   --secret id=ID                                            the variable ID, else the file ID
 *   --ssh ID[=SOCKET|KEYFILE[,KEYFILE...]]                    an agent socket ($SSH_AUTH_SOCK
 *                                                             without a value), or private keys
 *                                                             served by an ssh-agent of our own
 *
 * Values are read once, here, and kept in memory; messages name ids and files, never values.
 */
import fs from 'node:fs/promises';
import { statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { SlipwayError } from '../errors.js';
import { hostTool } from '../snapshot/host-tools.js';
import { parseAllow } from '../sandbox/limits.js';

function usage(msg: string): SlipwayError {
  return new SlipwayError('ERR_USAGE', msg);
}

function fields(spec: string, flag: string): Map<string, string> {
  const kv = new Map<string, string>();
  for (const f of spec.split(',')) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw usage(`invalid --${flag} "${spec}": fields are key=value`);
    kv.set(f.slice(0, eq).trim().toLowerCase(), f.slice(eq + 1));
  }
  return kv;
}

async function readSecretFile(file: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `open ${file}: ${code === 'ENOENT' ? 'no such file or directory' : code === 'EISDIR' ? 'is a directory' : (e as Error).message}`);
  }
}

/** One `--secret` value: its id and bytes. */
async function parseSecret(spec: string): Promise<[string, Buffer]> {
  const kv = fields(spec, 'secret');
  const id = kv.get('id');
  if (!id) throw usage(`invalid --secret "${spec}": id=ID is required`);
  for (const k of kv.keys()) if (!['id', 'src', 'source', 'env', 'type'].includes(k)) throw usage(`invalid --secret "${spec}": unexpected key "${k}"`);
  const type = kv.get('type') ?? (kv.has('env') ? 'env' : kv.has('src') || kv.has('source') ? 'file' : undefined);
  const src = kv.get('src') ?? kv.get('source');
  if (type === 'env' || (type === undefined && process.env[id] !== undefined)) {
    const name = kv.get('env') ?? src ?? id;
    const v = process.env[name];
    if (v === undefined) throw usage(`--secret id=${id}: the environment variable ${name} is not set`);
    return [id, Buffer.from(v)];
  }
  if (type !== undefined && type !== 'file') throw usage(`invalid --secret "${spec}": type is file or env`);
  return [id, await readSecretFile(src ?? id)];
}

/** Every `--secret` of a command line, by id. */
export async function parseSecrets(specs: readonly string[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const s of specs) {
    const [id, value] = await parseSecret(s);
    out.set(id, value);
  }
  return out;
}

/** Agents given with `--ssh`, and what to stop when the build is over. */
export interface SshAgents { sockets: Map<string, string>; close(): Promise<void> }

function isSocket(p: string): boolean {
  try {
    return statSync(p).isSocket();
  } catch {
    return false;
  }
}

/** An ssh-agent of our own holding `keys` (copied to a private 0600 file first, as ssh-add insists). */
async function agentWithKeys(id: string, keys: string[], dir: string, children: ChildProcess[]): Promise<string> {
  const sock = path.join(dir, `${id.replace(/[^A-Za-z0-9_.-]/g, '_')}.sock`);
  const agent = spawn(hostTool('ssh-agent'), ['-D', '-a', sock], { stdio: 'ignore' });
  children.push(agent);
  for (let i = 0; i < 100 && !isSocket(sock); i++) await new Promise((r) => setTimeout(r, 20));
  if (!isSocket(sock)) throw new SlipwayError('ERR_SANDBOX', `--ssh ${id}: ssh-agent did not start`);
  for (const [i, key] of keys.entries()) {
    const copy = path.join(dir, `key-${i}`);
    await fs.writeFile(copy, await readSecretFile(key), { mode: 0o600 });
    const r = spawnSync(hostTool('ssh-add'), ['-q', copy], { env: { SSH_AUTH_SOCK: sock }, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    await fs.rm(copy, { force: true });
    if (r.status !== 0) throw usage(`--ssh ${id}: ${key} is not a private key ssh-add can load (${(r.stderr || '').trim().split('\n')[0]})`);
  }
  return sock;
}

/** Every `--ssh` of a command line: agent sockets by id (starting agents for key files). */
export async function parseSsh(specs: readonly string[]): Promise<SshAgents> {
  const sockets = new Map<string, string>();
  const children: ChildProcess[] = [];
  let dir: string | undefined;
  const close = async () => {
    for (const c of children) c.kill('SIGTERM');
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    for (const spec of specs) {
      const eq = spec.indexOf('=');
      const id = eq < 0 ? spec : spec.slice(0, eq);
      if (!/^[A-Za-z0-9_.-]+$/.test(id)) throw usage(`invalid --ssh "${spec}": ID[=SOCKET|KEY[,KEY...]]`);
      const paths = eq < 0 ? [] : spec.slice(eq + 1).split(',').filter(Boolean);
      if (paths.length === 0) {
        const sock = process.env['SSH_AUTH_SOCK'];
        if (!sock) throw usage(`--ssh ${id}: SSH_AUTH_SOCK is not set (give a socket or key file: --ssh ${id}=PATH)`);
        paths.push(sock);
      }
      if (paths.length === 1 && isSocket(paths[0]!)) {
        sockets.set(id, path.resolve(paths[0]!));
        continue;
      }
      dir ??= await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-ssh-'));
      sockets.set(id, await agentWithKeys(id, paths, dir, children));
    }
    return { sockets, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** What `build` takes from `--secret`, `--ssh` and `--allow`, ready for BuildOptions; `close` stops the agents. */
export async function sessionInputs(v: { secret?: string[]; ssh?: string[]; allow?: string[] }): Promise<{
  build: { secrets: Map<string, Buffer>; ssh: Map<string, string>; allowInsecure: boolean }; close: () => Promise<void>;
}> {
  const allowInsecure = parseAllow(v.allow).includes('security.insecure');
  const secrets = await parseSecrets(v.secret ?? []);
  // Last: it may start ssh-agents, which `close` stops.
  const agents = await parseSsh(v.ssh ?? []);
  return { build: { secrets, ssh: agents.sockets, allowInsecure }, close: agents.close };
}
