/** The part of tar-fs 3.1.3 Slipway uses (packing build contexts); it ships no types. */
declare module 'tar-fs' {
  import type { Readable } from 'node:stream';
  export interface PackOptions {
    sort?: boolean;
    umask?: number;
    ignore?: (name: string) => boolean;
    /** Paths (relative to cwd) to start from instead of `.`; folders among them are walked. */
    entries?: string[];
    map?: (header: { name: string; uid: number; gid: number; uname?: string; gname?: string; mode?: number; mtime?: Date }) => unknown;
    dereference?: boolean;
    strict?: boolean;
  }
  export function pack(cwd: string, opts?: PackOptions): Readable;
  const tarFs: { pack: typeof pack };
  export default tarFs;
}
