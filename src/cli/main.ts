#!/usr/bin/env node
/**
 * The `slipway` command's entry. It turns on Node's module compile cache before anything else
 * loads, then runs the CLI (run-cli.ts). Every `slipway` process compiles the same modules, so
 * from the second run on, V8 reads their code from the cache instead of parsing them again.
 */
import { enableCompileCache } from './compile-cache.js';

enableCompileCache();
// Imported only now: a static import would load (and compile) the whole CLI before the cache is on.
await import('./run-cli.js');
