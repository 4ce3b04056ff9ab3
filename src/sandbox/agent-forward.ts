/**
 * An SSH agent socket for one RUN --mount=type=ssh: a unix socket in the step's private folder
 * that forwards each connection to the build's agent (`--ssh ID=SOCKET`). The step's root is an
 * unprivileged host uid that could not open the user's own agent socket; this one is owned by
 * the uid the mount asks for, exists only while the step runs, and is bound into that step
 * alone, so no other step (and nothing after the build) can reach the agent.
 */
import net from 'node:net';
import fs from 'node:fs/promises';

/** A listening forwarder; `close` stops it and ends the connections it carries. */
export interface AgentForward { path: string; close(): Promise<void> }

/** Listens on `socketPath` (owner and mode as given) and forwards to the agent at `agentPath`. */
export async function forwardAgent(socketPath: string, agentPath: string, owner: { uid: number; gid: number; mode: number }): Promise<AgentForward> {
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const agent = net.connect(agentPath);
    open.add(client).add(agent);
    const end = () => {
      client.destroy();
      agent.destroy();
      open.delete(client);
      open.delete(agent);
    };
    client.on('error', end).on('close', end);
    agent.on('error', end).on('close', end);
    client.pipe(agent);
    agent.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  await fs.chown(socketPath, owner.uid, owner.gid);
  await fs.chmod(socketPath, owner.mode);
  return {
    path: socketPath,
    close: () => new Promise<void>((resolve) => {
      for (const s of open) s.destroy();
      server.close(() => resolve());
    }),
  };
}
