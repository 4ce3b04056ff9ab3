/**
 * The per-container `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, bind-mounted over the
 * image's (never part of a layer). With the default network, DNS goes to libslirp's forwarder
 * (10.0.2.3): the host's own resolver may listen on its loopback, which a step cannot reach.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { NetworkMode } from './oci-spec.js';
import { extraHostLines, type ExtraHost } from './container-flags.js';

/** The DNS forwarder of the step's user-mode network (libslirp's, in the network daemon). */
export const SLIRP_DNS = '10.0.2.3';

/** resolv.conf for a step, from the host's: nameservers replaced by slirp's under the default network. */
export function resolvConf(host: string, network: NetworkMode): string {
  if (network !== 'default') return host;
  const kept = host.split('\n').filter((l) => /^\s*(search|domain|options)\b/.test(l));
  return [`nameserver ${SLIRP_DNS}`, ...kept].join('\n') + '\n';
}

/** The hosts file: localhost and the container's own name, as Docker writes it. */
export function hostsFile(hostname: string): string {
  return `127.0.0.1\tlocalhost${hostname ? ` ${hostname}` : ''}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}

/**
 * Writes the three files into `dir` (owned by the container's root, so it may change them as
 * in Docker; the changes go nowhere) and returns their paths.
 */
export function containerFiles(dir: string, o: { hostname: string; network: NetworkMode; owner: { uid: number; gid: number }; extraHosts?: readonly ExtraHost[] }) {
  let host = '';
  try {
    host = fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    // no resolver configured on the host: an empty file, as Docker does
  }
  fs.mkdirSync(dir, { recursive: true });
  const files = { hosts: path.join(dir, 'hosts'), hostname: path.join(dir, 'hostname'), resolvConf: path.join(dir, 'resolv.conf') };
  fs.writeFileSync(files.hosts, hostsFile(o.hostname) + extraHostLines(o.extraHosts ?? []));
  fs.writeFileSync(files.hostname, `${o.hostname}\n`);
  fs.writeFileSync(files.resolvConf, resolvConf(host, o.network));
  for (const f of Object.values(files)) fs.chownSync(f, o.owner.uid, o.owner.gid);
  return files;
}
