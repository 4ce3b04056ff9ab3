import crypto from 'node:crypto';
import type { NetworkMode } from '../sandbox/oci-spec.js';
import { SlipwayError, dockerfileError } from '../errors.js';
import { cloneConfig, containerEnv, type ContainerConfigJson } from '../image-config.js';
import { predefinedRunArgs, runBuildArgs, shellOf, type StageState } from '../dockerfile/metadata.js';
import type { RunStep } from '../dockerfile/step.js';
import { resolveUser } from '../snapshot/rootfs.js';
import type { BuildRun } from './run-types.js';
import { finishOptions, type LayerWork } from './layer-work.js';
import { checkSecurity, mountEnv, prepareRunMounts, withMounts } from './run-mounts.js';
import { fromLowerDirs } from './resolve-copy.js';

function runArgv(step: RunStep, config: ContainerConfigJson): string[] {
  if (step.form === 'exec') return step.exec;
  const shell = shellOf(config);
  if (step.heredocs.length > 0) {
    // `RUN <<EOF` alone runs the heredoc as the script; otherwise the shell sees the heredocs.
    if (/^<<-?["']?[A-Za-z0-9_.-]+["']?$/.test(step.shell.trim()) && step.heredocs.length === 1) {
      return [...shell, step.heredocs[0]!.content];
    }
    const bodies = step.heredocs.map((h) => `${h.content}${h.name}\n`).join('');
    return [...shell, `${step.shell}\n${bodies}`];
  }
  return [...shell, step.shell];
}

/**
 * The network a RUN gets: its own `--network=`, else the build's. The host's network is an
 * entitlement (`--allow network.host` on serve and worker; a local build as root may ask).
 */
function runNetwork(run: BuildRun, step: RunStep): NetworkMode {
  const asked = step.network ?? run.opts.network ?? 'default';
  if (asked !== 'host' && asked !== 'none' && asked !== 'default') {
    throw dockerfileError('ERR_DOCKERFILE_SYNTAX', run.plan.file, step.line, `unsupported network mode: ${asked} (default, none or host)`);
  }
  if (asked === 'host' && !run.opts.allowHostNetwork) {
    const how = step.network === 'host' ? 'RUN --network=host' : '--network host';
    throw dockerfileError('ERR_DOCKERFILE_SYNTAX', run.plan.file, step.line, `${how} is not allowed: the host network needs the network.host entitlement (--allow network.host)`);
  }
  return asked;
}

export async function prepareRun(run: BuildRun, state: StageState, step: RunStep, lowerDirs: string[]): Promise<LayerWork> {
  const config = cloneConfig(state.config);
  const argv = runArgv(step, config);
  const args = runBuildArgs(state);
  const cmd = args.length > 0 ? [`|${args.length}`, ...args, ...argv] : argv;
  const mode = runNetwork(run, step);
  const insecure = checkSecurity(run.plan.file, step, run.opts.allowInsecure);
  const mounts = await prepareRunMounts(mountEnv(run.opts, { file: run.plan.file, escape: run.escape, context: run.context, resolveFrom: (f, l) => fromLowerDirs(run, f, l) }), state, step);
  let ident;
  try {
    ident = await resolveUser(lowerDirs, config.User);
  } catch (e) {
    if (e instanceof SlipwayError) throw dockerfileError(e.code, run.plan.file, step.line, e.message);
    throw e;
  }
  // Docker's legacy builder names the container's hostname after its id, and every RUN (one
  // from an ONBUILD trigger too) gets the daemon's default PATH, HOSTNAME and HOME.
  const container = crypto.randomBytes(32).toString('hex');
  const hostname = container.slice(0, 12);
  const env = containerEnv([...(config.Env ?? []), ...args, ...predefinedRunArgs(state)], { hostname, home: ident.home });
  return {
    config,
    cmd,
    // Mounts and --security join the key only when given: a plain RUN keeps the key it had.
    keyExtra: { network: mode, ...(mounts.keyExtra.length > 0 ? { mounts: mounts.keyExtra } : {}), ...(insecure ? { security: 'insecure' } : {}) },
    displayCmd: argv.join(' '),
    container,
    execute: (onOutput) => withMounts(mounts, (opened) => run.opts.executor.runStep({
      type: 'run', tmpRoot: run.opts.layout.tmp, lowerDirs, argv, env: [...env, ...opened.env], uid: ident.uid, gid: ident.gid, groups: ident.groups,
      cwd: config.WorkingDir || '/', network: mode, volumes: Object.keys(config.Volumes ?? {}), hostname, mounts: opened.mounts, insecure,
      driver: run.opts.storageDriver ?? 'overlay', ...(run.opts.sandbox ? { sandbox: run.opts.sandbox } : {}),
      ...finishOptions(run),
    }, onOutput, run.opts.signal)),
  };
}

