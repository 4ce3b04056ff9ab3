/**
 * How the resident engine answers a local build (local-build-route.ts). Two forms:
 *
 * - **events** (the Node.js client, engine-client.ts): one JSON line per build event, then
 *   `done` or `error`; the client renders them as an in-process build would.
 * - **rendered** (the native client, native/client.c, asks with `render`): the text the
 *   Node.js client would print, already rendered, in Docker's multiplexed stream framing
 *   (an 8-byte header: stream, three zero bytes, the payload's length as a big-endian
 *   uint32). Stream 1 is the client's stdout and stream 2 its stderr. One last frame on
 *   stream 3 carries the exit status in decimal; a client that never gets it saw the
 *   engine go away. The client then has nothing to render, so it needs no JavaScript at all.
 *
 * Both render from the same code: the legacy view (scheduler/progress.ts) and an error's user
 * text (`SlipwayError.userText`, what cli/report-error.ts prints), fed what the Node.js client
 * would get over the wire: the error as data, which is always a SlipwayError on arrival.
 */
import type { ServerResponse } from 'node:http';
import { SlipwayError, errorToData, type SlipwayErrorData } from '../errors.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';

/** One line of the answer: an event as the build emits it, then `done` or `error`. */
export type LocalBuildMessage =
  | { event: BuildEvent }
  | { done: { id: string } }
  | { error: SlipwayErrorData };

/** What the route tells its client, whichever form the answer takes. */
export interface BuildAnswer {
  event(e: BuildEvent): void;
  done(id: string): void;
  error(e: unknown): void;
}

/** The events form: `{event}` lines, then `{done}` or `{error}`. */
export function eventsAnswer(res: ServerResponse): BuildAnswer {
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
  const send = (m: LocalBuildMessage) => { if (!res.destroyed) res.write(`${JSON.stringify(m)}\n`); };
  return { event: (e) => send({ event: e }), done: (id) => send({ done: { id } }), error: (e) => send({ error: errorToData(e) }) };
}

const MULTIPLEXED = 'application/vnd.docker.multiplexed-stream';

/** One frame of Docker's multiplexed stream. */
function frame(stream: 1 | 2 | 3, text: string): Buffer {
  const payload = Buffer.from(text);
  const head = Buffer.alloc(8);
  head[0] = stream;
  head.writeUInt32BE(payload.length, 4);
  return Buffer.concat([head, payload]);
}

/** The rendered form: `slipway build`'s stdout and stderr, then its exit status. `quiet` is `-q`. */
export function renderedAnswer(res: ServerResponse, quiet: boolean): BuildAnswer {
  res.writeHead(200, { 'Content-Type': MULTIPLEXED });
  const send = (stream: 1 | 2 | 3, text: string) => { if (!res.destroyed && text !== '') res.write(frame(stream, text)); };
  return {
    event: (e) => { if (!quiet) send(1, e.type === 'output' ? e.text : renderLegacy(e)); },
    done: (id) => {
      if (quiet) send(1, `sha256:${id}\n`);
      send(3, '0');
    },
    error: (e) => {
      const arrived = SlipwayError.fromData(errorToData(e));
      send(2, arrived.userText());
      send(3, String(arrived.exitCode));
    },
  };
}
