import type { AttachedIo, AttachedStart } from '../sandbox/console.js';

const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/**
 * `slipway run -t` on a terminal: the container's pty is relayed (the runtime hands it over a
 * console socket, see src/sandbox/console.ts) instead of being run by the runtime on ours, so
 * that a resize of our terminal reaches the container. Our terminal is raw while it runs (^C
 * is a byte for the container's pty, as with docker run -t); `stop()` restores it.
 */
export function terminalAttach(stdin: boolean): { attach: AttachedIo; onOutput: (chunk: Buffer) => void; stop: () => void } {
  const out = process.stdout;
  const input = process.stdin;
  let io: AttachedStart | undefined;
  const onResize = () => io?.resize(out.rows, out.columns);
  const forward = (sig: NodeJS.Signals) => io?.kill(sig);
  const wasRaw = input.isTTY ? input.isRaw : false;
  const attach: AttachedIo = {
    tty: true,
    stdin,
    ...(out.rows ? { size: { rows: out.rows, cols: out.columns } } : {}),
    onStart: (started) => {
      io = started;
      if (stdin && started.stdin) {
        if (input.isTTY) input.setRawMode(true);
        input.pipe(started.stdin);
      }
      out.on('resize', onResize);
    },
  };
  for (const s of FORWARDED) process.on(s, forward);
  return {
    attach,
    onOutput: (chunk) => out.write(chunk),
    stop: () => {
      out.off('resize', onResize);
      for (const s of FORWARDED) process.off(s, forward);
      if (stdin) {
        input.unpipe();
        if (input.isTTY) input.setRawMode(wasRaw);
        input.pause();
      }
    },
  };
}
