import type { StoreLayout } from '../store/layout.js';

/** What a command gets besides its arguments. */
export interface CommandEnv { layout: StoreLayout }

/** One CLI verb. Its code is imported only when it runs: `images` must not pay for bullmq or the registry client. */
export interface Command {
  usage: string;
  summary: string;
  help?: string;
  run: (args: string[], env: CommandEnv) => Promise<number>;
}
