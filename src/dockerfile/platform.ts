import { dockerfileError, SlipwayError } from '../errors.js';

/** An OCI platform: `os/arch[/variant]`. */
export interface PlatformSpec { os: string; arch: string; variant: string }

/** Node's `process.arch` in OCI's words (and the variant containerd gives it by default). */
const NODE_ARCH: Record<string, { arch: string; variant: string }> = {
  x64: { arch: 'amd64', variant: '' },
  arm64: { arch: 'arm64', variant: '' },
  arm: { arch: 'arm', variant: 'v7' },
  ia32: { arch: '386', variant: '' },
  ppc64: { arch: 'ppc64le', variant: '' },
  s390x: { arch: 's390x', variant: '' },
  riscv64: { arch: 'riscv64', variant: '' },
};

/** The platform of this machine: the only one Slipway builds for (no emulation). */
export function hostPlatform(): PlatformSpec {
  const a = NODE_ARCH[process.arch] ?? { arch: process.arch, variant: '' };
  return { os: 'linux', ...a };
}

/** `linux/amd64`, `linux/arm/v7`. */
export function formatPlatform(p: PlatformSpec): string {
  return [p.os, p.arch, ...(p.variant ? [p.variant] : [])].join('/');
}

/** Architecture aliases containerd's `platforms.Normalize` accepts. */
const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', i386: '386', armhf: 'arm', armel: 'arm' };

/**
 * Parses a platform as containerd does (`linux/amd64`, `amd64`, `linux/x86_64`, `linux/arm64/v8`),
 * normalizing aliases. Undefined for text that is not a platform.
 */
export function parsePlatform(text: string): PlatformSpec | undefined {
  const parts = text.trim().toLowerCase().split('/');
  if (parts.some((p) => !/^[a-z0-9_.-]+$/.test(p)) || parts.length > 3) return undefined;
  const host = hostPlatform();
  let [os, arch, variant] = parts.length === 1 ? [host.os, parts[0]!, ''] : [parts[0]!, parts[1]!, parts[2] ?? ''];
  arch = ARCH_ALIASES[arch] ?? arch;
  if (arch === 'arm64' && variant === 'v8') variant = '';
  if (arch === 'amd64' && variant === 'v1') variant = '';
  if (arch === 'arm' && variant === '') variant = 'v7';
  return { os, arch, variant };
}

function samePlatform(a: PlatformSpec, b: PlatformSpec): boolean {
  return a.os === b.os && a.arch === b.arch && a.variant === b.variant;
}

/**
 * BuildKit's automatic platform ARGs for a build on this host (target = build platform, since
 * nothing else can be built here). They are in the global scope (usable in FROM lines without
 * an ARG line) and enter a stage only through `ARG NAME` without a value; `--build-arg`
 * overrides them as it overrides any ARG.
 */
export function platformArgs(): Record<string, string> {
  const p = hostPlatform();
  const name = formatPlatform(p);
  return {
    BUILDPLATFORM: name, BUILDOS: p.os, BUILDARCH: p.arch, BUILDVARIANT: p.variant,
    TARGETPLATFORM: name, TARGETOS: p.os, TARGETARCH: p.arch, TARGETVARIANT: p.variant,
  };
}

/**
 * Checks a platform asked for (`FROM --platform=...` after expansion, or a build's `--platform`):
 * only the host's own is accepted. `where` names the Dockerfile line, if any.
 */
export function checkPlatform(text: string, where?: { file: string; line: number; flag: string }): PlatformSpec {
  const host = hostPlatform();
  const p = parsePlatform(text);
  const say = (detail: string) => (where ? dockerfileError('ERR_DOCKERFILE_SYNTAX', where.file, where.line, `${where.flag}: ${detail}`) : new SlipwayError('ERR_INVALID_OPTION', `--platform: ${detail}`));
  if (!p) throw say(`invalid platform "${text}": use os/arch[/variant], e.g. ${formatPlatform(host)}`);
  if (!samePlatform(p, host)) {
    throw say(`platform ${formatPlatform(p)} is not supported: Slipway builds only for the host platform ${formatPlatform(host)} (no emulation)`);
  }
  return p;
}
