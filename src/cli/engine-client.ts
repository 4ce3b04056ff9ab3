import fs from 'node:fs/promises';
import path from 'node:path';
import { SlipwayError, fromPlainError } from '../errors.js';
import type { BuildEvent } from '../scheduler/progress.js';
import type { StoreLayout } from '../store/layout.js';
import { NdjsonAnswer } from './ndjson-answer.js';
import type { LocalBuildMessage, LocalBuildRequest } from '../api/local-build-route.js';

/**
 * The running engine of this root: `slipway serve` listening on `<root>/slipway.sock` (its
 * default, owned by root), as `docker` finds `dockerd`. Undefined when nobody answers there,
 * when the socket is not root's, or when SLIPWAY_ENGINE=off asks for an in-process build.
 */
export async function runningEngine(layout: StoreLayout): Promise<string | undefined> {
  if (process.env['SLIPWAY_ENGINE'] === 'off') return undefined;
  const sock = path.join(path.resolve(layout.root), 'slipway.sock');
  // No socket file, no engine: an in-process build then never loads the network modules. A
  // socket another user made (in a folder they can write) is not root's engine: not used.
  const st = await fs.lstat(sock).catch(() => undefined);
  if (!st?.isSocket() || st.uid !== 0) return undefined;
  const net = await import('node:net');
  return new Promise((resolve) => {
    const c = net.connect(sock);
    const done = (ok: boolean) => { c.destroy(); resolve(ok ? sock : undefined); };
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
  });
}

/**
 * Builds through the running engine: the request names the context folder, and every event
 * comes back for the caller to render, so the output is the same as an in-process build's.
 * Aborting `signal` (Ctrl-C) closes the connection, which cancels the build in the engine.
 *
 * HTTP/1.1 is spoken over the socket directly (ndjson-answer.ts reads the answer) rather than
 * with node:http: loading node:http (and the undici it pulls in) cost a warm build through the
 * engine about a fifth of its time, for one request whose answer is a stream of lines.
 */
export async function buildThroughEngine(sock: string, r: LocalBuildRequest, onEvent: (e: BuildEvent) => void, signal: AbortSignal): Promise<{ id: string }> {
  const net = await import('node:net');
  const body = Buffer.from(JSON.stringify(r));
  const head = `POST /slipway/v1/local-builds HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let settled = false;
    const settle = (f: () => void) => { if (!settled) { settled = true; signal.removeEventListener('abort', onAbort); c.destroy(); f(); } };
    const onAbort = () => settle(() => reject(new SlipwayError('ERR_CANCELLED', 'build cancelled')));
    signal.addEventListener('abort', onAbort, { once: true });
    const answer = new NdjsonAnswer((status, text) => settle(() => reject(new SlipwayError('ERR_INTERNAL', `the engine at ${sock} refused the build (${status}): ${text.trim()}`))), (line) => {
      const m = JSON.parse(line) as LocalBuildMessage;
      if ('event' in m) onEvent(m.event);
      else if ('done' in m) settle(() => resolve(m.done));
      else settle(() => reject(fromPlainError(m.error)));
    });
    c.on('connect', () => { c.write(head); c.write(body); });
    c.on('data', (d: Buffer) => { try { answer.push(d); } catch (e) { settle(() => reject(new SlipwayError('ERR_INTERNAL', `the engine at ${sock} sent a malformed answer: ${(e as Error).message}`))); } });
    c.on('error', (e) => settle(() => reject(new SlipwayError('ERR_INTERNAL', `the engine at ${sock} went away: ${e.message}`))));
    c.on('close', () => { answer.end(); settle(() => reject(new SlipwayError('ERR_INTERNAL', `the engine at ${sock} ended the build without a result`))); });
    if (signal.aborted) onAbort();
  });
}
