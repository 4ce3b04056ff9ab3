/**
 * The terminal of a container attached through the API (`docker run -t` via `slipway serve`):
 * the client is a socket, not a terminal, so the runtime hands the pty's master end over a
 * console socket to `slipway-console` (native/console-relay.c), which relays it to pipes and
 * sets the window size when told ("ROWS COLS\n" on its control fd).
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Writable } from 'node:stream';
import { SlipwayError } from '../errors.js';
import type { IdMapping } from './userns.js';

/** What a caller gets once an attached container has started. */
export interface AttachedStart {
  /** The container's stdin (with `stdin`), else null. */
  stdin: Writable | null;
  /** Sets the pty's size (with `tty`; otherwise does nothing). */
  resize: (rows: number, cols: number) => void;
  /** Sends a signal to the container's process (through the shim and the runtime). */
  kill: (sig: NodeJS.Signals) => void;
}

/** A container's stdio on pipes, for the API: output comes through `onOutput`. */
export interface AttachedIo {
  tty: boolean;
  stdin: boolean;
  /** The pty's size at start (`-t`). */
  size?: { rows: number; cols: number };
  onStart: (io: AttachedStart) => void;
}

/** The fd of the relay's control pipe. */
export const CONSOLE_CONTROL_FD = 4;

function relayPath(): string {
  const p = fileURLToPath(new URL('../../native/slipway-console', import.meta.url));
  if (!fs.existsSync(p)) throw new SlipwayError('ERR_SANDBOX', `${p} is missing: run "npm run build" (it compiles native/console-relay.c)`);
  return p;
}

/** Folders left by a process that was killed (named after its pid) are removed. */
function sweepStale(): void {
  for (const n of fs.readdirSync('/run')) {
    const m = /^slipway-console-(\d+)-[0-9a-f]{16}$/.exec(n);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') fs.rmSync(path.join('/run', n), { recursive: true, force: true });
    }
  }
}

/** A console socket for one container, and the relay command line that wraps the shim's. */
export interface ConsoleSocket {
  socket: string;
  wrap: (argv: string[]) => string[];
  remove: () => void;
}

/**
 * The socket lives in a fresh folder under /run, mode 0700 and owned by the container's root
 * (the runtime connects from inside the user namespace), so no other user can connect first.
 */
export function consoleSocket(m: IdMapping | undefined): ConsoleSocket {
  sweepStale();
  const dir = path.join('/run', `slipway-console-${process.pid}-${crypto.randomBytes(8).toString('hex')}`);
  fs.mkdirSync(dir, { mode: 0o700 });
  if (m) fs.chownSync(dir, m.uid.host, m.gid.host);
  const socket = path.join(dir, 'c.sock');
  return {
    socket,
    wrap: (argv) => [relayPath(), socket, String(CONSOLE_CONTROL_FD), '--', ...argv],
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
