import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { StoreLayout } from '../store/layout.js';
import { writeFileAtomic } from '../fs.js';
import { hashApi, initHash } from './key.js';

/** The last time a step was built: its key preimage and result. */
export interface StepHistory {
  preimage: string;
  key: string;
  imageId: string;
  diffId: string;
  durationMs: number;
  at: string;
}

/** One step of a build record. */
export interface StepRecord {
  n: number;
  stage: number;
  text: string;
  hit: boolean;
  reason?: string;
  /** Every differing input (the printed `reason` is shortened). */
  reasons?: string[];
  source: 'local' | 'remote' | 'in-flight';
  durationMs: number;
  bytes: number;
  savedMs: number;
  imageId: string;
}

/** One build, as `stats` reads it. */
export interface BuildRecord {
  id: string;
  tags: string[];
  dockerfile: string;
  started: string;
  durationMs: number;
  result: 'success' | 'failure';
  error?: string;
  steps: StepRecord[];
}

async function historyFile(layout: StoreLayout, identity: string): Promise<string> {
  await initHash();
  const h = hashApi().h64ToString(identity);
  return path.join(layout.historyDir, h.slice(0, 2), `${h}.json`);
}

/** The most recent record of a step identity (`tag|stage|step`, or `parent|instruction`). */
export async function readStepHistory(layout: StoreLayout, identity: string): Promise<StepHistory | undefined> {
  try {
    // In place: a small file, read for every step that misses.
    return JSON.parse(readFileSync(await historyFile(layout, identity), 'utf8')) as StepHistory;
  } catch {
    return undefined;
  }
}

export async function writeStepHistory(layout: StoreLayout, identities: string[], rec: StepHistory): Promise<void> {
  const text = JSON.stringify(rec);
  // One file per identity, each written whole then renamed: all at once.
  await Promise.all(identities.map(async (id) => writeFileAtomic(await historyFile(layout, id), text, 0o644, { fsync: false })));
}

/** Writes a build's record (atomically; one file per build). */
export async function writeBuildRecord(layout: StoreLayout, rec: BuildRecord): Promise<void> {
  await writeFileAtomic(path.join(layout.buildsDir, `${rec.started.replace(/[:.]/g, '-')}-${rec.id}.json`), JSON.stringify(rec), 0o644, { fsync: false });
}

/** Every build record, oldest first. */
export async function readBuildRecords(layout: StoreLayout): Promise<BuildRecord[]> {
  const names = await fs.readdir(layout.buildsDir).catch(() => [] as string[]);
  const out: BuildRecord[] = [];
  for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
    try {
      out.push(JSON.parse(await fs.readFile(path.join(layout.buildsDir, n), 'utf8')) as BuildRecord);
    } catch {
      // a record being written by a concurrent build: skip it
    }
  }
  return out;
}

/** A fresh build id. */
export function newBuildId(): string {
  return crypto.randomBytes(6).toString('hex');
}
