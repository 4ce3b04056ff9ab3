import fs from 'node:fs/promises';
import crypto from 'node:crypto';
import { SlipwayError } from '../errors.js';
import { TENANT_NAME } from '../farm/namespace.js';

/**
 * Who a request is: the tenant its bearer token maps to, and whether that tenant is the
 * operator (who may use the server's own store through the Engine API; other tenants reach only
 * the farm's endpoints, whose jobs, caches and layers are namespaced by tenant).
 */
export interface Principal {
  tenant: string;
  operator: boolean;
}


const MIN_TOKEN_LENGTH = 16;

/** The token is never kept or compared as text: its sha256 is the table's key. */
const digest = (token: string) => crypto.createHash('sha256').update(token).digest('hex');

/**
 * Parses a tokens file: one `TENANT TOKEN [operator]` per line, `#` comments and blank lines
 * ignored. Throws one line naming `FILE:N` for a malformed line, a bad tenant name, a short
 * token, or a token listed twice.
 */
export function parseTenantTokens(text: string, file: string): Map<string, Principal> {
  const table = new Map<string, Principal>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    const where = `${file}:${i + 1}`;
    const [tenant, token, role, ...rest] = line.split(/\s+/);
    if (!tenant || !token || rest.length > 0 || (role !== undefined && role !== 'operator')) {
      throw new SlipwayError('ERR_INVALID_OPTION', `${where}: expected "TENANT TOKEN [operator]"`);
    }
    if (!TENANT_NAME.test(tenant)) throw new SlipwayError('ERR_INVALID_OPTION', `${where}: invalid tenant ${JSON.stringify(tenant)}: lower-case letters and digits, separated by '_' or '-', at most 63`);
    if (token.length < MIN_TOKEN_LENGTH) throw new SlipwayError('ERR_INVALID_OPTION', `${where}: the token must have at least ${MIN_TOKEN_LENGTH} characters`);
    const key = digest(token);
    if (table.has(key)) throw new SlipwayError('ERR_INVALID_OPTION', `${where}: this token is already listed`);
    table.set(key, { tenant, operator: role === 'operator' });
  }
  return table;
}

interface FileStamp { mtimeMs: number; size: number; ino: number }

/**
 * The bearer tokens of `serve` (`--tenants-file`), reloadable without a restart: `reload()`
 * (serve calls it on SIGHUP) and a stat of the file at most once a second on lookup, so an
 * edited file is in force within a second. A file that no longer parses keeps the previous
 * table in force (and says why through `log`), so a typo never locks every tenant out.
 */
export class TenantTokens {
  private table: Map<string, Principal>;
  private stamp: FileStamp;
  private checkedAt = Date.now();

  private constructor(readonly file: string, loaded: { table: Map<string, Principal>; stamp: FileStamp }, private readonly log: (l: string) => void) {
    this.table = loaded.table;
    this.stamp = loaded.stamp;
  }

  static async open(file: string, log: (l: string) => void = () => undefined): Promise<TenantTokens> {
    return new TenantTokens(file, await TenantTokens.read(file), log);
  }

  private static async read(file: string): Promise<{ table: Map<string, Principal>; stamp: FileStamp }> {
    let text: string;
    let st: import('node:fs').Stats;
    try {
      st = await fs.stat(file);
      text = await fs.readFile(file, 'utf8');
    } catch (e) {
      throw new SlipwayError('ERR_INVALID_OPTION', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if ((st.mode & 0o077) !== 0) process.stderr.write(`warning: ${file} is readable by other users (chmod 600 it)\n`);
    return { table: parseTenantTokens(text, file), stamp: { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino } };
  }

  /** Reads the file again; on failure the table in force stays. Resolves true when it changed. */
  async reload(): Promise<boolean> {
    try {
      const next = await TenantTokens.read(this.file);
      this.table = next.table;
      this.stamp = next.stamp;
      this.log(`tenants: ${this.file} reloaded (${this.table.size} tokens)`);
      return true;
    } catch (e) {
      this.log(`tenants: ${this.file} not reloaded, the previous tokens stay in force: ${(e as Error).message}`);
      return false;
    }
  }

  private async reloadIfChanged(): Promise<void> {
    if (Date.now() - this.checkedAt < 1000) return;
    this.checkedAt = Date.now();
    const st = await fs.stat(this.file).catch(() => undefined);
    if (!st) return;
    if (st.mtimeMs === this.stamp.mtimeMs && st.size === this.stamp.size && st.ino === this.stamp.ino) return;
    // Stamped first: a file that does not parse is reported once, not every second.
    this.stamp = { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino };
    await this.reload();
  }

  /** The principal a token stands for, or undefined. */
  async lookup(token: string): Promise<Principal | undefined> {
    await this.reloadIfChanged();
    return this.table.get(digest(token));
  }
}
