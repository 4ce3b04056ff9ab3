import os from 'node:os';
import { listImageIds } from '../store/graph.js';
import { sendJson } from './body.js';
import type { ApiRequest, ApiContext } from './api-context.js';

/** The newest Engine API version we speak (docker CLI 28's own default; CLI 29 needs >= 1.40). */
export const API_VERSION = '1.50';
/** The oldest `/vX.Y` prefix we accept, as moby 28 does. */
export const MIN_API_VERSION = '1.24';
/** What `docker version` shows as the server's engine version. */
export const SERVER_VERSION = '0.1.0-slipway';

/**
 * `HEAD|GET /_ping`: the CLI sends it before every command and reads the negotiation headers
 * (`Api-Version`, `Ostype` are set on every response by the server; these are ping's own).
 */
export async function ping({ req, res }: ApiRequest): Promise<void> {
  res.setHeader('Builder-Version', '1');
  res.setHeader('Swarm', 'inactive');
  res.setHeader('Cache-Control', 'no-cache, no-store, must-revalidate');
  res.setHeader('Pragma', 'no-cache');
  const body = req.method === 'HEAD' ? '' : 'OK';
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** `GET /version` in the `SystemVersion` shape CLI 28 renders. */
export async function version({ res }: ApiRequest): Promise<void> {
  const arch = goArch();
  sendJson(res, 200, {
    Platform: { Name: 'Slipway' },
    Components: [{ Name: 'Engine', Version: SERVER_VERSION, Details: { ApiVersion: API_VERSION, MinAPIVersion: MIN_API_VERSION, Os: 'linux', Arch: arch, Experimental: 'false' } }],
    Version: SERVER_VERSION,
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    GitCommit: '',
    GoVersion: `node${process.versions.node}`,
    Os: 'linux',
    Arch: arch,
    KernelVersion: os.release(),
    BuildTime: '',
  });
}

/**
 * `GET /info`: enough for `docker info` and for `docker inspect`, which reads `Swarm` to know
 * there are no nodes or services to look in.
 */
export async function info({ res }: ApiRequest, ctx: ApiContext): Promise<void> {
  sendJson(res, 200, {
    ID: '',
    Containers: 0,
    ContainersRunning: 0,
    ContainersPaused: 0,
    ContainersStopped: 0,
    Images: (await listImageIds(ctx.layout)).length,
    Driver: 'overlay',
    DriverStatus: [],
    Plugins: { Volume: [], Network: [], Authorization: null, Log: [] },
    MemoryLimit: false,
    SwapLimit: false,
    Debug: false,
    NFd: 0,
    NGoroutines: 0,
    SystemTime: new Date().toISOString(),
    LoggingDriver: '',
    CgroupDriver: 'none',
    NEventsListener: 0,
    KernelVersion: os.release(),
    OperatingSystem: 'Slipway',
    OSVersion: '',
    OSType: 'linux',
    Architecture: os.machine(),
    IndexServerAddress: 'https://index.docker.io/v1/',
    RegistryConfig: { IndexConfigs: {}, InsecureRegistryCIDRs: ['127.0.0.0/8', '::1/128'], Mirrors: [] },
    NCPU: os.availableParallelism(),
    MemTotal: os.totalmem(),
    DockerRootDir: ctx.layout.root,
    Name: os.hostname(),
    Labels: [],
    ExperimentalBuild: false,
    ServerVersion: SERVER_VERSION,
    Runtimes: {},
    DefaultRuntime: '',
    Swarm: { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null },
    LiveRestoreEnabled: false,
    Isolation: '',
    SecurityOptions: [],
    Warnings: [],
  });
}

/** Go's GOARCH spelling of this machine. */
function goArch(): string {
  const a = process.arch;
  return a === 'x64' ? 'amd64' : a === 'ia32' ? '386' : a;
}
