/** Piscina entry point: one uncached RUN/COPY/ADD/WORKDIR step (see src/snapshot/run-step.ts). */
export { runStep as default } from '../src/snapshot/run-step.js';
