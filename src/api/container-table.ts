import crypto from 'node:crypto';
import type { StoreLayout } from '../store/layout.js';
import { ApiError } from './http-errors.js';
import { Container } from './container.js';
import type { CreateRequest } from './container-config.js';
import type { ImageId } from '../store/layout.js';

/** At most this many containers (any state) exist at once on one server. */
export const MAX_CONTAINERS = 64;

/** Docker's random names: adjective_noun. */
const LEFT = ['brave', 'calm', 'eager', 'fond', 'keen', 'lucid', 'merry', 'quiet', 'swift', 'witty'];
const RIGHT = ['hopper', 'lovelace', 'turing', 'curie', 'noether', 'ritchie', 'thompson', 'torvalds', 'wozniak', 'liskov'];

/** The containers of one `serve`: found by full id, unique id prefix or name. */
export class ContainerTable {
  private readonly byId = new Map<string, Container>();

  constructor(private readonly layout: StoreLayout) {}

  list(): Container[] {
    return [...this.byId.values()];
  }

  create(req: CreateRequest, imageId: ImageId, name: string | undefined): Container {
    if (this.byId.size >= MAX_CONTAINERS) throw new ApiError(503, `this server already has ${MAX_CONTAINERS} containers: remove some first`);
    if (name !== undefined) {
      const other = this.list().find((c) => c.name === name);
      if (other) throw new ApiError(409, `Conflict. The container name "/${name}" is already in use by container "${other.id}". You have to remove (or rename) that container to be able to reuse that name.`);
    }
    const id = crypto.randomBytes(32).toString('hex');
    let n = name;
    while (n === undefined || this.list().some((c) => c.name === n)) n = `${LEFT[crypto.randomInt(LEFT.length)]}_${RIGHT[crypto.randomInt(RIGHT.length)]}${n === undefined ? '' : crypto.randomInt(100)}`;
    const c = new Container(id, n, imageId, req);
    this.byId.set(id, c);
    return c;
  }

  /** By id, unique id prefix or name; 404 in Docker's words otherwise. */
  get(ref: string): Container {
    const missing = () => new ApiError(404, `No such container: ${ref.slice(0, 128)}`);
    if (ref.length === 0 || ref.length > 128) throw missing();
    const name = ref.replace(/^\//, '');
    const byName = this.list().find((c) => c.name === name);
    if (byName) return byName;
    if (!/^[0-9a-f]{1,64}$/.test(ref)) throw missing();
    const full = this.byId.get(ref);
    if (full) return full;
    const matches = this.list().filter((c) => c.id.startsWith(ref));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw new ApiError(400, `multiple IDs found with provided prefix: ${ref}`);
    throw missing();
  }

  start(c: Container): void {
    if (c.state === 'running') return;
    if (c.state === 'exited') throw new ApiError(409, `container ${c.id.slice(0, 12)} has exited: slipway runs a container once (create a new one)`);
    c.start(this.layout, () => {
      if (c.req.autoRemove) this.remove(c, false);
    });
  }

  /** Forgets an exited container (force: kills a running one first, then forgets it on exit). */
  remove(c: Container, force: boolean): void {
    if (c.state === 'running') {
      if (!force) throw new ApiError(409, `cannot remove container "/${c.name}": container is running: stop the container before removing or force remove`);
      c.kill('SIGKILL');
      void c.exited().then(() => this.remove(c, false));
      return;
    }
    if (!this.byId.has(c.id)) return;
    this.byId.delete(c.id);
    c.markRemoved();
  }

  /** Server shutdown: every running container is killed. */
  async closeAll(): Promise<void> {
    const running = this.list().filter((c) => c.state === 'running');
    for (const c of running) c.kill('SIGKILL');
    await Promise.all(running.map((c) => c.exited()));
  }
}
