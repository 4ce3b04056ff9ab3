import type { BuildEvent } from '../scheduler/progress.js';
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The Prometheus metrics of one process (a worker, or `serve`). */
export class FarmMetrics {
  readonly registry = new Registry();
  readonly builds = new Counter({ name: 'slipway_builds_total', help: 'Builds by result', labelNames: ['result'], registers: [this.registry] });
  readonly steps = new Counter({ name: 'slipway_steps_total', help: 'Build steps by cache outcome and source', labelNames: ['outcome', 'source'], registers: [this.registry] });
  readonly stepSeconds = new Histogram({ name: 'slipway_step_duration_seconds', help: 'Duration of executed (missed) steps', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: [this.registry] });
  readonly buildSeconds = new Histogram({ name: 'slipway_build_duration_seconds', help: 'Duration of builds', buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900], registers: [this.registry] });
  /** Reads the farm's queue; the two queue gauges are sampled with it at each scrape. */
  queueSampler: (() => Promise<{ depth: number; workers: number }>) | undefined;
  private sampled: { at: number; value: Promise<{ depth: number; workers: number } | undefined> } | undefined;
  readonly queueDepth = new Gauge({
    name: 'slipway_queue_depth', help: 'Jobs waiting in the build queue', registers: [this.registry],
    collect: async () => {
      const s = await this.sampleQueue();
      if (s) this.queueDepth.set(s.depth);
    },
  });
  readonly activeWorkers = new Gauge({
    name: 'slipway_active_workers', help: 'Worker processes connected to the queue', registers: [this.registry],
    collect: async () => {
      const s = await this.sampleQueue();
      if (s) this.activeWorkers.set(s.workers);
    },
  });
  readonly running = new Gauge({ name: 'slipway_running_builds', help: 'Builds running in this process', registers: [this.registry] });
  readonly cacheSavedSeconds = new Counter({ name: 'slipway_cache_saved_seconds_total', help: 'Build time saved by cache hits (the producing build\'s duration)', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** One queue read serves both gauges of a scrape (the registry collects metrics concurrently). */
  private sampleQueue(): Promise<{ depth: number; workers: number } | undefined> {
    if (!this.sampled || Date.now() - this.sampled.at > 1000) {
      this.sampled = { at: Date.now(), value: this.queueSampler ? this.queueSampler().catch(() => undefined) : Promise.resolve(undefined) };
    }
    return this.sampled.value;
  }

  /** Serves `GET /metrics` on 127.0.0.1:port (0 picks a port); resolves with the port. */
  async serve(port: number, host = '127.0.0.1'): Promise<{ port: number; close: () => Promise<void> }> {
    const server = http.createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/metrics') {
        this.registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': this.registry.contentType });
          res.end(text);
        }, () => {
          res.writeHead(500);
          res.end();
        });
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"message":"page not found"}');
      }
    });
    await new Promise<void>((r) => server.listen(port, host, r));
    const addr = server.address();
    return { port: typeof addr === 'object' && addr ? addr.port : port, close: () => new Promise((r) => server.close(() => r())) };
  }
}

/** How a build ended, as `slipway_builds_total{result}` counts it: `failure` is the user's error, `error` the machine's. */
export type BuildOutcome = 'success' | 'failure' | 'error' | 'cancelled';

/** Counts one build of the server in the metrics; events go in as the build emits them. */
export interface BuildTap {
  event(e: BuildEvent): void;
  done(outcome: BuildOutcome): void;
}

/** Starts counting a build: steps by hit and miss (and how long a missed step ran), the build's result and duration. */
export function tapBuild(m: FarmMetrics): BuildTap {
  const started = Date.now();
  let missedAt: number | undefined;
  let finished = false;
  m.running.inc();
  return {
    event(e) {
      if (e.type === 'cache-hit') m.steps.inc({ outcome: 'hit', source: e.source ?? 'local' });
      if (e.type === 'cache-miss') {
        m.steps.inc({ outcome: 'miss', source: 'local' });
        missedAt = Date.now();
      }
      if (e.type === 'image' && missedAt !== undefined) {
        m.stepSeconds.observe((Date.now() - missedAt) / 1000);
        missedAt = undefined;
      }
      if (e.type === 'summary') m.cacheSavedSeconds.inc(e.savedMs / 1000);
    },
    done(outcome) {
      if (finished) return;
      finished = true;
      m.running.dec();
      m.builds.inc({ result: outcome });
      if (outcome !== 'cancelled') m.buildSeconds.observe((Date.now() - started) / 1000);
    },
  };
}

