import path from 'node:path';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import { ensureStore, lowerDirsOf, makeTmpDir, readImage, resolveImage, sweepTmp } from '../store/graph.js';
import { resolveUser } from '../snapshot/rootfs.js';
import { runInSandbox } from '../snapshot/sandbox.js';
import { SANDBOX_FLAGS, limitMessage, parseNetwork, sandboxFromFlags } from '../sandbox/limits.js';
import { containerEnv, envGet } from '../image-config.js';
import { RUN_VALUE_FLAGS } from './run-flags.js';
import { terminalAttach } from './run-terminal.js';
import type { CommandEnv } from './command-env.js';

/** `slipway run`: the image's Entrypoint/Cmd in the sandbox over a throwaway upper layer. */
export async function runCommand(args: string[], { layout }: CommandEnv): Promise<number> {
  // Options end at the image name: what follows is the command, flags included.
  let split = args.length;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('-')) { split = i; break; }
    if (RUN_VALUE_FLAGS.has(a)) i++;
  }
  const { values, positionals: head } = parseArgs({
    args: args.slice(0, Math.min(split + 1, args.length)),
    options: {
      rm: { type: 'boolean' }, interactive: { type: 'boolean', short: 'i' }, tty: { type: 'boolean', short: 't' },
      env: { type: 'string', short: 'e', multiple: true }, user: { type: 'string', short: 'u' }, workdir: { type: 'string', short: 'w' },
      network: { type: 'string' },
      ...SANDBOX_FLAGS,
    },
    allowPositionals: true,
    strict: true,
  });
  const sandbox = sandboxFromFlags(values);
  const network = parseNetwork(values.network);
  const positionals = [...head, ...args.slice(split + 1)];
  if (positionals.length < 1) throw new SlipwayError('ERR_USAGE', '"slipway run" requires at least 1 argument');
  await ensureStore(layout);
  await sweepTmp(layout);
  const id = await resolveImage(layout, positionals[0]!);
  const json = await readImage(layout, id);
  const config = json.config;
  const cmd = positionals.length > 1 ? positionals.slice(1) : config.Cmd ?? [];
  const argv = [...(config.Entrypoint ?? []), ...cmd];
  if (argv.length === 0) throw new SlipwayError('ERR_USAGE', 'No command specified');
  const lowerDirs = await lowerDirsOf(layout, id);
  const ident = await resolveUser(lowerDirs, values.user ?? config.User ?? '');
  let env = [...(config.Env ?? [])];
  for (const e of values.env ?? []) env = [...env.filter((x) => x.split('=')[0] !== e.split('=')[0]), e.includes('=') ? e : `${e}=${process.env[e] ?? ''}`];
  // As docker run -t: a terminal type for programs that draw on the screen (the image's or -e's wins).
  if (values.tty && envGet(env, 'TERM') === undefined) env = ['TERM=xterm', ...env];
  const hostname = crypto.randomBytes(6).toString('hex');
  env = containerEnv(env, { hostname, home: ident.home });
  const dir = await makeTmpDir(layout, 'run');
  // -t on a terminal: the pty is relayed, so that resizing the window reaches the container.
  const term = values.tty && process.stdout.isTTY ? terminalAttach(values.interactive ?? false) : undefined;
  try {
    await fs.mkdir(path.join(dir, 'upper'));
    await fs.mkdir(path.join(dir, 'scratch'));
    const res = await runInSandbox({
      lowerDirs, upperDir: path.join(dir, 'upper'), scratchDir: path.join(dir, 'scratch'), argv, env,
      uid: ident.uid, gid: ident.gid, groups: ident.groups, cwd: values.workdir ?? (config.WorkingDir || '/'),
      hostname, network, sandbox,
      volumes: Object.keys(config.Volumes ?? {}),
      ...(term ? { attach: term.attach, onOutput: term.onOutput } : { interactive: { tty: values.tty ?? false, stdin: values.interactive ?? false } }),
    });
    if (res.limits) process.stderr.write(`slipway: the container ran into its limits: ${limitMessage(res.limits, sandbox)}\n`);
    return res.exitCode;
  } finally {
    term?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
