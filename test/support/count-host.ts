/**
 * Test helper: an independent witness of what build steps execute. A small HTTP server runs in
 * its own network namespace (a "host" on the far end of a veth pair, with an address on a
 * private /30), as a machine on the network would: a RUN step reports itself with
 * `wget http://ADDR:PORT/hit/NAME`, and the test reads the counts from the server, not from
 * Slipway's output. It stays valid under a stricter sandbox, since a step with outbound network
 * access (Docker's bridge, slirp) still reaches other hosts, and nothing the step does inside its
 * own filesystem can fake a hit. The first `/hit/NAME` answers `slow` and later ones `fast`, so
 * a step can make only its first execution linger (to be killed mid-step).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';

/** A running counting host. */
export interface CountHost {
  /** `http://ADDR:PORT`, reachable from this machine and from steps with network access. */
  url: string;
  /** How many times each `/hit/NAME` was requested. */
  counts(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

const SERVER = `
const http = require('node:http');
const counts = {};
const server = http.createServer((req, res) => {
  if (req.url === '/counts') return res.end(JSON.stringify(counts));
  const m = /^\\/hit\\/([\\w.-]+)$/.exec(req.url);
  if (!m) { res.statusCode = 404; return res.end(); }
  counts[m[1]] = (counts[m[1]] || 0) + 1;
  res.end(counts[m[1]] === 1 ? 'slow' : 'fast');
});
server.listen(0, process.argv[1], () => console.log('port ' + server.address().port));
`;

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Why a counting host cannot be made here (no root, no `ip`, no netns), or undefined. */
export function countHostMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  try {
    const probe = `slw-probe-${process.pid}`;
    ip(['netns', 'add', probe]);
    ip(['netns', 'del', probe]);
    return undefined;
  } catch (e) {
    return `cannot make a network namespace: ${(e as Error).message.split('\n')[0]}`;
  }
}

/** Starts a counting host in a fresh network namespace joined to this one by a veth pair. */
export async function startCountHost(): Promise<CountHost> {
  const tag = crypto.randomBytes(3).toString('hex');
  const ns = `slw-count-${tag}`;
  const [outer, inner] = [`slwc${tag}a`, `slwc${tag}b`];
  // A random private /30, so that parallel runs do not collide.
  const net = `10.${200 + crypto.randomInt(50)}.${crypto.randomInt(256)}.${4 * crypto.randomInt(64)}`;
  const base = net.split('.').map(Number);
  const [hostAddr, nsAddr] = [1, 2].map((k) => [...base.slice(0, 3), base[3]! + k].join('.'));
  ip(['netns', 'add', ns]);
  let server: ChildProcess | undefined;
  const cleanup = (): void => {
    server?.kill('SIGKILL');
    try { ip(['netns', 'del', ns]); } catch { /* already gone */ }
    try { ip(['link', 'del', outer]); } catch { /* gone with the namespace */ }
  };
  try {
    ip(['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
    ip(['link', 'set', inner, 'netns', ns]);
    ip(['addr', 'add', `${hostAddr}/30`, 'dev', outer]);
    ip(['link', 'set', outer, 'up']);
    ip(['-n', ns, 'addr', 'add', `${nsAddr}/30`, 'dev', inner]);
    ip(['-n', ns, 'link', 'set', inner, 'up']);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    server = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER, nsAddr!], { stdio: ['ignore', 'pipe', 'inherit'] });
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      server!.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /port (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      server!.once('exit', (code) => reject(new Error(`counting server exited (${code})`)));
    });
    const url = `http://${nsAddr}:${port}`;
    return {
      url,
      counts: () => new Promise((resolve, reject) => {
        http.get(`${url}/counts`, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve(JSON.parse(body) as Record<string, number>));
        }).on('error', reject);
      }),
      stop: async () => cleanup(),
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}
