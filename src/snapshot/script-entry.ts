/**
 * The program that runs a COPY/ADD script against a mounted rootfs. `sandbox.ts` starts it
 * under the shim (native/shim.c), which has mounted the overlay of the step's layers in a
 * private mount namespace (host paths such as the build context stay visible) and is pid 1 of
 * a fresh pid namespace. It connects back to the host over a Unix socket in the scratch dir,
 * reads one JSON request (never argv or env), runs `default(mergedDir, args)` of the named
 * module, and answers with one JSON line. If the host goes away, even by kill -9, the socket
 * closes and this process exits: the shim then exits, and with it the namespaces, so nothing
 * stays mounted or running. Every path the script writes is resolved inside the rootfs.
 */
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { toPlainError, type PlainErrorData } from '../errors.js';

/** Run `default(mergedDir, args)` of a compiled ESM module with the rootfs mounted (COPY/ADD). */
export interface ScriptRequest {
  scriptModule: string;
  args: unknown;
}

/** The one line the entry answers with. */
export type ScriptReply =
  | { type: 'result'; value?: unknown }
  | { type: 'error'; error: PlainErrorData };

/** Env var that tells the entry its scratch dir (not secret; the request comes over the socket). */
export const SCRIPT_DIR_ENV = 'SLIPWAY_NS_DIR';

/** Every path a script run uses inside the caller's scratch dir, spelled once. */
export function scratchLayout(scratchDir: string) {
  return {
    socketName: 'c.sock',
    socket: path.join(scratchDir, 'c.sock'),
    links: path.join(scratchDir, 'l'), // short names for the overlay option string
    work: path.join(scratchDir, 'work'),
    merged: path.join(scratchDir, 'merged'),
    empty: path.join(scratchDir, 'empty'),
  };
}


/** Reads the one request line; keeps reading afterwards so that a close is noticed. */
function readRequest(sock: net.Socket): Promise<ScriptRequest> {
  let buf = '';
  sock.setEncoding('utf8');
  return new Promise((resolve) => {
    const onData = (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      sock.off('data', onData);
      sock.resume();
      resolve(JSON.parse(buf.slice(0, nl)) as ScriptRequest);
    };
    sock.on('data', onData);
  });
}

/** Entry point: connect, read the request, run it, answer, exit (which ends the namespace). */
async function main(): Promise<void> {
  const scratch = process.env[SCRIPT_DIR_ENV];
  if (scratch === undefined) throw new Error(`${SCRIPT_DIR_ENV} is not set`);
  delete process.env[SCRIPT_DIR_ENV];
  process.umask(0o022);
  const layout = scratchLayout(scratch);
  process.chdir(scratch); // a relative socket path dodges the 108-byte sun_path limit
  const sock = net.connect(layout.socketName);
  let finished = false;
  const reply = (r: ScriptReply) => {
    if (finished) return;
    finished = true;
    sock.end(`${JSON.stringify(r)}\n`, () => process.exit(0));
  };
  // The host closed the socket (done, aborted, or killed): take everything down with us.
  const hostGone = () => process.exit(finished ? 0 : 137);
  sock.on('error', hostGone);
  sock.on('close', hostGone);
  const req = await readRequest(sock);
  try {
    const mod = (await import(pathToFileURL(req.scriptModule).href)) as { default?: unknown };
    if (typeof mod.default !== 'function') throw new Error(`${req.scriptModule} has no default export function`);
    const fn = mod.default as (merged: string, args: unknown) => Promise<unknown>;
    reply({ type: 'result', value: await fn(layout.merged, req.args) });
  } catch (e) {
    reply({ type: 'error', error: toPlainError(e) });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    process.stderr.write(`slipway sandbox: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(125);
  });
}
