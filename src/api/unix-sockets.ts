import type { Server } from 'node:net';

/** The path each unix-socket server listens on after its bind-and-rename (Node's `address()` keeps the bind path). */
const paths = new WeakMap<Server, string>();

export function recordSocketPath(server: Server, p: string): void {
  paths.set(server, p);
}

/** The unix socket a server listens on; undefined for a TCP one. */
export function socketPathOf(server: Server | undefined): string | undefined {
  return server ? paths.get(server) : undefined;
}
