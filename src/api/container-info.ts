import { boolParam, sendJson } from './body.js';
import { badParameter } from './http-errors.js';
import type { Container } from './container.js';
import type { ContainerApiContext as ApiContext, ContainerApiRequest as ApiRequest } from './container-context.js';

function command(c: Container): string {
  return [...(c.req.entrypoint ?? []), ...(c.req.cmd ?? [])].join(' ');
}

function status(c: Container): string {
  if (c.state === 'created') return 'Created';
  if (c.state === 'running') return 'Up';
  return `Exited (${c.exitCode})`;
}

/** `GET /containers/json` (`docker ps`): running ones, or all with `all=1`. */
export async function listContainersRoute({ res, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  if (query.get('filters') && query.get('filters') !== '{}') throw badParameter('slipway does not filter containers');
  const all = boolParam(query, 'all');
  const out = ctx.containers.list().filter((c) => all || c.state === 'running').map((c) => ({
    Id: c.id, Names: [`/${c.name}`], Image: c.req.image, ImageID: `sha256:${c.imageId}`, Command: command(c),
    Created: Math.floor(Date.parse(c.created) / 1000), Ports: [], Labels: c.req.labels, State: c.state, Status: status(c),
    HostConfig: { NetworkMode: c.req.network }, NetworkSettings: { Networks: {} }, Mounts: [],
  }));
  sendJson(res, 200, out);
}

/** `GET /containers/{id}/json`: the parts of Docker's inspect that Slipway's containers have. */
export async function inspectContainerRoute({ res, name }: ApiRequest, ctx: ApiContext): Promise<void> {
  const c = ctx.containers.get(name);
  sendJson(res, 200, {
    Id: c.id, Name: `/${c.name}`, Created: c.created, Image: `sha256:${c.imageId}`, Path: c.req.entrypoint?.[0] ?? c.req.cmd?.[0] ?? '',
    Args: [...(c.req.entrypoint ?? []), ...(c.req.cmd ?? [])].slice(1),
    State: {
      Status: c.state, Running: c.state === 'running', Paused: false, Restarting: false, OOMKilled: false, Dead: false, Pid: 0,
      ExitCode: c.exitCode, Error: '', StartedAt: c.startedAt || '0001-01-01T00:00:00Z', FinishedAt: c.finishedAt || '0001-01-01T00:00:00Z',
    },
    Config: {
      Hostname: c.req.hostname || c.id.slice(0, 12), User: c.req.user, Tty: c.req.tty, OpenStdin: c.req.openStdin, StdinOnce: c.req.stdinOnce,
      Env: c.req.env, Cmd: c.req.cmd, Entrypoint: c.req.entrypoint, Image: c.req.image, WorkingDir: c.req.workingDir, Labels: c.req.labels,
    },
    HostConfig: { AutoRemove: c.req.autoRemove, NetworkMode: c.req.network },
    Mounts: [], NetworkSettings: { Networks: {} },
  });
}
