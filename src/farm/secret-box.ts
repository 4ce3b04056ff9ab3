/**
 * Build secrets on the farm, never in the clear outside the submitter and the worker that runs
 * the build. Each worker keeps an X25519 key pair in its store (`farm-secrets.key`, 0600) and
 * publishes the public half in Redis. `submit --secret` seals the secrets with a fresh AES-256-GCM
 * key and wraps that key for every published worker key (ephemeral X25519, HKDF-SHA256); the job
 * carries only ciphertext. The worker that takes the job unwraps its copy and keeps the values in
 * memory for the build. Redis, the registry and the job payload hold ciphertext and public keys only.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { SlipwayError } from '../errors.js';

/** Redis hash: worker name -> its public key record. */
export const WORKER_KEYS = 'slipway:farm:secret-keys';
const INFO = Buffer.from('slipway farm secrets v1');

/** A worker's public key as published. */
export interface WorkerKeyJson { keyId: string; publicKey: string; published: string }

/** The data key wrapped for one worker key. */
interface RecipientJson { keyId: string; ephemeral: string; iv: string; tag: string; wrapped: string }

/** Sealed secrets, as the job carries them. */
export interface SealedSecretsJson { v: 1; iv: string; tag: string; data: string; recipients: RecipientJson[] }

/** A worker's key pair. */
export interface WorkerKey { keyId: string; privateKey: crypto.KeyObject; publicDer: Buffer }

function keyIdOf(publicDer: Buffer): string {
  return crypto.createHash('sha256').update(publicDer).digest('hex').slice(0, 24);
}

/** The worker's key pair from `<root>/farm-secrets.key`, made (0600) on first use. */
export async function loadWorkerKey(root: string): Promise<WorkerKey> {
  const file = path.join(root, 'farm-secrets.key');
  let pem = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (pem === undefined) {
    const { privateKey } = crypto.generateKeyPairSync('x25519');
    pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const tmp = `${file}.${process.pid}.tmp`;
    await fs.writeFile(tmp, pem, { mode: 0o600 });
    await fs.rename(tmp, file);
  }
  const privateKey = crypto.createPrivateKey(pem);
  const publicDer = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  return { keyId: keyIdOf(publicDer), privateKey, publicDer };
}

/** Loads (or makes) the worker's key pair from `root` and publishes the public key under its name. */
export async function publishWorkerKey(redis: Redis, name: string, root: string): Promise<WorkerKey> {
  const key = await loadWorkerKey(root);
  const rec: WorkerKeyJson = { keyId: key.keyId, publicKey: key.publicDer.toString('base64'), published: new Date().toISOString() };
  await redis.hset(WORKER_KEYS, name, JSON.stringify(rec));
  return key;
}

/** Withdraws it (a worker that shuts down). */
export async function withdrawWorkerKey(redis: Redis, name: string): Promise<void> {
  await redis.hdel(WORKER_KEYS, name);
}

function kek(shared: Buffer, ephemeral: Buffer): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', shared, ephemeral, INFO, 32));
}

function gcm(key: Buffer, plain: Buffer): { iv: string; tag: string; data: string } {
  const iv = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', key, iv);
  const data = Buffer.concat([c.update(plain), c.final()]);
  return { iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64') };
}

function ungcm(key: Buffer, box: { iv: string; tag: string; data: string }): Buffer {
  const d = crypto.createDecipheriv('aes-256-gcm', key, Buffer.from(box.iv, 'base64'));
  d.setAuthTag(Buffer.from(box.tag, 'base64'));
  return Buffer.concat([d.update(Buffer.from(box.data, 'base64')), d.final()]);
}

/** Every worker key published in Redis (public keys: anyone who may submit may read them). */
export async function workerKeys(redis: Redis): Promise<WorkerKeyJson[]> {
  return Object.values(await redis.hgetall(WORKER_KEYS)).map((t) => JSON.parse(t) as WorkerKeyJson);
}

/** Seals `secrets` for `keys`: the workers' published keys (a remote submitter gets them from the farm API). */
export function sealSecretsFor(keys: readonly WorkerKeyJson[], secrets: ReadonlyMap<string, Buffer>): SealedSecretsJson {
  if (keys.length === 0) throw new SlipwayError('ERR_INVALID_OPTION', '--secret: no farm worker has published a key to seal secrets for (start a worker first)');
  const dataKey = crypto.randomBytes(32);
  const plain = Buffer.from(JSON.stringify(Object.fromEntries([...secrets].map(([id, v]) => [id, v.toString('base64')]))));
  const body = gcm(dataKey, plain);
  const seen = new Set<string>();
  const recipients: RecipientJson[] = [];
  for (const k of keys) {
    if (seen.has(k.keyId)) continue;
    seen.add(k.keyId);
    const eph = crypto.generateKeyPairSync('x25519');
    const ephDer = eph.publicKey.export({ type: 'spki', format: 'der' });
    const workerPub = crypto.createPublicKey({ key: Buffer.from(k.publicKey, 'base64'), format: 'der', type: 'spki' });
    const shared = crypto.diffieHellman({ privateKey: eph.privateKey, publicKey: workerPub });
    const w = gcm(kek(shared, ephDer), dataKey);
    recipients.push({ keyId: k.keyId, ephemeral: ephDer.toString('base64'), iv: w.iv, tag: w.tag, wrapped: w.data });
  }
  return { v: 1, ...body, recipients };
}

/** Opens sealed secrets with this worker's key; throws ERR_SANDBOX when they were not sealed for it. */
export function openSecrets(sealed: SealedSecretsJson, key: WorkerKey): Map<string, Buffer> {
  const r = sealed.recipients.find((x) => x.keyId === key.keyId);
  if (!r) throw new SlipwayError('ERR_SANDBOX', `this build's secrets were not sealed for this worker's key ${key.keyId} (it started after the submit?)`);
  const ephDer = Buffer.from(r.ephemeral, 'base64');
  const shared = crypto.diffieHellman({ privateKey: key.privateKey, publicKey: crypto.createPublicKey({ key: ephDer, format: 'der', type: 'spki' }) });
  const dataKey = ungcm(kek(shared, ephDer), { iv: r.iv, tag: r.tag, data: r.wrapped });
  const values = JSON.parse(ungcm(dataKey, sealed).toString('utf8')) as Record<string, string>;
  return new Map(Object.entries(values).map(([id, v]) => [id, Buffer.from(v, 'base64')]));
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Sealed secrets as a client sent them (the farm API's `X-Slipway-Sealed-Secrets`): checked
 * field by field, so that what reaches a worker is well formed. Their content stays opaque: only
 * a worker's key opens it, and a client can seal nothing but its own values.
 */
export function parseSealedSecrets(text: string): SealedSecretsJson {
  const bad = (why: string) => new SlipwayError('ERR_INVALID_OPTION', `invalid sealed secrets: ${why}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  const obj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const b64 = (o: Record<string, unknown>, k: string, len?: number) => {
    const f = o[k];
    if (typeof f !== 'string' || !B64.test(f) || (len !== undefined && Buffer.from(f, 'base64').length !== len)) throw bad(`field ${k}`);
    return f;
  };
  if (!obj(v) || v['v'] !== 1 || !Array.isArray(v['recipients'])) throw bad('expected {"v":1,"iv","tag","data","recipients":[...]}');
  if (v['recipients'].length === 0 || v['recipients'].length > 256) throw bad('1 to 256 recipients');
  const recipients = v['recipients'].map((r: unknown): RecipientJson => {
    if (!obj(r) || typeof r['keyId'] !== 'string' || !/^[0-9a-f]{24}$/.test(r['keyId'])) throw bad('recipient keyId');
    return { keyId: r['keyId'], ephemeral: b64(r, 'ephemeral'), iv: b64(r, 'iv', 12), tag: b64(r, 'tag', 16), wrapped: b64(r, 'wrapped', 32) };
  });
  return { v: 1, iv: b64(v, 'iv', 12), tag: b64(v, 'tag', 16), data: b64(v, 'data'), recipients };
}
