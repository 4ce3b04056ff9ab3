import fs from 'node:fs/promises';
import path from 'node:path';
import { SlipwayError, fromPlainError } from '../errors.js';
import type { BuildEvent } from '../scheduler/progress.js';
import type { StoreLayout } from '../store/layout.js';
import type { LocalBuildMessage, LocalBuildRequest } from '../api/local-build-route.js';

/**
 * The running engine of this root: `slipway serve` listening on `<root>/slipway.sock` (its
 * default), as `docker` finds `dockerd`. Undefined when nobody answers there, or when
 * SLIPWAY_ENGINE=off asks for an in-process build.
 */
export async function runningEngine(layout: StoreLayout): Promise<string | undefined> {
  if (process.env['SLIPWAY_ENGINE'] === 'off') return undefined;
  const sock = path.join(path.resolve(layout.root), 'slipway.sock');
  // No socket file, no engine: an in-process build then never loads the network modules.
  if (!(await fs.lstat(sock).catch(() => undefined))?.isSocket()) return undefined;
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
 */
export async function buildThroughEngine(sock: string, r: LocalBuildRequest, onEvent: (e: BuildEvent) => void, signal: AbortSignal): Promise<{ id: string }> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(r);
    const req = http.request({ socketPath: sock, method: 'POST', path: '/slipway/v1/local-builds', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }, signal });
    req.on('error', (e) => reject(signal.aborted ? new SlipwayError('ERR_CANCELLED', 'build cancelled') : new SlipwayError('ERR_INTERNAL', `the engine at ${sock} went away: ${e.message}`)));
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        let text = '';
        res.on('data', (d: Buffer) => { text += d.toString(); });
        res.on('end', () => reject(new SlipwayError('ERR_INTERNAL', `the engine at ${sock} refused the build: ${text.trim()}`)));
        return;
      }
      let buf = '';
      let settled = false;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const m = JSON.parse(buf.slice(0, nl)) as LocalBuildMessage;
          buf = buf.slice(nl + 1);
          if ('event' in m) onEvent(m.event);
          else if ('done' in m) { settled = true; resolve(m.done); }
          else { settled = true; reject(fromPlainError(m.error)); }
        }
      });
      res.on('end', () => { if (!settled) reject(new SlipwayError('ERR_INTERNAL', `the engine at ${sock} ended the build without a result`)); });
    });
    req.end(body);
  });
}
